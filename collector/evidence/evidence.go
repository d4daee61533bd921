// Package evidence is the one way evidence (an alert's encrypted
// screenshot) is revealed. Every entry point — the console's
// GET /api/v1/evidence, the admin socket's GET /v1/evidence and so
// `vigil-collector evidence get` — calls Service.Reveal, which decides in
// this order:
//
//  1. role: a console account must be a DSL (and not disabled); the
//     collector's operator (the admin socket, same trust as the data dir)
//     may reveal as themselves;
//  2. routing: a console account must be one the alert is visible to (the
//     console's routing, seed 002 §5.3, which hides an alert from the
//     person it is about). The operator is an account on the collector's
//     machine, not a person of the school's directory, so routing does not
//     apply; `evidence get --as USER` reveals as a console account, with
//     its role and routing;
//  3. the illegal rule: evidence of an alert that may concern illegal
//     material is never shown, to anyone (seed 002 Appendix 6; Illegal);
//  4. the evidence must be the alert's own;
//  5. a reason is required;
//  6. the access-log entry (who, when, alert, evidence, reason) is written
//     FIRST: if it cannot be, nothing is read or decrypted;
//  7. then the stored bytes are checked against the alert's SHA-256 and
//     decrypted.
package evidence

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"time"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/triage"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// IllegalGuidance is what is said instead of showing evidence that may be
// illegal to view.
const IllegalGuidance = "Do not view. Preserve the device and refer to the police/CEOP and the LADO as the policy requires (seed 002 Appendix 6)."

// Illegal says whether an alert may concern illegal material: its evidence
// is then never served (seed 002 Appendix 6).
func Illegal(f *vigilv1.Finding) bool {
	if f.GetSeverity() < vigilv1.Severity_SEVERITY_CRITICAL {
		return false
	}
	switch f.GetCategory() {
	case "sexual_content", "csam", "grooming":
		return true
	}
	return false
}

// MaxEvidence bounds what one reveal decrypts.
const MaxEvidence = 64 << 20

// Store is what a reveal reads and writes.
type Store interface {
	GetAlert(device string, seq uint64) (*store.Alert, error)
	EvidenceOwner(device, id string) (uint64, error)
	Evidence(device, id string, ref *vigilv1.EvidenceRef) ([]byte, error)
	LogAccess(store.AccessEntry) error
	GetDevice(id string) (store.Device, bool)
}

// Keys are the identities that open a school's evidence
// (*evidencekeys.Keyring).
type Keys interface {
	Identities(school string) []age.Identity
}

// Service reveals evidence. Construct it in the wiring (console.New makes
// the collector's, with the console's routing, and the daemon hands it to
// the admin socket).
type Service struct {
	Store Store
	// Keys open evidence by the device's school; Key, when Keys is nil,
	// opens all of it (a collector of one key). Neither: nothing can be
	// revealed.
	Keys Keys
	Key  *age.X25519Identity
	// Visible is the console's routing: whether account u may see alert a.
	// Nil: console accounts may not reveal (only the operator).
	Visible func(u *store.User, a *store.Alert) bool
	Now     func() time.Time
	// LogAccess, if set, replaces Store.LogAccess (tests make it fail).
	LogAccess func(store.AccessEntry) error
}

// Viewer is who asks.
type Viewer struct {
	// User is the console account revealing (through the console, or
	// named with `evidence get --as`). Nil: the operator alone.
	User *store.User
	// Operator is the OS account on the admin socket ("os:<name>"), empty
	// for the console.
	Operator string
}

func (v Viewer) name() string {
	if v.User != nil {
		return v.User.Username
	}
	return v.Operator
}

// Request names the evidence and says why.
type Request struct {
	Device string
	// Seq is the alert's; 0 when only the device and the evidence are
	// known (the admin socket): the alert is the finding that stored it.
	Seq        uint64
	EvidenceID string
	Reason     string
}

// Revealed is decrypted evidence.
type Revealed struct {
	Data      []byte
	MediaType string // image/png, image/jpeg or application/octet-stream
	Alert     *store.Alert
}

// Kind says why a reveal was refused.
type Kind int

// The kinds; each entry point maps them to its answer (HTTP status).
const (
	NotAllowed  Kind = iota + 1 // the role may not reveal evidence (403)
	NotFound                    // no such alert or evidence, or not this viewer's (404: existence is not revealed)
	IllegalKind                 // may concern illegal material (403, with IllegalGuidance)
	NeedReason                  // no reason given (400)
	NotLogged                   // the access log could not be written (500; 503 when the disk is full)
	Gone                        // the alert is there but its evidence is past retention (404)
	Mismatch                    // the stored bytes do not match the alert's SHA-256 (409)
	Internal                    // reading or decrypting failed (500)
)

// Error is a refused reveal.
type Error struct {
	Kind Kind
	Msg  string
	Err  error // the cause, for NotLogged, Mismatch and Internal
}

func (e *Error) Error() string {
	if e.Err != nil {
		return e.Msg + ": " + e.Err.Error()
	}
	return e.Msg
}

func (e *Error) Unwrap() error { return e.Err }

// Guidance is what to do instead, for IllegalKind.
func (e *Error) Guidance() string {
	if e.Kind == IllegalKind {
		return IllegalGuidance
	}
	return ""
}

