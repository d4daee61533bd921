package store

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Audit records (collector/audit owns their meaning; docs/storage.md the
// layout). An audit is a hash chain of entries written once each: the
// header (who asked, scope, reason, the devices in scope), then one entry
// per device (its inventory, or why there is none), then sign-offs. The
// head names the last entry and its hash; nothing is ever rewritten.
const (
	pfxAuditEntry = "au/e/" // au/e/<audit id>/<seq:4>        -> AuditEntry (JSON), write-once
	pfxAuditHead  = "au/h/" // au/h/<audit id>                -> AuditHead (JSON)
	pfxAuditQueue = "au/q/" // au/q/<device:26><audit id>     -> AuditQueued (JSON): not yet answered
)

// Audit entry kinds.
const (
	AuditHeaderEntry   = "header"
	AuditAnswerEntry   = "answer"
	AuditNoAnswerEntry = "no-answer"
	AuditSignoffEntry  = "signoff"
)

// ErrAuditBatchTooBig is returned by AppendAuditEntries for a batch larger
// than one transaction may be; the caller splits it.
var ErrAuditBatchTooBig = errors.New("store: audit batch too big for one transaction")

// ErrAuditClosed is returned for an answer from a device whose audit entry
// is already written (answered, or expired as not reached).
var ErrAuditClosed = errors.New("store: this device's part of the audit is already recorded")

// AuditEntry is one link of an audit's hash chain. Body is stored and
// hashed exactly as written.
type AuditEntry struct {
	Seq    int             `json:"seq"`
	Kind   string          `json:"kind"`
	Device string          `json:"device,omitempty"`
	At     time.Time       `json:"at"`
	Body   json.RawMessage `json:"body"`
	Prev   string          `json:"prev"`
	Hash   string          `json:"hash"`
}

// AuditEntryHash is the hash of an entry: SHA-256 over the previous hash
// and every field but its own hash, so changing, reordering or removing
// any entry breaks every later link.
func AuditEntryHash(e AuditEntry) string {
	h := sha256.New()
	for _, s := range []string{e.Prev, strconv.Itoa(e.Seq), e.Kind, e.Device, e.At.UTC().Format(time.RFC3339Nano)} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	h.Write(e.Body)
	return hex.EncodeToString(h.Sum(nil))
}

// AuditHead names the last entry of an audit.
type AuditHead struct {
	Seq  int    `json:"seq"`
	Hash string `json:"hash"`
}

// AuditQueued is a device's pending part of an audit: the request is sent
// whenever the device is connected, until it answers or the audit expires.
type AuditQueued struct {
	AuditID   string    `json:"audit_id"`
	DeviceID  string    `json:"device_id"`
	ExpiresAt time.Time `json:"expires_at"`
}

func auditEntryKey(id string, seq int) []byte {
	return binary.BigEndian.AppendUint32([]byte(pfxAuditEntry+id+"/"), uint32(seq))
}

func auditQueueKey(device, id string) []byte { return []byte(pfxAuditQueue + device + id) }

// validAuditID keeps IDs inside their key segment.
func validAuditID(id string) error {
	if id == "" || len(id) > 64 || strings.ContainsAny(id, "/\x00") {
		return fmt.Errorf("store: invalid audit id %q", id)
	}
	return nil
}

// CreateAudit writes an audit's header (entry 0) and queues it for each
// device, in one transaction. It refuses an ID that exists.
func (s *Store) CreateAudit(id string, at time.Time, header []byte, queue []AuditQueued) (AuditEntry, error) {
	if err := validAuditID(id); err != nil {
		return AuditEntry{}, err
	}
	e := AuditEntry{Seq: 0, Kind: AuditHeaderEntry, At: at.UTC(), Body: header}
	e.Hash = AuditEntryHash(e)
	ev, err := json.Marshal(e)
	if err != nil {
		return AuditEntry{}, fmt.Errorf("store: encode audit header: %w", err)
	}
	hv, _ := json.Marshal(AuditHead{Seq: 0, Hash: e.Hash})
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	err = s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(pfxAuditHead + id)); err == nil {
			return fmt.Errorf("audit %s exists", id)
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := txn.Set(auditEntryKey(id, 0), ev); err != nil {
			return err
		}
		if err := txn.Set([]byte(pfxAuditHead+id), hv); err != nil {
			return err
		}
		for _, q := range queue {
			q.AuditID = id
			v, _ := json.Marshal(q)
			if err := txn.Set(auditQueueKey(q.DeviceID, id), v); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return AuditEntry{}, fmt.Errorf("store: create audit %s: %w", id, err)
	}
	return e, nil
}

// AuditAppend is one entry to add to an audit's chain.
type AuditAppend struct {
	Kind   string
	Device string
	At     time.Time
	Body   []byte
}

// AppendAuditEntry adds an entry to an audit's chain. An answer or
// no-answer entry for a device also takes the device off the audit's
// queue, in the same transaction, and is refused (ErrAuditClosed) when the
// device is no longer queued: each device has exactly one entry.
func (s *Store) AppendAuditEntry(id, kind, device string, at time.Time, body []byte) (AuditEntry, error) {
	es, errs, err := s.AppendAuditEntries(id, []AuditAppend{{Kind: kind, Device: device, At: at, Body: body}})
	if err != nil {
		return AuditEntry{}, err
	}
	return es[0], errs[0]
}

// AppendAuditEntries adds several entries to one audit in one synced
// transaction (a fleet audit's answers arrive together: one fsync for
// many). errs[i] is ErrAuditClosed for an entry refused as in
// AppendAuditEntry; err is for the whole batch, nothing written.
func (s *Store) AppendAuditEntries(id string, adds []AuditAppend) (entries []AuditEntry, errs []error, err error) {
	if err := validAuditID(id); err != nil {
		return nil, nil, err
	}
	// One writer per store: appends to one chain must not race for the
	// head (a conflict retry would be one more synced write each).
	s.auditMu.Lock()
	defer s.auditMu.Unlock()
	err = s.update(func(txn *badger.Txn) error {
		entries, errs = make([]AuditEntry, len(adds)), make([]error, len(adds))
		var head AuditHead
		item, err := txn.Get([]byte(pfxAuditHead + id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &head) }); err != nil {
			return fmt.Errorf("decode audit head: %w", err)
		}
		done := map[string]bool{}
		for i, a := range adds {
			if a.Device != "" {
				qk := auditQueueKey(a.Device, id)
				if _, err := txn.Get(qk); errors.Is(err, badger.ErrKeyNotFound) || done[a.Device] {
					errs[i] = ErrAuditClosed
					continue
				} else if err != nil {
					return err
				}
				if err := txn.Delete(qk); err != nil {
					return err
				}
				done[a.Device] = true
			}
			e := AuditEntry{Seq: head.Seq + 1, Kind: a.Kind, Device: a.Device, At: a.At.UTC(), Body: a.Body, Prev: head.Hash}
			e.Hash = AuditEntryHash(e)
			ev, err := json.Marshal(e)
			if err != nil {
				return fmt.Errorf("encode audit entry: %w", err)
			}
			if err := txn.Set(auditEntryKey(id, e.Seq), ev); err != nil {
				return err
			}
			head = AuditHead{Seq: e.Seq, Hash: e.Hash}
			entries[i] = e
		}
		hv, _ := json.Marshal(head)
		return txn.Set([]byte(pfxAuditHead+id), hv)
	})
	if err != nil {
		if errors.Is(err, ErrNotFound) {
			return nil, nil, err
		}
		if errors.Is(err, badger.ErrTxnTooBig) {
			return nil, nil, ErrAuditBatchTooBig
		}
		return nil, nil, fmt.Errorf("store: append to audit %s: %w", id, err)
	}
	return entries, errs, nil
}

