package store

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/internal/testutil"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// waitUntil polls cond for up to d (generous: the machine is shared).
func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// Issue 8 item 3: a full disk crashed the collector (SIGBUS from Badger's
// mmap writes). Now, with the data dir's filesystem filled to the last byte
// by another file while findings stream in: the store refuses findings with
// ErrDiskFull (the agent keeps them), refuses console writes, serves reads,
// says why once, and resumes by itself when the file is removed; every
// acknowledged finding is there after a restart.
func TestDiskFullRefusesThenResumes(t *testing.T) {
	mnt := testutil.LoopExt4(t, 64<<20)
	dir := filepath.Join(mnt, "badger")
	logs := &testutil.SyncBuffer{}
	opts := Options{Logger: slog.New(slog.NewTextHandler(logs, nil)), DiskReserve: 8 << 20, DiskCheckInterval: 50 * time.Millisecond,
		Memory: Memory{MemTableSize: 2 << 20, ValueLogFileSize: 1 << 20, BaseTableSize: 512 << 10}}
	s, err := Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	dev := devID(7)
	var mu sync.Mutex
	acked := map[uint64]bool{}
	refused := 0
	stop := make(chan struct{})
	done := make(chan struct{})
	// The agent: one batch at a time, resent until acknowledged.
	go func() {
		defer close(done)
		seq := uint64(0)
		for {
			var batch []*vigilv1.Finding
			for i := 0; i < 50; i++ {
				f := testFinding(dev, seq+uint64(i)+1, "x", time.Now())
				f.Message = strings.Repeat("m", 1000)
				batch = append(batch, f)
			}
			for {
				select {
				case <-stop:
					return
				default:
				}
				_, _, err := s.CommitFindings(context.Background(), batch)
				if err == nil {
					break
				}
				if !errors.Is(err, ErrDiskFull) && !errors.Is(err, ErrOverloaded) {
					t.Errorf("commit: %v", err)
					return
				}
				mu.Lock()
				refused++
				mu.Unlock()
				time.Sleep(10 * time.Millisecond)
			}
			mu.Lock()
			for _, f := range batch {
				acked[f.Seq] = true
			}
			mu.Unlock()
			seq += 50
		}
	}()
	count := func() int { mu.Lock(); defer mu.Unlock(); return len(acked) }
	waitUntil(t, 60*time.Second, "first findings stored", func() bool { return count() >= 2000 })

	fill := filepath.Join(mnt, "fill")
	n := testutil.FillToLastByte(t, fill)
	t.Logf("filled %d bytes; %d findings acknowledged so far", n, count())
	waitUntil(t, 30*time.Second, "findings refused", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return refused > 0 && s.Health().DiskFull
	})
	// Badger may free some of its own space (a flushed memtable's log);
	// take that too, until every write is refused.
	waitUntil(t, 30*time.Second, "all writes refused", func() bool {
		testutil.FillToLastByte(t, fill)
		s.checkDisk()
		return s.Health().WritesRefused
	})
	h := s.Health()
	if !h.DiskFull || !h.WritesRefused || h.Reason == "" || h.FreeBytes >= h.ReserveBytes {
		t.Fatalf("health while full: %+v", h)
	}
	// Console writes refused with ErrDiskFull, reads served.
	if err := s.PutSession("abc", Session{Username: "dsl1"}, time.Hour); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("console write while full: %v", err)
	}
	if _, err := s.UseToken("t", "h", time.Now()); !errors.Is(err, ErrDiskFull) {
		t.Fatalf("token use while full: %v", err)
	}
	before := count()
	read := 0
	if err := s.ListFindings(context.Background(), Query{Device: dev}, func(*vigilv1.Finding) bool { read++; return true }); err != nil {
		t.Fatalf("read while full: %v", err)
	}
	if read < before {
		t.Fatalf("read %d findings while full, %d were acknowledged", read, before)
	}
	// A while full: nothing new is acknowledged, nothing crashes.
	time.Sleep(300 * time.Millisecond)
	if c := count(); c != before {
		t.Fatalf("%d findings acknowledged while the disk was full", c-before)
	}

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 30*time.Second, "ingest resumed", func() bool { return !s.Health().DiskFull && count() >= before+1000 })
	close(stop)
	<-done
	if got := strings.Count(logs.String(), "disk full, refusing findings"); got != 1 {
		t.Fatalf("disk full logged %d times, want once per episode:\n%s", got, logs.String())
	}
	if !strings.Contains(logs.String(), "disk space is back") {
		t.Fatalf("resume not logged")
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s, err = Open(dir, opts)
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	stored := map[uint64]bool{}
	s.ListFindings(context.Background(), Query{Device: dev}, func(f *vigilv1.Finding) bool { stored[f.Seq] = true; return true })
	lost := 0
	for seq := range acked {
		if !stored[seq] {
			lost++
		}
	}
	if lost > 0 {
		t.Fatalf("%d of %d acknowledged findings lost", lost, len(acked))
	}
	t.Logf("%d acknowledged, all stored; %d commits refused while full", len(acked), refused)
	_ = io.Discard
}
