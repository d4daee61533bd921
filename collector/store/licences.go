package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// The licence register (collector/licences owns its meaning; docs/storage.md
// the layout): licences by ID, and the technician's corrections to the
// matching, keyed by the normalised installed title they apply to.
const (
	pfxLicence      = "lic/l/" // lic/l/<licence id>        -> Licence (JSON)
	pfxLicenceAlias = "lic/a/" // lic/a/<normalised title>  -> LicenceAlias (JSON)
)

// Licence is one row of the register: a purchase of seats of a product.
type Licence struct {
	ID        string    `json:"id"`
	Product   string    `json:"product"`
	Publisher string    `json:"publisher,omitempty"`
	Seats     int       `json:"seats"`
	Expiry    time.Time `json:"expiry,omitzero"` // zero: perpetual
	Reference string    `json:"reference,omitempty"`
	UpdatedAt time.Time `json:"updated_at"`
	UpdatedBy string    `json:"updated_by,omitempty"`
}

// LicenceAlias overrides the automatic match for one installed title:
// count it against LicenceID, or (Ignore) leave it out of the report.
type LicenceAlias struct {
	Title     string    `json:"title"` // normalised installed title
	LicenceID string    `json:"licence_id,omitempty"`
	Ignore    bool      `json:"ignore,omitempty"`
	By        string    `json:"by,omitempty"`
	At        time.Time `json:"at"`
}

func validSegment(what, v string) error {
	if v == "" || len(v) > 256 || strings.ContainsRune(v, 0) {
		return fmt.Errorf("store: invalid %s %q", what, v)
	}
	return nil
}

// PutLicences writes licences (new or replacing ones with the same ID) in
// one transaction: an import is all or nothing.
func (s *Store) PutLicences(ls []Licence) error {
	for _, l := range ls {
		if err := validSegment("licence id", l.ID); err != nil {
			return err
		}
	}
	err := s.update(func(txn *badger.Txn) error {
		for _, l := range ls {
			v, _ := json.Marshal(l)
			if err := txn.Set([]byte(pfxLicence+l.ID), v); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, badger.ErrTxnTooBig) {
		return fmt.Errorf("store: %d licences are too many for one import; split the file", len(ls))
	}
	if err != nil {
		return fmt.Errorf("store: write %d licences: %w", len(ls), err)
	}
	return nil
}

// Licence returns one licence (ErrNotFound when there is none).
func (s *Store) Licence(id string) (Licence, error) {
	var l Licence
	if err := validSegment("licence id", id); err != nil {
		return l, err
	}
	err := getJSON(s.db, []byte(pfxLicence+id), &l)
	return l, err
}

// DeleteLicence removes a licence; ErrNotFound when there is none.
func (s *Store) DeleteLicence(id string) error {
	if err := validSegment("licence id", id); err != nil {
		return err
	}
	err := s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(pfxLicence + id)); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		return txn.Delete([]byte(pfxLicence + id))
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("store: delete licence %s: %w", id, err)
	}
	return err
}

// Licences lists the register, by ID.
func (s *Store) Licences() ([]Licence, error) {
	var out []Licence
	err := scanJSON(s.db, pfxLicence, func(_, v []byte) error {
		var l Licence
		if err := json.Unmarshal(v, &l); err != nil {
			return fmt.Errorf("decode licence: %w", err)
		}
		out = append(out, l)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list licences: %w", err)
	}
	return out, nil
}

// PutLicenceAlias sets the override for a normalised title.
func (s *Store) PutLicenceAlias(a LicenceAlias) error {
	if err := validSegment("alias title", a.Title); err != nil {
		return err
	}
	v, _ := json.Marshal(a)
	if err := s.update(func(txn *badger.Txn) error { return txn.Set([]byte(pfxLicenceAlias+a.Title), v) }); err != nil {
		return fmt.Errorf("store: put licence alias %q: %w", a.Title, err)
	}
	return nil
}

// DeleteLicenceAlias removes an override; ErrNotFound when there is none.
func (s *Store) DeleteLicenceAlias(title string) error {
	if err := validSegment("alias title", title); err != nil {
		return err
	}
	err := s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(pfxLicenceAlias + title)); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		return txn.Delete([]byte(pfxLicenceAlias + title))
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("store: delete licence alias %q: %w", title, err)
	}
	return err
}

// LicenceAliases lists every override, by title.
func (s *Store) LicenceAliases() ([]LicenceAlias, error) {
	var out []LicenceAlias
	err := scanJSON(s.db, pfxLicenceAlias, func(_, v []byte) error {
		var a LicenceAlias
		if err := json.Unmarshal(v, &a); err != nil {
			return fmt.Errorf("decode licence alias: %w", err)
		}
		out = append(out, a)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list licence aliases: %w", err)
	}
	return out, nil
}
