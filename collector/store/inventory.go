package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// pfxDisposal holds the disposal record of a device (seed 000 §4.13). Like
// a revocation it lives apart from the device record, which enrollment
// rewrites, and it is never deleted: a disposed device stays in the
// inventory.
const pfxDisposal = "dsp/" // dsp/<device id> -> Disposal (JSON)

// Disposal is the record of a device leaving the school's hands.
type Disposal struct {
	DeviceID     string    `json:"device_id"`
	Date         time.Time `json:"date"`
	AuthorisedBy string    `json:"authorised_by"`
	// LicencesVerified: the software licences on the device were checked
	// (transferred, released or destroyed with it).
	LicencesVerified bool `json:"licences_verified"`
	// Licensed: the licensed products its latest audit found, as the
	// reconciliation matched them when the disposal was recorded.
	Licensed []string `json:"licensed,omitempty"`
	// PersonalData: what personal data the device was likely to hold
	// ("none" when none).
	PersonalData string `json:"personal_data"`
	// Wiped: how its storage was wiped (or destroyed).
	Wiped string `json:"wiped,omitempty"`
	// Method: how it was disposed of (waste, gift, sale, recycler).
	Method string `json:"method"`
	// Receipt: the authorised agency's written receipt, accepting
	// responsibility for destroying any personal data.
	Receipt string `json:"receipt,omitempty"`
	// PATCertificate: the electrical safety check of an item sold or given.
	PATCertificate string    `json:"pat_certificate,omitempty"`
	Notes          string    `json:"notes,omitempty"`
	RecordedBy     string    `json:"recorded_by,omitempty"`
	RecordedAt     time.Time `json:"recorded_at"`
}

// ErrDisposed is returned when disposing of a device already disposed of.
var ErrDisposed = errors.New("device is already disposed of")

// Dispose records a disposal and revokes the device's key in one
// transaction: a disposed device must never stream again, and the record
// must not exist without the revocation (or the reverse).
func (s *Store) Dispose(d Disposal) error {
	if err := validSegment("device id", d.DeviceID); err != nil {
		return err
	}
	s.devMu.Lock()
	defer s.devMu.Unlock()
	dv, _ := json.Marshal(d)
	rv, _ := json.Marshal(Revocation{DeviceID: d.DeviceID, RevokedAt: d.RecordedAt, Who: d.RecordedBy,
		Reason: "disposed: " + d.Method})
	dev, known := s.devices[d.DeviceID]
	if !known {
		return fmt.Errorf("store: dispose of %s: %w", d.DeviceID, ErrNotFound)
	}
	updated := *dev
	updated.Revoked = true
	devVal, _ := json.Marshal(updated)
	err := s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(pfxDisposal + d.DeviceID)); err == nil {
			return ErrDisposed
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := txn.Set([]byte(pfxDisposal+d.DeviceID), dv); err != nil {
			return err
		}
		if err := txn.Set([]byte(pfxRevoked+d.DeviceID), rv); err != nil {
			return err
		}
		return txn.Set([]byte(pfxDevice+d.DeviceID), devVal)
	})
	if errors.Is(err, ErrDisposed) {
		return err
	}
	if err != nil {
		return fmt.Errorf("store: dispose of %s: %w", d.DeviceID, err)
	}
	*dev = updated
	delete(s.dirty, d.DeviceID)
	return nil
}

// Disposals lists every disposal record, by device ID.
func (s *Store) Disposals() ([]Disposal, error) {
	var out []Disposal
	err := scanJSON(s.db, pfxDisposal, func(_, v []byte) error {
		var d Disposal
		if err := json.Unmarshal(v, &d); err != nil {
			return fmt.Errorf("decode disposal: %w", err)
		}
		out = append(out, d)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list disposals: %w", err)
	}
	return out, nil
}
