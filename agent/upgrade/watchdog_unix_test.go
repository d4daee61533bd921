//go:build !windows

package upgrade

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/state"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestWatchRestoresAndStarts: a pending swap past its deadline is claimed,
// the previous binary put back and started with the recorded arguments, and
// the next agent start reports the rollback.
func TestWatchRestoresAndStarts(t *testing.T) {
	dir := state.Dir(t.TempDir())
	bin := t.TempDir()
	exe, prev := filepath.Join(bin, "vigil-agent"), filepath.Join(bin, "vigil-agent.prev")
	marker := filepath.Join(bin, "started")
	// The "previous binary" is a script that leaves a marker when started.
	if err := os.WriteFile(prev, []byte("#!/bin/sh\necho \"$@\" > "+marker+"\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(exe, []byte("#!/bin/sh\nexit 1\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := savePending(dir, Pending{From: "1.0.0", To: "2.0.0", Exe: exe, Prev: prev, Args: []string{"run", "--state", string(dir)},
		Deadline: time.Now().Add(300 * time.Millisecond)}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if err := Watch(ctx, WatchConfig{State: dir, Logger: quiet(), Poll: 50 * time.Millisecond}); err != nil {
		t.Fatal(err)
	}
	if b, _ := os.ReadFile(exe); !strings.Contains(string(b), marker) {
		t.Fatalf("binary not restored: %q", b)
	}
	deadline := time.Now().Add(30 * time.Second)
	for {
		b, err := os.ReadFile(marker)
		if err == nil && strings.Contains(string(b), "run --state") {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("restored binary not started with the recorded arguments")
		}
		time.Sleep(50 * time.Millisecond)
	}
	if _, ok, _ := LoadPending(dir); ok {
		t.Fatal("pending file left")
	}
	var found []*vigilv1.Finding
	u, err := New(Config{State: dir, Exe: exe, Logger: quiet(), Finding: func(f *vigilv1.Finding) { found = append(found, f) }})
	if err != nil {
		t.Fatal(err)
	}
	reps := u.Welcomed()
	if len(reps) != 1 || reps[0].Outcome != vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_ROLLED_BACK || reps[0].Version != "2.0.0" {
		t.Fatalf("reports %v", reps)
	}
	if len(found) != 1 || found[0].RuleId != "agent-upgrade-rolled-back" {
		t.Fatalf("findings %v", found)
	}
	// Reported once; the version stays refused locally.
	if reps := u.Welcomed(); len(reps) != 0 {
		t.Fatalf("reported twice: %v", reps)
	}
	if rep := u.Offer(ctx, &vigilv1.UpgradeOffer{Version: "2.0.0"}, nil); rep == nil || rep.Outcome != vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_REFUSED {
		t.Fatalf("re-offer after rollback: %v", rep)
	}
}

// TestWatchStandsDownWhenConfirmed: the new version's welcome removes the
// pending file and the watchdog leaves everything alone.
func TestWatchStandsDownWhenConfirmed(t *testing.T) {
	dir := state.Dir(t.TempDir())
	bin := t.TempDir()
	exe, prev := filepath.Join(bin, "vigil-agent"), filepath.Join(bin, "vigil-agent.prev")
	os.WriteFile(exe, []byte("new"), 0o755)
	os.WriteFile(prev, []byte("old"), 0o755)
	if err := savePending(dir, Pending{From: "1.0.0", To: "dev", Exe: exe, Prev: prev, Deadline: time.Now().Add(time.Minute)}); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() {
		done <- Watch(context.Background(), WatchConfig{State: dir, Logger: quiet(), Poll: 20 * time.Millisecond})
	}()
	// version.Version is "dev" in tests: this process is "the new version".
	u, err := New(Config{State: dir, Exe: exe, Logger: quiet()})
	if err != nil {
		t.Fatal(err)
	}
	reps := u.Welcomed()
	if len(reps) != 1 || reps[0].Outcome != vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_SUCCEEDED {
		t.Fatalf("reports %v", reps)
	}
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("watchdog did not stand down")
	}
	if b, _ := os.ReadFile(exe); string(b) != "new" {
		t.Fatal("watchdog touched the confirmed binary")
	}
}
