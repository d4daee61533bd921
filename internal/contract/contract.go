// Package contract is the one definition, shared by agent and collector, of
// what a finding may hold: field sizes, evidence budgets and encodings.
//
// The collector refuses, one finding at a time, whatever fails Validate
// (docs/protocol.md, "Findings the collector refuses"). The agent runs
// Sanitize and then Validate on every finding before it spools it, so it
// never stores what the collector would refuse: strings the OS handed over
// as invalid UTF-8 are made valid with the original bytes kept, escaped, in
// the details; oversized fields are cut; evidence over budget is dropped and
// the finding says so. The limits are constants so both sides agree without
// negotiating; changing one is a protocol change.
package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"math"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Limits of one finding.
const (
	// MaxShort bounds check, rule_id, category, user, status, rules_hash,
	// group, device_id and an evidence media type, in bytes.
	MaxShort = 128
	// MaxMessage bounds the message, in bytes.
	MaxMessage = 4096
	// MaxEvidenceRefs bounds the evidence references (and blobs) of one
	// finding.
	MaxEvidenceRefs = 16
	// MaxEvidenceID bounds an evidence id ([a-z0-9-]).
	MaxEvidenceID = 64
	// MaxBodyBytes bounds the encoded finding without its evidence bytes:
	// generous for details, small enough that one agent cannot make the
	// collector hold much per finding.
	MaxBodyBytes = 256 << 10
	// MaxEvidenceBytes bounds the evidence bytes (age ciphertext) carried by
	// one finding: a readable 960-pixel screenshot as PNG for text, JPEG for
	// photographs. The agent fits screenshots into it (agent/screen.Fit).
	MaxEvidenceBytes = 512 << 10
	// MaxFindingBytes bounds the whole encoded finding, evidence included;
	// it is well under the collector's default 4 MiB batch.
	MaxFindingBytes = MaxBodyBytes + MaxEvidenceBytes + 8<<10
)

// MinObserved and MaxClockAhead bound observed_at on the collector: the time
// index stores Unix nanoseconds, and a device clock decades off is an error,
// not data.
var MinObserved = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

// MaxClockAhead is how far past the collector's clock observed_at may be.
const MaxClockAhead = 366 * 24 * time.Hour

// Options for Validate.
type Options struct {
	// Device, when set, is the only device_id a finding may carry (the
	// collector passes the sender's).
	Device string
	// Now, when set, bounds observed_at to MinObserved .. Now+MaxClockAhead.
	// The agent leaves it zero: its own clock is the one being judged, so
	// only the collector can tell it is wrong.
	Now time.Time
	// EvidenceHashed says the caller has just checked every blob against
	// its reference (Sanitize does), so Validate checks the references but
	// does not hash up to MaxEvidenceBytes again: on the agent a screenshot
	// is hashed once when it is attached and once by Sanitize, not a third
	// time here.
	EvidenceHashed bool
}

// Validate reports the first reason the collector would refuse f. It does
// not look at seq: sequence numbers are the spool's and the batch's
// business.
func Validate(f *vigilv1.Finding, o Options) error {
	switch {
	case f == nil:
		return errors.New("nil finding")
	case !utf8.ValidString(f.DeviceId):
		return errors.New("device_id is not valid UTF-8")
	case o.Device != "" && f.DeviceId != "" && f.DeviceId != o.Device:
		return fmt.Errorf("device_id %q is not the sender", cut(f.DeviceId, 40))
	case f.Severity < vigilv1.Severity_SEVERITY_INFO || f.Severity > vigilv1.Severity_SEVERITY_CRITICAL:
		return fmt.Errorf("severity %d out of range", f.Severity)
	case f.ObservedAt == nil || f.ObservedAt.CheckValid() != nil:
		return errors.New("observed_at missing or invalid")
	case !o.Now.IsZero() && (f.ObservedAt.AsTime().Before(MinObserved) || f.ObservedAt.AsTime().After(o.Now.Add(MaxClockAhead))):
		return fmt.Errorf("observed_at %s is outside 2000-01-01 .. a year from now", f.ObservedAt.AsTime().Format(time.RFC3339))
	case len(f.Message) > MaxMessage:
		return fmt.Errorf("message longer than %d bytes", MaxMessage)
	case !utf8.ValidString(f.Message):
		return errors.New("message is not valid UTF-8")
	}
	for _, fl := range shortFields(f) {
		if len(*fl.v) > MaxShort {
			return fmt.Errorf("%s longer than %d bytes", fl.name, MaxShort)
		}
		if !utf8.ValidString(*fl.v) {
			return fmt.Errorf("%s is not valid UTF-8", fl.name)
		}
	}
	for _, fl := range screenMatchFields(f) {
		if len(*fl.v) > MaxMessage {
			return fmt.Errorf("%s longer than %d bytes", fl.name, MaxMessage)
		}
		if !utf8.ValidString(*fl.v) {
			return fmt.Errorf("%s is not valid UTF-8", fl.name)
		}
	}
	if f.Check == "" {
		return errors.New("check is required")
	}
	if err := validValue(structpb.NewStructValue(f.Details), "details", 0); err != nil {
		return err
	}
	if err := validateEvidence(f, !o.EvidenceHashed); err != nil {
		return err
	}
	if n := BodySize(f); n > MaxBodyBytes {
		return fmt.Errorf("finding is %d bytes without its evidence, the limit is %d", n, MaxBodyBytes)
	}
	return nil
}

type field struct {
	name string
	v    *string
}