func refuse(k Kind, err error, format string, a ...any) *Error {
	return &Error{Kind: k, Msg: fmt.Sprintf(format, a...), Err: err}
}

// AlertID is the alert's ID as the console and the access log name it.
func AlertID(device string, seq uint64) string { return store.AlertID(device, seq) }

// identities are the keys for the device's school: a device's evidence
// opens only with its own school's key or the installation's.
func (s *Service) identities(device string) []age.Identity {
	if s.Keys == nil {
		if s.Key == nil {
			return nil
		}
		return []age.Identity{s.Key}
	}
	d, _ := s.Store.GetDevice(device)
	return s.Keys.Identities(store.SchoolOf(d.School))
}

// Reveal applies the policy (the package comment) and returns the
// decrypted evidence or an *Error.
func (s *Service) Reveal(v Viewer, req Request) (*Revealed, error) {
	// 1. Role.
	if v.User != nil && (v.User.Role != "dsl" || v.User.Disabled) {
		return nil, refuse(NotAllowed, nil, "revealing evidence is for the Designated Safeguarding Lead only")
	}
	if v.User == nil && v.Operator == "" {
		return nil, refuse(NotAllowed, nil, "revealing evidence needs who is asking")
	}
	if v.User != nil && s.Visible == nil {
		return nil, refuse(NotAllowed, nil, "this entry point has no routing for console accounts")
	}
	// 2. The alert and its routing.
	seq := req.Seq
	if seq == 0 {
		owner, err := s.Store.EvidenceOwner(req.Device, req.EvidenceID)
		if errors.Is(err, store.ErrNotFound) {
			return nil, refuse(NotFound, nil, "no evidence %s for device %s (never stored, or past retention)", req.EvidenceID, req.Device)
		}
		if err != nil {
			return nil, refuse(Internal, err, "find the alert of evidence %s", req.EvidenceID)
		}
		seq = owner
	}
	a, err := s.Store.GetAlert(req.Device, seq)
	if errors.Is(err, store.ErrNotFound) {
		return nil, refuse(NotFound, nil, "no such alert")
	}
	if err != nil {
		return nil, refuse(Internal, err, "read alert")
	}
	if v.User != nil && !s.Visible(v.User, a) {
		return nil, refuse(NotFound, nil, "no such alert")
	}
	// 3. The illegal rule, for everyone.
	if Illegal(a.Finding) {
		return nil, refuse(IllegalKind, nil, "this alert may concern illegal material: its evidence is not shown")
	}
	// 4. The alert's own evidence.
	var ref *vigilv1.EvidenceRef
	for _, e := range a.Finding.GetEvidence() {
		if e.GetId() == req.EvidenceID {
			ref = e
		}
	}
	if ref == nil {
		return nil, refuse(NotFound, nil, "no such evidence on this alert")
	}
	// 5. A reason.
	reason := triage.CleanText(req.Reason, 500)
	if reason == "" {
		return nil, refuse(NeedReason, nil, "revealing evidence needs a reason (it is recorded in the access log)")
	}
	// 6. The access log, first.
	now := time.Now
	if s.Now != nil {
		now = s.Now
	}
	entry := store.AccessEntry{Time: now().UTC(), Who: v.name(), Action: "view-evidence", DeviceID: req.Device,
		AlertID: AlertID(req.Device, seq), EvidenceID: req.EvidenceID, Reason: reason}
	if v.User != nil && v.Operator != "" {
		entry.Detail = "on the collector's machine as " + v.Operator
	}
	logFn := s.Store.LogAccess
	if s.LogAccess != nil {
		logFn = s.LogAccess
	}
	if err := logFn(entry); err != nil {
		return nil, refuse(NotLogged, err, "access not logged, so not shown")
	}
	// 7. Read, verify, decrypt.
	ct, err := s.Store.Evidence(req.Device, req.EvidenceID, ref)
	switch {
	case errors.Is(err, store.ErrNotFound):
		return nil, refuse(Gone, nil, "the evidence is no longer stored (past retention)")
	case errors.Is(err, store.ErrEvidenceMismatch):
		return nil, refuse(Mismatch, err, "the stored evidence does not match this alert's SHA-256, so it is not shown (the refusal is in the access log)")
	case err != nil:
		return nil, refuse(Internal, err, "read evidence")
	}
	ids := s.identities(req.Device)
	if len(ids) == 0 {
		return nil, refuse(Internal, nil, "this collector has no evidence key")
	}
	plain, err := age.Decrypt(bytes.NewReader(ct), ids...)
	var noKey *age.NoIdentityMatchError
	if errors.As(err, &noKey) {
		return nil, refuse(Internal, err, "no key of this device's school opens the evidence (its school's key was destroyed, or it was sealed to another collector)")
	}
	if err != nil {
		return nil, refuse(Internal, err, "decrypt evidence")
	}
	data, err := io.ReadAll(io.LimitReader(plain, MaxEvidence))
	if err != nil {
		return nil, refuse(Internal, err, "decrypt evidence")
	}
	mt := ref.GetMediaType()
	if mt != "image/png" && mt != "image/jpeg" { // what the agent sends (agent/screen.Fit)
		mt = "application/octet-stream"
	}
	return &Revealed{Data: data, MediaType: mt, Alert: a}, nil
}
