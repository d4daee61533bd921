package store

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// seedDevices writes n device records straight into Badger (a WriteBatch,
// not n synced enrollments) and reopens, as after a collector restart.
func seedDevices(t *testing.T, dir string, n int) *Store {
	t.Helper()
	s := openTest(t, dir, nil)
	wb := s.db.NewWriteBatch()
	for i := 0; i < n; i++ {
		d := Device{DeviceID: devID(i), Group: "year-7", Hostname: fmt.Sprintf("LAPTOP-%06d", i), OS: "windows", Arch: "amd64",
			HostFingerprint: strings.Repeat("f", 64), EnrolledAt: time.Now(), TokenID: "0123456789abcdef"}
		v, _ := json.Marshal(d)
		if err := wb.Set([]byte(pfxDevice+d.DeviceID), v); err != nil {
			t.Fatal(err)
		}
	}
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return openTest(t, dir, nil)
}

// Issue 8 item 10: after a mass reconnect every device is dirty; one
// transaction for all of them was "Txn is too big" and the dirty list was
// thrown away. Now every record is written, in as many commits as needed.
func TestFlushDevicesManyChanged(t *testing.T) {
	const n = 25_000
	dir := t.TempDir()
	s := seedDevices(t, dir, n)
	seen := time.Date(2026, 9, 3, 9, 0, 0, 0, time.UTC)
	for i := 0; i < n; i++ {
		if err := s.UpdateDevice(devID(i), func(d *Device) {
			d.LastSeen, d.Connected, d.AgentVersion = seen, true, "1.4.0"
			d.RulesHash = strings.Repeat("a", 64)
			d.SpoolDepth, d.RSSBytes = int64(i), 25<<20
		}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.FlushDevices(); err != nil {
		t.Fatalf("flush %d changed devices: %v", n, err)
	}
	s.devMu.Lock()
	left := len(s.dirty)
	s.devMu.Unlock()
	if left != 0 {
		t.Fatalf("%d devices still marked changed after a successful flush", left)
	}
	// Read back from Badger itself, not the cache.
	got := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(pfxDevice)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var d Device
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &d) }); err != nil {
				return err
			}
			if !d.LastSeen.Equal(seen) || d.AgentVersion != "1.4.0" {
				return fmt.Errorf("device %s not flushed: %+v", d.DeviceID, d)
			}
			got++
		}
		return nil
	})
	if err != nil || got != n {
		t.Fatalf("read back %d of %d flushed devices: %v", got, n, err)
	}
	s.Close()
}

// A flush that cannot write keeps every device marked, so the next flush
// writes them.
func TestFlushDevicesKeepsUnwritten(t *testing.T) {
	dir := t.TempDir()
	s := seedDevices(t, dir, 10)
	defer s.Close()
	for i := 0; i < 10; i++ {
		s.UpdateDevice(devID(i), func(d *Device) { d.AgentVersion = "2.0" })
	}
	// Writes refused (disk full): nothing written, nothing forgotten.
	s.disk.writesOff.Store(true)
	if err := s.FlushDevices(); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("flush with writes refused: %v", err)
	}
	s.devMu.Lock()
	left := len(s.dirty)
	s.devMu.Unlock()
	if left != 10 {
		t.Fatalf("a failed flush left %d of 10 devices marked", left)
	}
	s.disk.writesOff.Store(false)
	if err := s.FlushDevices(); err != nil {
		t.Fatal(err)
	}
	s.devMu.Lock()
	left = len(s.dirty)
	s.devMu.Unlock()
	if left != 0 {
		t.Fatalf("%d left after the retry", left)
	}
}

// Issue 8 item 11: thousands of enrollments race for one token. Every use
// up to the limit succeeds on the first try, none beyond, and no call sees
// a transaction conflict.
func TestUseTokenConcurrentExactLimit(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	const limit, callers = 3000, 4000
	now := time.Now()
	tok := Token{ID: "0123456789abcdef", SecretHash: "hash", Group: "year-7", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: limit}
	if err := s.PutToken(tok); err != nil {
		t.Fatal(err)
	}
	// A second token used at the same time must not disturb the first.
	other := Token{ID: "fedcba9876543210", SecretHash: "hash2", Group: "staff", CreatedAt: now, ExpiresAt: now.Add(time.Hour)}
	if err := s.PutToken(other); err != nil {
		t.Fatal(err)
	}
	var ok, usedUp, otherOK atomic.Int64
	var mu sync.Mutex
	var unexpected []error
	var wg sync.WaitGroup
	sem := make(chan struct{}, 256) // bounded concurrency
	for i := 0; i < callers; i++ {
		wg.Add(1)
		sem <- struct{}{}
		go func(i int) {
			defer wg.Done()
			defer func() { <-sem }()
			id, hash := tok.ID, tok.SecretHash
			if i%8 == 0 {
				id, hash = other.ID, other.SecretHash
			}
			got, err := s.UseToken(id, hash, time.Now())
			switch {
			case err == nil && id == other.ID:
				otherOK.Add(1)
			case err == nil:
				ok.Add(1)
				if got.Uses < 1 || got.Uses > limit {
					mu.Lock()
					unexpected = append(unexpected, fmt.Errorf("use returned uses=%d", got.Uses))
					mu.Unlock()
				}
			case errors.Is(err, ErrTokenUsedUp):
				usedUp.Add(1)
			default:
				mu.Lock()
				unexpected = append(unexpected, err)
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	if len(unexpected) > 0 {
		t.Fatalf("%d unexpected errors, first: %v", len(unexpected), unexpected[0])
	}
	main := int64(callers - callers/8)
	if ok.Load() != limit || usedUp.Load() != main-limit || otherOK.Load() != callers/8 {
		t.Fatalf("ok=%d used-up=%d other=%d, want %d, %d, %d", ok.Load(), usedUp.Load(), otherOK.Load(), limit, main-limit, callers/8)
	}
	toks, err := s.Tokens()
	if err != nil {
		t.Fatal(err)
	}
	for _, x := range toks {
		if x.ID == tok.ID && x.Uses != limit || x.ID == other.ID && x.Uses != callers/8 {
			t.Fatalf("stored uses of %s: %d", x.ID, x.Uses)
		}
	}
	// Wrong secret and unknown token still refused.
	if _, err := s.UseToken(other.ID, "wrong", time.Now()); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("wrong secret: %v", err)
	}
	if _, err := s.UseToken("nope", "x", time.Now()); !errors.Is(err, ErrTokenUnknown) {
		t.Fatalf("unknown token: %v", err)
	}
	if _, err := s.UseToken(other.ID, other.SecretHash, now.Add(2*time.Hour)); !errors.Is(err, ErrTokenExpired) {
		t.Fatalf("expired: %v", err)
	}
	_ = context.Background
}
