package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Device is the collector's record of one enrolled device. Heartbeat fields
// change often; they live in memory and are flushed every few seconds and at
// Close, since losing a few seconds of last-seen is harmless.
type Device struct {
	DeviceID string `json:"device_id"`
	Group    string `json:"group"`
	// School is the school the device's enrollment token carried ("" is
	// DefaultSchool); it decides who in the console sees the device.
	School          string    `json:"school,omitempty"`
	Hostname        string    `json:"hostname"`
	OS              string    `json:"os"`
	Arch            string    `json:"arch"`
	HostFingerprint string    `json:"host_fingerprint"`
	EnrolledAt      time.Time `json:"enrolled_at"`
	TokenID         string    `json:"token_id"`
	Revoked         bool      `json:"revoked,omitempty"`
	LastSeen        time.Time `json:"last_seen"`
	AgentVersion    string    `json:"agent_version"`
	RulesHash       string    `json:"rules_hash"`
	SpoolDepth      int64     `json:"spool_depth"`
	SpoolBytes      int64     `json:"spool_bytes"`
	DroppedTotal    uint64    `json:"dropped_total"`
	CPUPercent      float64   `json:"cpu_percent"`
	RSSBytes        int64     `json:"rss_bytes"`
	// From heartbeats: findings the collector refused that the agent set
	// aside, the agent's spool write failures, and its last local failure.
	RejectedTotal      uint64 `json:"rejected_total"`
	SpoolWriteFailures uint64 `json:"spool_write_failures"`
	LastError          string `json:"last_error,omitempty"`
	Connected          bool   `json:"connected"`
	// Presence feeds the coverage judgement (collector/coverage).
	Presence Presence `json:"presence"`
}

func (s *Store) loadDevices() error {
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(pfxDevice)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			d := &Device{}
			err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, d) })
			if err != nil {
				return fmt.Errorf("store: load device %s: %w", it.Item().Key(), err)
			}
			d.Connected = false
			s.devices[d.DeviceID] = d
		}
		return nil
	})
}

// PutDevice writes a device record durably (enrollment).
func (s *Store) PutDevice(d Device) error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	s.devMu.Lock()
	defer s.devMu.Unlock()
	v, _ := json.Marshal(d)
	if err := s.update(func(txn *badger.Txn) error { return txn.Set([]byte(pfxDevice+d.DeviceID), v) }); err != nil {
		return fmt.Errorf("store: put device %s: %w", d.DeviceID, err)
	}
	s.devices[d.DeviceID] = &d
	delete(s.dirty, d.DeviceID)
	return nil
}

// GetDevice returns a copy of the device record.
func (s *Store) GetDevice(id string) (Device, bool) {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	d, ok := s.devices[id]
	if !ok {
		return Device{}, false
	}
	return *d, true
}

// UpdateDevice changes the cached record; FlushDevices persists it.
func (s *Store) UpdateDevice(id string, fn func(*Device)) error {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	d, ok := s.devices[id]
	if !ok {
		return fmt.Errorf("store: update unknown device %s", id)
	}
	fn(d)
	s.dirtyGen++
	s.dirty[id] = s.dirtyGen
	return nil
}

// Devices lists every device, ordered by ID.
func (s *Store) Devices() []Device {
	s.devMu.Lock()
	out := make([]Device, 0, len(s.devices))
	for _, d := range s.devices {
		out = append(out, *d)
	}
	s.devMu.Unlock()
	sort.Slice(out, func(i, j int) bool { return out[i].DeviceID < out[j].DeviceID })
	return out
}

// FlushDevices writes changed device records. After a mass reconnect tens
// of thousands may have changed, more than one Badger transaction holds, so
// they are committed in as many transactions as needed. A device stays
// marked changed until a commit holding its record succeeds (and is not
// unmarked if it changed again meanwhile), so a failed flush is retried in
// full by the next one.
func (s *Store) FlushDevices() error {
	s.flushMu.Lock()
	defer s.flushMu.Unlock()
	type rec struct {
		id  string
		gen uint64
		v   []byte
	}
	s.devMu.Lock()
	batch := make([]rec, 0, len(s.dirty))
	for id, gen := range s.dirty {
		v, _ := json.Marshal(s.devices[id])
		batch = append(batch, rec{id, gen, v})
	}
	s.devMu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	if err := s.writeAllowed(false); err != nil {
		return fmt.Errorf("store: flush %d device records: %w", len(batch), err)
	}
	written := 0
	commit := func(txn *badger.Txn, upto int) error {
		if err := txn.Commit(); err != nil {
			return err
		}
		s.devMu.Lock()
		for _, r := range batch[written:upto] {
			if s.dirty[r.id] == r.gen {
				delete(s.dirty, r.id)
			}
		}
		s.devMu.Unlock()
		written = upto
		return nil
	}
	txn := s.db.NewTransaction(true)
	for i, r := range batch {
		err := txn.Set([]byte(pfxDevice+r.id), r.v)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err = commit(txn, i); err == nil {
				txn = s.db.NewTransaction(true)
				err = txn.Set([]byte(pfxDevice+r.id), r.v)
			}
		}
		if err != nil {
			txn.Discard()
			return s.flushErr(err, written, len(batch))
		}
	}
	if err := commit(txn, len(batch)); err != nil {
		return s.flushErr(err, written, len(batch))
	}
	return nil
}

func (s *Store) flushErr(err error, written, total int) error {
	if errors.Is(err, badger.ErrDBClosed) {
		return nil
	}
	return fmt.Errorf("store: flush device records (%d of %d written, the rest kept for the next flush): %w",
		written, total, s.mapWriteErr(err))
}
