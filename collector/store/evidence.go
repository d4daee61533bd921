package store

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

const (
	pfxEvidence     = "e/"  // e/<device:26><evidence id> -> age ciphertext, write-once
	pfxEvidenceMeta = "eh/" // eh/<device:26><evidence id> -> <seq:8><sha256:32> of the finding that stored it
	pfxAccessLog    = "l/"  // l/<unix ns:8><random:4>     -> AccessEntry (JSON), append-only
)

// ErrNotFound is returned for evidence that is not (or no longer) stored.
var ErrNotFound = errors.New("store: not found")

func evidenceKey(device, id string) []byte {
	return []byte(pfxEvidence + device + id)
}

// evidenceMetaKey holds, beside each blob, the seq of the finding that
// stored it and the SHA-256 its EvidenceRef announced (checked against the
// blob at ingest), so a reveal that names only (device, id) is verified too.
func evidenceMetaKey(device, id string) []byte {
	return []byte(pfxEvidenceMeta + device + id)
}

func encodeEvidenceMeta(seq uint64, sum [32]byte) []byte {
	return append(binary.BigEndian.AppendUint64(nil, seq), sum[:]...)
}

// ErrEvidenceMismatch means the stored evidence bytes do not hash to the
// SHA-256 its finding announced: it was replaced or damaged, so it is not
// shown. The refusal is in the access log.
var ErrEvidenceMismatch = errors.New("store: stored evidence does not match the SHA-256 in its finding; not shown")

// sameEvidence reports whether a blob is already stored under b's key and,
// if so, whether it has the same content.
func sameEvidence(txn *badger.Txn, device string, b *vigilv1.EvidenceBlob) (same, exists bool, err error) {
	item, err := txn.Get(evidenceKey(device, b.Id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, false, nil
	}
	if err != nil {
		return false, false, fmt.Errorf("check stored evidence %s: %w", b.Id, err)
	}
	err = item.Value(func(v []byte) error {
		same = bytes.Equal(v, b.Data)
		return nil
	})
	if err != nil {
		return false, true, fmt.Errorf("read stored evidence %s: %w", b.Id, err)
	}
	return same, true, nil
}

// Evidence returns the stored (still encrypted) evidence bytes after
// checking them against the SHA-256 the finding announced: ref's when given
// (the console passes the alert's own EvidenceRef, so a blob stored by
// another finding under the same id is refused), else the one recorded when
// the blob was stored. Every reveal goes through here. On a mismatch it
// returns ErrEvidenceMismatch and records the refusal in the access log.
func (s *Store) Evidence(device, id string, ref *vigilv1.EvidenceRef) ([]byte, error) {
	var out []byte
	var want []string // hex SHA-256 values the bytes must match
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(evidenceKey(device, id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		if out, err = item.ValueCopy(nil); err != nil {
			return err
		}
		if ref != nil {
			want = append(want, strings.ToLower(ref.GetSha256()))
		}
		item, err = txn.Get(evidenceMetaKey(device, id))
		switch {
		case err == nil:
			return item.Value(func(v []byte) error {
				if len(v) != 8+sha256.Size {
					return fmt.Errorf("evidence %s: malformed record of its hash", id)
				}
				want = append(want, hex.EncodeToString(v[8:]))
				return nil
			})
		case !errors.Is(err, badger.ErrKeyNotFound):
			return err
		case ref == nil:
			// Stored before hashes were recorded beside blobs: take the
			// hash from the finding that references it.
			h, err := s.refHashFromFindings(txn, device, id)
			if err != nil {
				return err
			}
			want = append(want, h)
		}
		return nil
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, ErrNotFound
		}
		return nil, fmt.Errorf("store: read evidence %s of %s: %w", id, device, err)
	}
	sum := sha256.Sum256(out)
	got := hex.EncodeToString(sum[:])
	for _, w := range want {
		if w != got {
			s.log.Error("evidence refused: stored bytes do not match the SHA-256 in its finding",
				"device", device, "evidence_id", id, "want_sha256", w, "stored_sha256", got)
			if lerr := s.LogAccess(AccessEntry{Time: time.Now().UTC(), Who: "collector", Action: "evidence-refused",
				DeviceID: device, EvidenceID: id,
				Reason: fmt.Sprintf("stored bytes hash to %s, the finding announced %s", got, w)}); lerr != nil {
				s.log.Error("record refused evidence in the access log", "err", lerr)
			}
			return nil, ErrEvidenceMismatch
		}
	}
	if len(want) == 0 {
		return nil, fmt.Errorf("store: evidence %s of %s: no finding announces its hash, so it cannot be verified: %w", id, device, ErrEvidenceMismatch)
	}
	return out, nil
}

// refHashFromFindings finds the SHA-256 the device's first finding that
// references evidence id announced for it (the write-once owner).
func (s *Store) refHashFromFindings(txn *badger.Txn, device, id string) (string, error) {
	it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte(pfxFindingByDevice + device)})
	defer it.Close()
	for it.Rewind(); it.Valid(); it.Next() {
		f := &vigilv1.Finding{}
		if err := it.Item().Value(func(v []byte) error { return s.decodeFinding(it.Item().Key(), v, f) }); err != nil {
			return "", err
		}
		for _, r := range f.Evidence {
			if r.GetId() == id {
				return strings.ToLower(r.GetSha256()), nil
			}
		}
	}
	return "", nil
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
	// Detail names what else the action touched (a group, a token ID).
	Detail string `json:"detail,omitempty"`
}

// LogAccess appends to the access log; callers must not show the data if
// this fails.
func (s *Store) LogAccess(e AccessEntry) error {
	key := binary.BigEndian.AppendUint64([]byte(pfxAccessLog), uint64(e.Time.UnixNano()))
	key = binary.BigEndian.AppendUint32(key, uint32(s.nextAccessSeq()))
	v, _ := json.Marshal(e)
	if err := s.update(func(txn *badger.Txn) error { return txn.Set(key, v) }); err != nil {
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

// EvidenceOwner is the seq of the finding that stored evidence id of a
// device (the write-once owner): the alert a reveal that names only the
// device and the evidence (the admin socket) is about. ErrNotFound if no
// finding of the device stored it.
func (s *Store) EvidenceOwner(device, id string) (uint64, error) {
	var seq uint64
	err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(evidenceMetaKey(device, id))
		if err == nil {
			return item.Value(func(v []byte) error {
				if len(v) != 8+sha256.Size {
					return fmt.Errorf("evidence %s: malformed record of its owner", id)
				}
				seq = binary.BigEndian.Uint64(v[:8])
				return nil
			})
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		// Stored before owners were recorded beside blobs: the device's
		// first finding that references it.
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte(pfxFindingByDevice + device)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			f := &vigilv1.Finding{}
			if err := it.Item().Value(func(v []byte) error { return s.decodeFinding(it.Item().Key(), v, f) }); err != nil {
				return err
			}
			for _, r := range f.Evidence {
				if r.GetId() == id {
					seq = f.Seq
					return nil
				}
			}
		}
		return ErrNotFound
	})
	if err != nil && !errors.Is(err, ErrNotFound) {
		return 0, fmt.Errorf("store: find the owner of evidence %s of %s: %w", id, device, err)
	}
	return seq, err
}
