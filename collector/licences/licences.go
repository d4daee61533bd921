package licences

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Register is what the licence register needs of the collector store.
type Register interface {
	PutLicences(ls []store.Licence) error
	Licence(id string) (store.Licence, error)
	DeleteLicence(id string) error
	Licences() ([]store.Licence, error)
	PutLicenceAlias(a store.LicenceAlias) error
	DeleteLicenceAlias(title string) error
	LicenceAliases() ([]store.LicenceAlias, error)
	Disposals() ([]store.Disposal, error)
	audit.ChainReader
}

// ErrBadRequest marks an edit refused for what it asked (the caller's
// fault, not the store's).
var ErrBadRequest = errors.New("bad licence request")

// ErrNotFound is returned for a licence or alias that does not exist.
var ErrNotFound = store.ErrNotFound

// Service is the licence register and its reconciliation.
type Service struct {
	Store Register
	Now   func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

func newID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return "lic-" + hex.EncodeToString(b)
}

// ImportResult says what an import did.
type ImportResult struct {
	Added   int `json:"added"`
	Updated int `json:"updated"`
}

// Import reads a CSV licence file (see ParseCSV) and writes it in one
// transaction: a bad file changes nothing. A row whose reference and
// product match a licence already in the register updates it, so
// importing the same file again does not double the seats.
func (s *Service) Import(ctx context.Context, r io.Reader, by string) (ImportResult, error) {
	rows, err := ParseCSV(r)
	if err != nil {
		return ImportResult{}, fmt.Errorf("%w: %w", ErrBadRequest, err)
	}
	existing, err := s.Store.Licences()
	if err != nil {
		return ImportResult{}, err
	}
	byRef := map[string]string{}
	for _, l := range existing {
		if l.Reference != "" {
			byRef[l.Reference+"\x00"+Normalise(l.Product)] = l.ID
		}
	}
	var res ImportResult
	now := s.now()
	seen := map[string]bool{}
	for i := range rows {
		rows[i].UpdatedAt, rows[i].UpdatedBy = now, by
		k := rows[i].Reference + "\x00" + Normalise(rows[i].Product)
		if id, ok := byRef[k]; ok && rows[i].Reference != "" && !seen[id] {
			rows[i].ID, seen[id] = id, true
			res.Updated++
			continue
		}
		rows[i].ID = newID()
		res.Added++
	}
	if err := s.Store.PutLicences(rows); err != nil {
		return ImportResult{}, fmt.Errorf("import licences: %w", err)
	}
	return res, nil
}

func validate(l store.Licence) error {
	switch {
	case strings.TrimSpace(l.Product) == "" || Normalise(l.Product) == "":
		return fmt.Errorf("%w: a licence needs a product name", ErrBadRequest)
	case l.Seats < 1:
		return fmt.Errorf("%w: seats must be at least 1 (got %d)", ErrBadRequest, l.Seats)
	}
	return nil
}

// Add puts a new licence in the register.
func (s *Service) Add(ctx context.Context, l store.Licence, by string) (store.Licence, error) {
	if err := validate(l); err != nil {
		return store.Licence{}, err
	}
	l.ID, l.UpdatedAt, l.UpdatedBy = newID(), s.now(), by
	if err := s.Store.PutLicences([]store.Licence{l}); err != nil {
		return store.Licence{}, err
	}
	return l, nil
}

// Update replaces a licence's fields; the licence must exist.
func (s *Service) Update(ctx context.Context, l store.Licence, by string) (store.Licence, error) {
	if err := validate(l); err != nil {
		return store.Licence{}, err
	}
	if _, err := s.Store.Licence(l.ID); err != nil {
		return store.Licence{}, err
	}
	l.UpdatedAt, l.UpdatedBy = s.now(), by
	if err := s.Store.PutLicences([]store.Licence{l}); err != nil {
		return store.Licence{}, err
	}
	return l, nil
}

// Remove deletes a licence from the register.
func (s *Service) Remove(ctx context.Context, id string) error { return s.Store.DeleteLicence(id) }

// List returns the register.
func (s *Service) List(ctx context.Context) ([]store.Licence, error) { return s.Store.Licences() }

// SetAlias corrects the matching of one installed title: count it against
// licenceID, or ignore it (a free tool, an OS component the rule let
// through). The title is normalised, so one alias covers every version.
func (s *Service) SetAlias(ctx context.Context, title, licenceID string, ignore bool, by string) (store.LicenceAlias, error) {
	key := Normalise(title)
	if key == "" {
		return store.LicenceAlias{}, fmt.Errorf("%w: title %q has no name left once versions and editions are removed", ErrBadRequest, title)
	}
	if ignore == (licenceID != "") {
		return store.LicenceAlias{}, fmt.Errorf("%w: name either a licence or ignore, not both or neither", ErrBadRequest)
	}
	if licenceID != "" {
		if _, err := s.Store.Licence(licenceID); err != nil {
			return store.LicenceAlias{}, fmt.Errorf("%w: licence %q: %v", ErrBadRequest, licenceID, err)
		}
	}
	a := store.LicenceAlias{Title: key, LicenceID: licenceID, Ignore: ignore, By: by, At: s.now()}
	return a, s.Store.PutLicenceAlias(a)
}

// RemoveAlias lifts a correction; the title is matched automatically again.
func (s *Service) RemoveAlias(ctx context.Context, title string) error {
	return s.Store.DeleteLicenceAlias(Normalise(title))
}

// Aliases lists the corrections.
func (s *Service) Aliases(ctx context.Context) ([]store.LicenceAlias, error) {
	return s.Store.LicenceAliases()
}

// Reconcile reads the register, the corrections and the latest audit of
// every device not disposed of, and reports per product.
func (s *Service) Reconcile(ctx context.Context) (Report, error) {
	ls, err := s.Store.Licences()
	if err != nil {
		return Report{}, err
	}
	as, err := s.Store.LicenceAliases()
	if err != nil {
		return Report{}, err
	}
	ds, err := s.Store.Disposals()
	if err != nil {
		return Report{}, err
	}
	latest, err := audit.LatestAnswers(s.Store)
	if err != nil {
		return Report{}, fmt.Errorf("read the latest audits: %w", err)
	}
	for _, d := range ds {
		delete(latest, d.DeviceID)
	}
	return Reconcile(s.now(), ls, as, latest), nil
}

// LicensedOn names the licensed products the latest audit of a device
// found on it (for its disposal record: the licences to release).
func (s *Service) LicensedOn(ctx context.Context, deviceID string) ([]string, error) {
	ls, err := s.Store.Licences()
	if err != nil {
		return nil, err
	}
	as, err := s.Store.LicenceAliases()
	if err != nil {
		return nil, err
	}
	latest, err := audit.LatestAnswers(s.Store)
	if err != nil {
		return nil, err
	}
	a, ok := latest[deviceID]
	if !ok {
		return nil, nil
	}
	rep := Reconcile(s.now(), ls, as, map[string]audit.LatestAnswer{deviceID: a})
	var out []string
	for _, p := range rep.Products {
		if p.Installed > 0 {
			out = append(out, p.Product)
		}
	}
	return out, nil
}
