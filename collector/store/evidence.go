package store

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

const (
	pfxEvidence  = "e/" // e/<device:26><evidence id> -> age ciphertext
	pfxAccessLog = "l/" // l/<unix ns:8><random:4>     -> AccessEntry (JSON), append-only
)

// ErrNotFound is returned for evidence that is not (or no longer) stored.
var ErrNotFound = errors.New("store: not found")

func evidenceKey(device, id string) []byte {
	return []byte(pfxEvidence + device + id)
}

// Evidence returns the stored (still encrypted) evidence bytes.
func (s *Store) Evidence(device, id string) ([]byte, error) {
	var out []byte
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(evidenceKey(device, id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		out, err = item.ValueCopy(nil)
		return err
	})
	return out, err
}

// AccessEntry records one view of personal data or evidence.
type AccessEntry struct {
	Time       time.Time `json:"time"`
	Who        string    `json:"who"`
	Action     string    `json:"action"`
	DeviceID   string    `json:"device_id,omitempty"`
	AlertID    string    `json:"alert_id,omitempty"`
	EvidenceID string    `json:"evidence_id,omitempty"`
	Reason     string    `json:"reason,omitempty"`
}

// LogAccess appends to the access log; callers must not show the data if
// this fails.
func (s *Store) LogAccess(e AccessEntry) error {
	key := binary.BigEndian.AppendUint64([]byte(pfxAccessLog), uint64(e.Time.UnixNano()))
	key = binary.BigEndian.AppendUint32(key, uint32(s.nextAccessSeq()))
	v, _ := json.Marshal(e)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(key, v) }); err != nil {
		return fmt.Errorf("store: log access: %w", err)
	}
	return nil
}

// AccessLog lists the access log, oldest first.
func (s *Store) AccessLog() ([]AccessEntry, error) {
	var out []AccessEntry
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(pfxAccessLog)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var e AccessEntry
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &e) }); err != nil {
				return err
			}
			out = append(out, e)
		}
		return nil
	})
	return out, err
}