// AuditChain returns an audit's entries in order and its head.
func (s *Store) AuditChain(id string) ([]AuditEntry, AuditHead, error) {
	var out []AuditEntry
	var head AuditHead
	if err := validAuditID(id); err != nil {
		return nil, head, err
	}
	if err := getJSON(s.db, []byte(pfxAuditHead+id), &head); err != nil {
		return nil, head, err
	}
	err := scanJSON(s.db, pfxAuditEntry+id+"/", func(_, v []byte) error {
		var e AuditEntry
		if err := json.Unmarshal(v, &e); err != nil {
			return fmt.Errorf("decode audit entry: %w", err)
		}
		out = append(out, e)
		return nil
	})
	if err != nil {
		return nil, head, fmt.Errorf("store: read audit %s: %w", id, err)
	}
	return out, head, nil
}

// AuditHeaders returns every audit's header entry (entry 0), oldest ID
// first (IDs sort by time).
func (s *Store) AuditHeaders() ([]AuditEntry, error) {
	var ids []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pfxAuditHead)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			ids = append(ids, string(it.Item().Key()[len(pfxAuditHead):]))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list audits: %w", err)
	}
	out := make([]AuditEntry, 0, len(ids))
	for _, id := range ids {
		var e AuditEntry
		if err := getJSON(s.db, auditEntryKey(id, 0), &e); err != nil {
			return nil, fmt.Errorf("store: audit %s header: %w", id, err)
		}
		out = append(out, e)
	}
	return out, nil
}

// AuditQueue returns queued audit parts: one device's when device is set,
// else every device's.
func (s *Store) AuditQueue(device string) ([]AuditQueued, error) {
	var out []AuditQueued
	err := scanJSON(s.db, pfxAuditQueue+device, func(_, v []byte) error {
		var q AuditQueued
		if err := json.Unmarshal(v, &q); err != nil {
			return fmt.Errorf("decode audit queue entry: %w", err)
		}
		out = append(out, q)
		return nil
	})
	return out, err
}
