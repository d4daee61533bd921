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
	time.Sleep(200 * time.Millisecond) // let the watches be set up
	return &n, ch
}

func waitChange(t *testing.T, ch chan struct{}, within time.Duration, what string) {
	t.Helper()
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
	quiet(t, ch, 600*time.Millisecond)

	// New subdirectories are watched too (including files written
	// right after creating them).
	writeFiles(t, dir, map[string]string{"sub/deeper/b.yaml": ruleYAML("b")})
	waitChange(t, ch, 2*time.Second, "write in new subdirectory")
	quiet(t, ch, 600*time.Millisecond)
	if err := os.WriteFile(filepath.Join(dir, "sub", "deeper", "b.yaml"), []byte(ruleYAML("b2")), 0o644); err != nil {
		t.Fatal(err)
	}
	waitChange(t, ch, 2*time.Second, "rewrite in subdirectory")
	if got := n.Load(); got != 3 {
		t.Errorf("%d callbacks, want 3", got)
	}
}

func TestWatchDebounce(t *testing.T) {
	dir := t.TempDir()
	n, ch := startWatch(t, dir, 300*time.Millisecond)
	p := filepath.Join(dir, "burst.yaml")
	for i := 0; i < 50; i++ {
		if err := os.WriteFile(p, []byte(ruleYAML("burst")+"# "+itoa(i)+"\n"), 0o644); err != nil {
			t.Fatal(err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	waitChange(t, ch, 2*time.Second, "burst")
	time.Sleep(time.Second)
	if got := n.Load(); got < 1 || got > 2 {
		t.Errorf("%d callbacks for a burst of 50 writes", got)
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
