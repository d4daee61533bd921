// Package inventory owns the school's ICT inventory: every device ever
// enrolled, its last audit, and the record of its disposal (seed 000
// §4.13), after which the device is revoked but never forgotten.
package inventory

import (
	"context"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Store is what the inventory needs of the collector store.
type Store interface {
	Devices() []store.Device
	GetDevice(id string) (store.Device, bool)
	Dispose(d store.Disposal) error
	Disposals() ([]store.Disposal, error)
	Revocations() ([]store.Revocation, error)
	audit.ChainReader
}

// Licensed names the licensed products found on a device (the licence
// reconciliation), recorded with its disposal.
type Licensed func(ctx context.Context, deviceID string) ([]string, error)

// ErrBadRequest marks a disposal refused for what it asked.
var ErrBadRequest = errors.New("bad disposal request")

// Service is the inventory.
type Service struct {
	Store    Store
	Licensed Licensed // optional
	Now      func() time.Time
	// Sees, if set, keeps the devices the reader may see (collector/
	// tenancy's SeesDevice for a console account: a school's inventory is
	// its own devices); nil lists every device (the operator).
	Sees func(deviceID string) bool
}

// Item is one device in the inventory.
type Item struct {
	store.Device
	LastAudit   time.Time       `json:"last_audit,omitzero"`
	LastAuditID string          `json:"last_audit_id,omitempty"`
	Disposed    *store.Disposal `json:"disposed,omitempty"`
}

// List returns every device ever enrolled, by ID, with its last audit
// answer and disposal record.
func (s *Service) List(ctx context.Context) ([]Item, error) {
	latest, err := audit.LatestAnswers(s.Store)
	if err != nil {
		return nil, fmt.Errorf("inventory: read audits: %w", err)
	}
	ds, err := s.Store.Disposals()
	if err != nil {
		return nil, fmt.Errorf("inventory: %w", err)
	}
	disposed := map[string]*store.Disposal{}
	for i := range ds {
		disposed[ds[i].DeviceID] = &ds[i]
	}
	devs := s.Store.Devices()
	out := make([]Item, 0, len(devs))
	for _, d := range devs {
		if s.Sees != nil && !s.Sees(d.DeviceID) {
			continue
		}
		it := Item{Device: d, Disposed: disposed[d.DeviceID]}
		if a, ok := latest[d.DeviceID]; ok {
			it.LastAudit, it.LastAuditID = a.At, a.AuditID
		}
		out = append(out, it)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].DeviceID < out[j].DeviceID })
	return out, nil
}

// DisposeRequest is what a technician records when a device leaves.
type DisposeRequest struct {
	DeviceID         string `json:"device_id"`
	Date             string `json:"date,omitempty"` // YYYY-MM-DD; default today
	AuthorisedBy     string `json:"authorised_by"`
	LicencesVerified bool   `json:"licences_verified"`
	PersonalData     string `json:"personal_data"`
	Wiped            string `json:"wiped,omitempty"`
	Method           string `json:"method"`
	Receipt          string `json:"receipt,omitempty"`
	PATCertificate   string `json:"pat_certificate,omitempty"`
	Notes            string `json:"notes,omitempty"`
}

func (r DisposeRequest) check() error {
	var missing []string
	for _, f := range []struct{ name, v string }{
		{"authorised by", r.AuthorisedBy}, {"personal data likely held (or none)", r.PersonalData}, {"method", r.Method},
	} {
		if strings.TrimSpace(f.v) == "" {
			missing = append(missing, f.name)
		}
	}
	if len(missing) > 0 {
		return fmt.Errorf("%w: a disposal record needs %s", ErrBadRequest, strings.Join(missing, ", "))
	}
	// Seed 000 §4.13: storage that may hold personal data is overwritten
	// or destroyed; the record says how.
	if !strings.EqualFold(strings.TrimSpace(r.PersonalData), "none") && strings.TrimSpace(r.Wiped) == "" {
		return fmt.Errorf("%w: the device may hold personal data (%q): record how its storage was wiped or destroyed", ErrBadRequest, r.PersonalData)
	}
	m := strings.ToLower(r.Method)
	if (strings.Contains(m, "sale") || strings.Contains(m, "sold") || strings.Contains(m, "gift")) && strings.TrimSpace(r.PATCertificate) == "" {
		return fmt.Errorf("%w: equipment sold or given needs a recent electrical safety check: record its PAT certificate", ErrBadRequest)
	}
	for _, v := range []string{r.AuthorisedBy, r.PersonalData, r.Wiped, r.Method, r.Receipt, r.PATCertificate} {
		if len(v) > 500 {
			return fmt.Errorf("%w: a field is longer than 500 characters", ErrBadRequest)
		}
	}
	if len(r.Notes) > 4000 {
		return fmt.Errorf("%w: notes longer than 4000 characters", ErrBadRequest)
	}
	return nil
}

// Dispose records a device's disposal and revokes it (store.Dispose does
// both at once). The device stays in the inventory, marked disposed.
func (s *Service) Dispose(ctx context.Context, r DisposeRequest, by string) (store.Disposal, error) {
	if err := r.check(); err != nil {
		return store.Disposal{}, err
	}
	if _, ok := s.Store.GetDevice(r.DeviceID); !ok {
		return store.Disposal{}, fmt.Errorf("%w: no device %q (see `vigil-collector inventory list`)", store.ErrNotFound, r.DeviceID)
	}
	now := time.Now().UTC()
	if s.Now != nil {
		now = s.Now().UTC()
	}
	date := now.Truncate(24 * time.Hour)
	if r.Date != "" {
		t, err := time.Parse("2006-01-02", r.Date)
		if err != nil {
			return store.Disposal{}, fmt.Errorf("%w: date %q: want YYYY-MM-DD", ErrBadRequest, r.Date)
		}
		date = t
	}
	d := store.Disposal{DeviceID: r.DeviceID, Date: date, AuthorisedBy: r.AuthorisedBy, LicencesVerified: r.LicencesVerified,
		PersonalData: r.PersonalData, Wiped: r.Wiped, Method: r.Method, Receipt: r.Receipt, PATCertificate: r.PATCertificate,
		Notes: r.Notes, RecordedBy: by, RecordedAt: now}
	if s.Licensed != nil {
		l, err := s.Licensed(ctx, r.DeviceID)
		if err != nil {
			return store.Disposal{}, fmt.Errorf("inventory: licences on %s: %w", r.DeviceID, err)
		}
		d.Licensed = l
	}
	if err := s.Store.Dispose(d); err != nil {
		return store.Disposal{}, err
	}
	return d, nil
}
