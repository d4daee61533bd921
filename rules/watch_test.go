package rules

import (
	"context"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"
)

// startWatch runs Watch in the background and returns the callback counter
// and a channel that receives after each callback.
func startWatch(t *testing.T, dir string, debounce time.Duration) (*atomic.Int64, chan struct{}) {
	t.Helper()
	var n atomic.Int64
	ch := make(chan struct{}, 100)
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- Watch(ctx, dir, debounce, func() {
			n.Add(1)
			ch <- struct{}{}
		})
	}()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v", err)
			}
		case <-time.After(3 * time.Second):
			t.Error("Watch did not return after cancel")
		}
	})
	if !isDir(dir) {
		// Watch polls for a missing directory (and reports its creation
		// as a change whenever it comes); let it notice it is missing.
		time.Sleep(200 * time.Millisecond)
		return &n, ch
	}
	// Wait until the watches are set up, however long that takes on a
	// loaded machine: a probe file (dot files are not rules, but their
	// creation is a change) is written until a callback reports it; then
	// it is removed, that callback awaited, and the count starts at zero.
	probe := filepath.Join(dir, ".watch-probe")
	for deadline := time.Now().Add(liveness); ; {
		if err := os.WriteFile(probe, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		select {
		case <-ch:
		case <-time.After(4 * debounce):
			if time.Now().After(deadline) {
				t.Fatalf("Watch did not report a change within %v of starting", liveness)
			}
			continue
		}
		break
	}
	os.Remove(probe)
	waitChange(t, ch, 0, "probe removal")
	settle(t, ch, debounce)
	n.Store(0)
	return &n, ch
}

// liveness bounds every wait for a callback: on a busy 2-core CI machine
// inotify events and timers can be late by seconds. It only says "it
// happened at all".
const liveness = 30 * time.Second

// settle drains callbacks until none has come for twice the debounce: a
// change whose parts a loaded machine spreads over more than the debounce
// (a directory, then the file in it) is reported more than once, by design.
func settle(t *testing.T, ch chan struct{}, debounce time.Duration) {
	t.Helper()
	for {
		select {
		case <-ch:
		case <-time.After(2 * debounce):
			return
		}
	}
}

func waitChange(t *testing.T, ch chan struct{}, within time.Duration, what string) {
	t.Helper()
	within = max(within, liveness)
	select {
	case <-ch:
	case <-time.After(within):
		t.Fatalf("no onChange within %v after %s", within, what)
	}
}

func quiet(t *testing.T, ch chan struct{}, d time.Duration) {
	t.Helper()
	select {
	case <-ch:
		t.Fatal("unexpected onChange")
	case <-time.After(d):
	}
}

func TestWatchWrite(t *testing.T) {
	dir := t.TempDir()
	n, ch := startWatch(t, dir, 300*time.Millisecond)
	quiet(t, ch, 500*time.Millisecond)
	start := time.Now()
	writeFiles(t, dir, map[string]string{"a.yaml": ruleYAML("a")})
	waitChange(t, ch, 2*time.Second, "write")
	if d := time.Since(start); d < 250*time.Millisecond {
		t.Errorf("onChange after %v, before the debounce", d)
	}
	settle(t, ch, 300*time.Millisecond)

	// New subdirectories are watched too (including files written
	// right after creating them).
	writeFiles(t, dir, map[string]string{"sub/deeper/b.yaml": ruleYAML("b")})
	waitChange(t, ch, 2*time.Second, "write in new subdirectory")
	settle(t, ch, 300*time.Millisecond)
	before := n.Load()
	if err := os.WriteFile(filepath.Join(dir, "sub", "deeper", "b.yaml"), []byte(ruleYAML("b2")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitChange(t, ch, 2*time.Second, "rewrite in subdirectory")
	// One rewrite is one callback, however slow the machine (merging
	// bursts is TestWatchDebounce's).
	settle(t, ch, 300*time.Millisecond)
	if got := n.Load() - before; got != 1 {
		t.Errorf("%d callbacks for one rewrite, want 1", got)
	}
}

func TestWatchDebounce(t *testing.T) {
	dir := t.TempDir()
	n, ch := startWatch(t, dir, 300*time.Millisecond)
	p := filepath.Join(dir, "burst.yaml")
	start := time.Now()
	for i := 0; i < 50; i++ {
		if err := os.WriteFile(p, []byte(ruleYAML("burst")+"# "+itoa(i)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	burst := time.Since(start)
	waitChange(t, ch, 2*time.Second, "burst")
	settle(t, ch, 300*time.Millisecond)
	// A burst longer than 5 debounces is reported every 5 debounces
	// (watch.go maxWait), so a loaded machine that spreads the 50 writes
	// out may see more callbacks; a watcher that does not merge sees ~50.
	if got, limit := n.Load(), int64(burst/(1500*time.Millisecond))+2; got < 1 || got > limit {
		t.Errorf("%d callbacks for a burst of 50 writes in %v, want 1..%d", got, burst.Round(time.Millisecond), limit)
	}
}

func TestWatchRecreate(t *testing.T) {
	parent := t.TempDir()
	dir := filepath.Join(parent, "rules")
	// Watch waits for a directory that does not exist yet.
	_, ch := startWatch(t, dir, 100*time.Millisecond)
	writeFiles(t, dir, map[string]string{"a.yaml": ruleYAML("a")})
	waitChange(t, ch, 3*time.Second, "directory creation")
	quiet(t, ch, 400*time.Millisecond)

	// Replace the directory by rename, as some deployment tools do.
	tmp := filepath.Join(parent, "rules.new")
	writeFiles(t, tmp, map[string]string{"b.yaml": ruleYAML("b")})
	if err := os.RemoveAll(dir); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dir); err != nil {
		t.Fatal(err)
	}
	waitChange(t, ch, 3*time.Second, "directory replaced")
	// Drain a possible second callback (removal, then re-creation).
	select {
	case <-ch:
	case <-time.After(1500 * time.Millisecond):
	}
	// The new directory is being watched.
	writeFiles(t, dir, map[string]string{"c.yaml": ruleYAML("c")})
	waitChange(t, ch, 2*time.Second, "write to re-created directory")
}
