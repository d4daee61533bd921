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
	DeviceID        string    `json:"device_id"`
	Group           string    `json:"group"`
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
	s.devMu.Lock()
	defer s.devMu.Unlock()
	v, _ := json.Marshal(d)
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set([]byte(pfxDevice+d.DeviceID), v) }); err != nil {
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
	s.dirty[id] = true
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

// FlushDevices writes changed device records.
func (s *Store) FlushDevices() error {
	s.devMu.Lock()
	batch := map[string][]byte{}
	for id := range s.dirty {
		v, _ := json.Marshal(s.devices[id])
		batch[id] = v
	}
	s.dirty = map[string]bool{}
	s.devMu.Unlock()
	if len(batch) == 0 {
		return nil
	}
	err := s.db.Update(func(txn *badger.Txn) error {
		for id, v := range batch {
			if err := txn.Set([]byte(pfxDevice+id), v); err != nil {
				return err
			}
		}
		return nil
	})
	if errors.Is(err, badger.ErrDBClosed) {
		return nil
	}
	return err
}
