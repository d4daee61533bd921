package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// pfxRevoked holds one record per revoked device key. It is kept apart from
// the device record on purpose: enrollment rewrites the device record, and a
// revocation must survive that until a technician lifts it.
const pfxRevoked = "rv/" // rv/<device id> -> Revocation (JSON)

// Revocation records who revoked a device key, when and why. The device ID
// is derived from the public key, so it names the key as well as the device.
type Revocation struct {
	DeviceID  string    `json:"device_id"`
	RevokedAt time.Time `json:"revoked_at"`
	Who       string    `json:"who,omitempty"`
	Reason    string    `json:"reason,omitempty"`
}

// ErrNotRevoked is returned by Unrevoke for a key that is not revoked.
var ErrNotRevoked = errors.New("device is not revoked")

// Revoke marks the device revoked and records the key as revoked, in one
// transaction, so neither its certificate nor a fresh enrollment of the same
// key is accepted until Unrevoke. The device need not be known (a key seen
// only in a report can be blocked in advance).
func (s *Store) Revoke(r Revocation) error {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	v, _ := json.Marshal(r)
	var devVal []byte
	d, known := s.devices[r.DeviceID]
	var updated Device
	if known {
		updated = *d
		updated.Revoked = true
		devVal, _ = json.Marshal(updated)
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(pfxRevoked+r.DeviceID), v); err != nil {
			return err
		}
		if known {
			return txn.Set([]byte(pfxDevice+r.DeviceID), devVal)
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("store: revoke device %s: %w", r.DeviceID, err)
	}
	if known {
		*d = updated
		delete(s.dirty, r.DeviceID)
	}
	return nil
}

// Revoked returns the revocation of a device key, if it is revoked.
func (s *Store) Revoked(deviceID string) (Revocation, bool, error) {
	var r Revocation
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(pfxRevoked + deviceID))
		if err != nil {
			return err
		}
		return item.Value(func(v []byte) error { return json.Unmarshal(v, &r) })
	})
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Revocation{}, false, nil
	}
	if err != nil {
		return Revocation{}, false, fmt.Errorf("store: read revocation of %s: %w", deviceID, err)
	}
	return r, true, nil
}

// Unrevoke lifts a revocation: the key may enroll again and its
// certificate is accepted again. Revocation is of the key, so lifting it is
// the technician's statement that the key is trusted once more (a laptop
// found again); it is an explicit, logged action, never a side effect.
func (s *Store) Unrevoke(deviceID string) (Revocation, error) {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	var r Revocation
	d, known := s.devices[deviceID]
	var updated Device
	var devVal []byte
	if known {
		updated = *d
		updated.Revoked = false
		devVal, _ = json.Marshal(updated)
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		// A disposed device's key is never trusted again: it left the
		// school's hands (inventory.go).
		if _, err := txn.Get([]byte(pfxDisposal + deviceID)); err == nil {
			return ErrDisposed
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		item, err := txn.Get([]byte(pfxRevoked + deviceID))
		switch {
		case errors.Is(err, badger.ErrKeyNotFound):
			// A device revoked before revocations had their own record.
			if !known || !d.Revoked {
				return ErrNotRevoked
			}
			r = Revocation{DeviceID: deviceID}
		case err != nil:
			return err
		default:
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return err
			}
			if err := txn.Delete([]byte(pfxRevoked + deviceID)); err != nil {
				return err
			}
		}
		if known {
			return txn.Set([]byte(pfxDevice+deviceID), devVal)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotRevoked) || errors.Is(err, ErrDisposed) {
			return Revocation{}, err
		}
		return Revocation{}, fmt.Errorf("store: unrevoke %s: %w", deviceID, err)
	}
	if known {
		*d = updated
		delete(s.dirty, deviceID)
	}
	return r, nil
}

// Revocations lists every revoked key.
func (s *Store) Revocations() ([]Revocation, error) {
	var out []Revocation
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(pfxRevoked)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var r Revocation
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &r) }); err != nil {
				return err
			}
			out = append(out, r)
		}
		return nil
	})
	return out, err
}