// shortFields are the finding's strings bounded by MaxShort.
func shortFields(f *vigilv1.Finding) []field {
	return []field{
		{"check", &f.Check}, {"rule_id", &f.RuleId}, {"category", &f.Category}, {"user", &f.User},
		{"status", &f.Status}, {"rules_hash", &f.RulesHash}, {"group", &f.Group},
	}
}

// screenMatchFields are the typed screen match's strings (none when the
// finding has no match), each bounded by MaxMessage.
func screenMatchFields(f *vigilv1.Finding) []field {
	m := f.GetScreenMatch()
	if m == nil {
		return nil
	}
	out := []field{
		{"screen_match.term", &m.Term}, {"screen_match.library", &m.Library}, {"screen_match.category", &m.Category},
		{"screen_match.context", &m.Context}, {"screen_match.window_title", &m.WindowTitle}, {"screen_match.process", &m.Process},
		{"screen_match.user", &m.User}, {"screen_match.source", &m.Source},
	}
	for i := range m.EvidenceIds {
		out = append(out, field{fmt.Sprintf("screen_match.evidence_ids[%d]", i), &m.EvidenceIds[i]})
	}
	return out
}

// maxDepth bounds nesting in details; structpb itself has no bound, and a
// deep value costs stack on both sides.
const maxDepth = 32

func validValue(v *structpb.Value, path string, depth int) error {
	switch k := v.GetKind().(type) {
	case *structpb.Value_StringValue:
		if !utf8.ValidString(k.StringValue) {
			return fmt.Errorf("%s is not valid UTF-8", path)
		}
	case *structpb.Value_StructValue, *structpb.Value_ListValue:
		if depth > maxDepth {
			return fmt.Errorf("%s nested deeper than %d", path, maxDepth)
		}
	}
	switch k := v.GetKind().(type) {
	case *structpb.Value_StructValue:
		for key, x := range k.StructValue.GetFields() {
			if !utf8.ValidString(key) {
				return fmt.Errorf("a key in %s is not valid UTF-8", path)
			}
			if err := validValue(x, path+"."+key, depth+1); err != nil {
				return err
			}
		}
	case *structpb.Value_ListValue:
		for i, x := range k.ListValue.GetValues() {
			if err := validValue(x, fmt.Sprintf("%s[%d]", path, i), depth+1); err != nil {
				return err
			}
		}
	}
	return nil
}

// validateEvidence: every blob must be announced by an EvidenceRef with its
// SHA-256 and size, so what is stored is what the finding points at, and the
// blobs together stay within MaxEvidenceBytes. hash false skips comparing
// the blobs' SHA-256 (sizes are still compared) for a caller that just did.
func validateEvidence(f *vigilv1.Finding, hash bool) error {
	if len(f.Evidence) > MaxEvidenceRefs {
		return fmt.Errorf("%d evidence references, at most %d", len(f.Evidence), MaxEvidenceRefs)
	}
	refs := make(map[string]*vigilv1.EvidenceRef, len(f.Evidence))
	for _, r := range f.Evidence {
		if !ValidEvidenceID(r.GetId()) || len(r.GetMediaType()) > MaxShort || !utf8.ValidString(r.GetMediaType()) || !isHex64(r.GetSha256()) {
			return fmt.Errorf("evidence ref %q malformed", cut(r.GetId(), 40))
		}
		refs[r.Id] = r
	}
	if len(f.EvidenceData) > MaxEvidenceRefs {
		return fmt.Errorf("%d evidence blobs, at most %d", len(f.EvidenceData), MaxEvidenceRefs)
	}
	total := 0
	for _, b := range f.EvidenceData {
		if total += len(b.GetData()); total > MaxEvidenceBytes {
			return fmt.Errorf("evidence of more than %d bytes (the limit per finding)", MaxEvidenceBytes)
		}
	}
	for _, b := range f.EvidenceData {
		r, ok := refs[b.GetId()]
		if !ok {
			return fmt.Errorf("evidence blob %q has no reference", cut(b.GetId(), 40))
		}
		if int64(len(b.Data)) != r.Size {
			return fmt.Errorf("evidence blob %q does not match its reference (sha256/size)", b.Id)
		}
		if !hash {
			continue
		}
		if sum := sha256.Sum256(b.Data); hex.EncodeToString(sum[:]) != r.Sha256 {
			return fmt.Errorf("evidence blob %q does not match its reference (sha256/size)", b.Id)
		}
	}
	return nil
}

// ValidEvidenceID: ids name keys in the collector's store, so they are
// short and from a small alphabet.
func ValidEvidenceID(id string) bool {
	if id == "" || len(id) > MaxEvidenceID {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
}

func isHex64(s string) bool {
	if len(s) != 64 {
		return false
	}
	_, err := hex.DecodeString(s)
	return err == nil
}

// evidenceDataField is Finding.evidence_data's field number.
const evidenceDataField = 16

// BodySize is the encoded size of f without its evidence bytes.
func BodySize(f *vigilv1.Finding) int {
	n := proto.Size(f)
	for _, b := range f.EvidenceData {
		n -= protowire.SizeTag(evidenceDataField) + protowire.SizeBytes(proto.Size(b))
	}
	return n
}

// EvidenceSize is the sum of f's evidence bytes.
func EvidenceSize(f *vigilv1.Finding) int {
	n := 0
	for _, b := range f.EvidenceData {
		n += len(b.GetData())
	}
	return n
}

// cut shortens s to at most n bytes for an error message, keeping it valid.
func cut(s string, n int) string {
	return Truncate(ValidString(s), n)
}

// finite reports whether x can be written as JSON (the console and the
// CLIs render details through protojson, which refuses NaN and infinities).
func finite(x float64) bool { return !math.IsNaN(x) && !math.IsInf(x, 0) }
