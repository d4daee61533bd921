package enroll

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/internal/testutil"
)

const testToken = "vgl1.0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.zOvDP0RF714zOQtj2mSfEYLNyXlPxJWSuWy2E_bo8kM"

func TestLoadBootstrapRefusesBadFiles(t *testing.T) {
	dir := t.TempDir()
	if _, err := LoadBootstrap(filepath.Join(dir, "none")); !errors.Is(err, ErrNoBootstrap) {
		t.Errorf("missing file: %v", err)
	}
	for name, body := range map[string]string{
		"not json":     "collector=x",
		"no collector": `{"token":"` + testToken + `"}`,
		"bad token":    `{"collector":"a:1","token":"vgl1.x"}`,
		"pin mismatch": `{"collector":"a:1","token":"` + testToken + `","ca_fingerprint":"00"}`,
	} {
		p := filepath.Join(dir, strings.ReplaceAll(name, " ", "-"))
		os.WriteFile(p, []byte(body), 0o600)
		if _, err := LoadBootstrap(p); err == nil || errors.Is(err, ErrNoBootstrap) {
			t.Errorf("%s: %v", name, err)
		}
	}
}

func TestWriteBootstrapOwnerOnly(t *testing.T) {
	p := filepath.Join(t.TempDir(), "etc", "vigil-agent", "enroll.conf")
	b := Bootstrap{Collector: "vigil.lan:7443", Token: testToken, Group: "pupils"}
	if err := WriteBootstrap(p, b); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(p)
	if err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v %v", st.Mode(), err)
	}
	got, err := LoadBootstrap(p)
	if err != nil || got != b {
		t.Errorf("round trip: %+v %v", got, err)
	}
	if err := WriteBootstrap(p, Bootstrap{Collector: "x:1", Token: "nope"}); err == nil {
		t.Error("wrote a configuration with a malformed token")
	}
}

func TestEnsureEnrolledNoConfigIsNoop(t *testing.T) {
	dir := state.Dir(t.TempDir())
	if err := EnsureEnrolled(context.Background(), dir, BootstrapOptions{Path: filepath.Join(t.TempDir(), "none")}); err != nil {
		t.Fatalf("no enrollment configuration must leave the old behaviour: %v", err)
	}
}

// An enrolled state dir is never enrolled again, whatever the configuration
// says: here it names an address that would fail, and nothing is tried.
func TestEnsureEnrolledNeverReenrolls(t *testing.T) {
	dir := state.Dir(t.TempDir())
	dir.Ensure()
	if err := dir.SaveConfig(state.Config{DeviceID: "keepme", Collector: "a:1"}); err != nil {
		t.Fatal(err)
	}
	os.WriteFile(dir.KeyPath(), []byte("key"), 0o600)
	conf := filepath.Join(t.TempDir(), "enroll.conf")
	WriteBootstrap(conf, Bootstrap{Collector: "127.0.0.1:1", Token: testToken})
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := EnsureEnrolled(ctx, dir, BootstrapOptions{Path: conf}); err != nil {
		t.Fatal(err)
	}
	if cfg, _ := dir.LoadConfig(); cfg.DeviceID != "keepme" {
		t.Errorf("identity replaced: %+v", cfg)
	}
}

// With nothing listening, enrollment is retried (with a warning that says
// the collector is unreachable, not that enrollment failed) until the
// context ends.
func TestEnsureEnrolledRetriesUnreachable(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close() // nothing answers here now
	conf := filepath.Join(t.TempDir(), "enroll.conf")
	WriteBootstrap(conf, Bootstrap{Collector: addr, Token: testToken})
	var logs testutil.SyncBuffer
	log := slog.New(slog.NewTextHandler(&logs, nil))
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		done <- EnsureEnrolled(ctx, state.Dir(t.TempDir()), BootstrapOptions{Path: conf, BackoffBase: 10 * time.Millisecond, BackoffMax: 50 * time.Millisecond, Logger: log})
	}()
	deadline := time.Now().Add(60 * time.Second)
	for strings.Count(logs.String(), "collector not reachable yet") < 3 {
		if time.Now().After(deadline) {
			t.Fatalf("no three retries logged:\n%s", logs.String())
		}
		time.Sleep(20 * time.Millisecond)
	}
	cancel()
	select {
	case err := <-done:
		if !errors.Is(err, context.Canceled) {
			t.Errorf("returned %v, want context.Canceled", err)
		}
	case <-time.After(60 * time.Second):
		t.Fatal("EnsureEnrolled did not return after cancel")
	}
	if strings.Contains(logs.String(), "enrollment failed") {
		t.Errorf("unreachable collector logged as a failure:\n%s", logs.String())
	}
}
