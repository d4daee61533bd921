// Package schoolexport writes everything one school of a trust owns, for a
// school that leaves the trust (or asks for its records): its devices, the
// findings and alerts they reported with their review state, their
// evidence, its enrollment tokens, its accounts and the access-log entries
// about them, in one documented JSON Lines file (docs/scale.md, "Exporting
// a school"). What belongs to a school is collector/tenancy's decision, as
// for every console page.
//
// The export holds no secret that opens anything: no password hashes,
// TOTP secrets or token secrets; evidence is exported as stored, still
// sealed to the school's own evidence key (handed over apart, `school
// export --evidence-key`), with its SHA-256.
package schoolexport

import (
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"sort"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Format names the file's format; Version changes when a record's shape
// does.
const (
	Format  = "vigil-school-export"
	Version = 1
)

// Store is what an export reads.
type Store interface {
	FindSchool(idOrName string) (store.School, error)
	Devices() []store.Device
	ListFindings(ctx context.Context, q store.Query, fn func(*vigilv1.Finding) bool) error
	GetAlert(device string, seq uint64) (*store.Alert, error)
	Evidence(device, id string, ref *vigilv1.EvidenceRef) ([]byte, error)
	Tokens() ([]store.Token, error)
	Users() ([]store.User, error)
	AccessLog() ([]store.AccessEntry, error)
	SchoolTerms() ([]store.SchoolTerm, error)
	TermSuppressions() ([]store.TermSuppression, error)
	TermDecisions() ([]store.TermDecision, error)
	Exclusions() ([]store.Exclusion, error)
}

// Line is one line of the file: Kind says which one field is set.
type Line struct {
	Kind string `json:"kind"`

	Header   *Header            `json:"header,omitempty"`
	Device   *store.Device      `json:"device,omitempty"`
	Finding  json.RawMessage    `json:"finding,omitempty"` // protojson of vigil.v1.Finding, evidence bytes left out
	Alert    *AlertState        `json:"alert,omitempty"`
	Evidence *Evidence          `json:"evidence,omitempty"`
	Token    *Token             `json:"token,omitempty"`
	Account  *Account           `json:"account,omitempty"`
	Access   *store.AccessEntry `json:"access,omitempty"`
	// The school's own keyword terms, its suppressions of trust-wide ones,
	// their decisions, and the exclusions of its alerts.
	Term         *store.SchoolTerm      `json:"term,omitempty"`
	Suppression  *store.TermSuppression `json:"term_suppression,omitempty"`
	TermDecision *store.TermDecision    `json:"term_decision,omitempty"`
	Exclusion    *store.Exclusion       `json:"exclusion,omitempty"`
	// A file of the school's rules overrides (DATA/school-rules/<school>).
	RulesOverride *RulesFile `json:"rules_override,omitempty"`
	End           *End       `json:"end,omitempty"`
}

// RulesFile is one file of the school's rules overrides, by its path in
// the school's folder.
type RulesFile struct {
	Path   string `json:"path"`
	SHA256 string `json:"sha256"`
	Data   []byte `json:"data_base64"`
}

// Header is the first line.
type Header struct {
	Format     string       `json:"format"`
	Version    int          `json:"version"`
	School     store.School `json:"school"`
	ExportedAt time.Time    `json:"exported_at"`
	ExportedBy string       `json:"exported_by"`
}

// AlertState is an alert's review state.
type AlertState struct {
	DeviceID string           `json:"device_id"`
	Seq      uint64           `json:"seq"`
	State    store.AlertState `json:"state"`
}

// Evidence is one stored evidence blob, as stored (encrypted).
type Evidence struct {
	DeviceID   string `json:"device_id"`
	Seq        uint64 `json:"seq"`
	ID         string `json:"id"`
	MediaType  string `json:"media_type"`
	SHA256     string `json:"sha256"`
	Ciphertext string `json:"ciphertext_base64,omitempty"`
	// Missing says why there are no bytes (expired by retention, damaged).
	Missing string `json:"missing,omitempty"`
}

// Token is an enrollment token without its secret's hash.
type Token struct {
	ID           string    `json:"id"`
	Group        string    `json:"group"`
	CreatedAt    time.Time `json:"created_at"`
	ExpiresAt    time.Time `json:"expires_at"`
	MaxUses      int       `json:"max_uses"`
	Uses         int       `json:"uses"`
	RevokedAt    time.Time `json:"revoked_at,omitzero"`
	RevokedBy    string    `json:"revoked_by,omitempty"`
	RevokeReason string    `json:"revoke_reason,omitempty"`
}

// Account is a console account without its credentials.
type Account struct {
	Username    string    `json:"username"`
	DisplayName string    `json:"display_name"`
	Role        string    `json:"role"`
	Email       string    `json:"email,omitempty"`
	Chair       bool      `json:"chair,omitempty"`
	Granted     []string  `json:"granted_schools,omitempty"`
	Created     time.Time `json:"created"`
	Disabled    bool      `json:"disabled,omitempty"`
}

// End is the last line: a file without it was cut short.
type End struct {
	Counts map[string]int `json:"counts"`
}

// Export writes school's records to w (see the package comment) and
// returns how many of each kind it wrote. ctx ends it early (the file then
// has no End line).
//
// overrides are the school's rules override files (rulesdist.SchoolOverrides).
func Export(ctx context.Context, st Store, school, by string, now time.Time, overrides map[string][]byte, w io.Writer) (map[string]int, error) {
	sc, err := st.FindSchool(school)
	if err != nil {
		return nil, fmt.Errorf("find the school to export: %w", err)
	}
	id := store.SchoolOf(sc.ID)
	enc := json.NewEncoder(w)
	counts := map[string]int{}
	put := func(l Line) error {
		if err := enc.Encode(l); err != nil {
			return fmt.Errorf("write the export: %w", err)
		}
		counts[l.Kind]++
		return nil
	}
	if err := put(Line{Kind: "header", Header: &Header{Format: Format, Version: Version, School: sc, ExportedAt: now.UTC(), ExportedBy: by}}); err != nil {
		return nil, err
	}
	devices := map[string]bool{}
	var order []string
	for _, d := range st.Devices() {
		if store.SchoolOf(d.School) != id {
			continue
		}
		devices[d.DeviceID] = true
		order = append(order, d.DeviceID)
		if err := put(Line{Kind: "device", Device: &d}); err != nil {
			return nil, err
		}
	}
	for _, dev := range order {
		if err := exportDevice(ctx, st, dev, put); err != nil {
			return nil, err
		}
	}
	toks, err := st.Tokens()
	if err != nil {
		return nil, fmt.Errorf("read tokens: %w", err)
	}
	for _, t := range toks {
		if store.SchoolOf(t.School) != id {
			continue
		}
		if err := put(Line{Kind: "token", Token: &Token{ID: t.ID, Group: t.Group, CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt,
			MaxUses: t.MaxUses, Uses: t.Uses, RevokedAt: t.RevokedAt, RevokedBy: t.RevokedBy, RevokeReason: t.RevokeReason}}); err != nil {
			return nil, err
		}
	}
	users, err := st.Users()
	if err != nil {
		return nil, fmt.Errorf("read accounts: %w", err)
	}
	accounts := map[string]bool{}
	for _, u := range users {
		// Admin accounts administer the installation, not a school.
		if u.Role == auth.RoleAdmin || store.SchoolOf(u.School) != id {
			continue
		}
		accounts[u.Username] = true
		if err := put(Line{Kind: "account", Account: &Account{Username: u.Username, DisplayName: u.DisplayName, Role: u.Role,
			Email: u.Email, Chair: u.Chair, Granted: u.Granted, Created: u.Created, Disabled: u.Disabled}}); err != nil {
			return nil, err
		}
	}
	log, err := st.AccessLog()
	if err != nil {
		return nil, fmt.Errorf("read the access log: %w", err)
	}
	for _, e := range log {
		alertDev, _, _ := store.ParseAlertID(e.AlertID)
		if !accounts[e.Who] && !devices[e.DeviceID] && !devices[alertDev] {
			continue
		}
		if err := put(Line{Kind: "access", Access: &e}); err != nil {
			return nil, err
		}
	}
	if err := exportRules(st, id, devices, put); err != nil {
		return nil, err
	}
	paths := make([]string, 0, len(overrides))
	for p := range overrides {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	for _, p := range paths {
		sum := sha256.Sum256(overrides[p])
		if err := put(Line{Kind: "rules_override", RulesOverride: &RulesFile{Path: p, SHA256: hex.EncodeToString(sum[:]), Data: overrides[p]}}); err != nil {
			return nil, err
		}
	}
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	end := map[string]int{}
	for k, v := range counts {
		end[k] = v
	}
	if err := put(Line{Kind: "end", End: &End{Counts: end}}); err != nil {
		return nil, err
	}
	return counts, nil
}

// exportDevice writes one device's findings, with the review state of
// those that are alerts and their evidence.
func exportDevice(ctx context.Context, st Store, dev string, put func(Line) error) error {
	var werr error
	err := st.ListFindings(ctx, store.Query{Device: dev}, func(f *vigilv1.Finding) bool {
		slim := proto.Clone(f).(*vigilv1.Finding)
		slim.EvidenceData = nil // exported below, once, as stored
		b, err := protojson.Marshal(slim)
		if err != nil {
			werr = fmt.Errorf("encode finding %s/%d: %w", dev, f.Seq, err)
			return false
		}
		if werr = put(Line{Kind: "finding", Finding: b}); werr != nil {
			return false
		}
		if store.IsAlert(f) {
			a, err := st.GetAlert(dev, f.Seq)
			if err != nil && !errors.Is(err, store.ErrNotFound) {
				werr = fmt.Errorf("read alert %s/%d: %w", dev, f.Seq, err)
				return false
			}
			if a != nil {
				if werr = put(Line{Kind: "alert", Alert: &AlertState{DeviceID: dev, Seq: f.Seq, State: a.State}}); werr != nil {
					return false
				}
			}
		}
		for _, ref := range f.Evidence {
			ev := &Evidence{DeviceID: dev, Seq: f.Seq, ID: ref.Id, MediaType: ref.MediaType, SHA256: ref.Sha256}
			data, err := st.Evidence(dev, ref.Id, ref)
			switch {
			case err == nil:
				ev.Ciphertext = base64.StdEncoding.EncodeToString(data)
			case errors.Is(err, store.ErrNotFound):
				ev.Missing = "not stored (expired by retention, or never received)"
			default:
				ev.Missing = err.Error()
			}
			if werr = put(Line{Kind: "evidence", Evidence: ev}); werr != nil {
				return false
			}
		}
		return ctx.Err() == nil
	})
	if werr != nil {
		return werr
	}
	if err != nil {
		return fmt.Errorf("read the findings of %s: %w", dev, err)
	}
	return nil
}

// exportRules writes what the school decided about what is matched on its
// devices: its own terms, its suppressions of the trust's terms, the
// decisions of both, and the exclusions proposed from its alerts (the
// same ownership store.DeleteSchool removes).
func exportRules(st Store, school string, devices map[string]bool, put func(Line) error) error {
	own := func(sc string) bool { return store.SchoolOf(sc) == school }
	terms, err := st.SchoolTerms()
	if err != nil {
		return fmt.Errorf("read keyword terms: %w", err)
	}
	for _, t := range terms {
		if !t.TrustWide && own(t.School) {
			if err := put(Line{Kind: "term", Term: &t}); err != nil {
				return err
			}
		}
	}
	sup, err := st.TermSuppressions()
	if err != nil {
		return fmt.Errorf("read term suppressions: %w", err)
	}
	for _, x := range sup {
		if own(x.School) {
			if err := put(Line{Kind: "term_suppression", Suppression: &x}); err != nil {
				return err
			}
		}
	}
	ds, err := st.TermDecisions()
	if err != nil {
		return fmt.Errorf("read the terms' decision log: %w", err)
	}
	for _, d := range ds {
		if d.School != "" && own(d.School) || d.School == "" && !d.Term.TrustWide && own(d.Term.School) {
			if err := put(Line{Kind: "term_decision", TermDecision: &d}); err != nil {
				return err
			}
		}
	}
	xs, err := st.Exclusions()
	if err != nil {
		return fmt.Errorf("read exclusions: %w", err)
	}
	for _, x := range xs {
		dev, _, _ := store.ParseAlertID(x.AlertID)
		if devices[dev] || !x.TrustWide && x.School != "" && own(x.School) {
			if err := put(Line{Kind: "exclusion", Exclusion: &x}); err != nil {
				return err
			}
		}
	}
	return nil
}
