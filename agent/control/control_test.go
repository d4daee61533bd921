package control

import (
	"context"
	"errors"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

type backend struct {
	mu     sync.Mutex
	calls  []string
	failOn string
}

func (b *backend) TriggerTest(_ context.Context, n int, source, ruleID string) (uint64, uint64, string, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.calls = append(b.calls, source+"/"+ruleID)
	if ruleID == b.failOn {
		return 0, 0, "", errors.New("no enabled selftest rule applies to this device")
	}
	return 10, 10 + uint64(n) - 1, "n0nce", nil
}

func (b *backend) Status() any {
	return map[string]any{"device_id": "dev-1", "spool": map[string]int{"count": 3}}
}

// socketPath is short: a Unix socket path has a ~100-byte limit.
func socketPath(t *testing.T) string {
	t.Helper()
	dir, err := os.MkdirTemp("", "vctl")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	return filepath.Join(dir, "control.sock")
}

func start(t *testing.T, path string, b Backend) (context.CancelFunc, chan error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- Serve(ctx, path, b) }()
	deadline := time.Now().Add(30 * time.Second)
	for {
		dctx, dcancel := context.WithTimeout(context.Background(), time.Second)
		c, err := dial(dctx, path)
		dcancel()
		if err == nil {
			c.Close()
			break
		}
		if time.Now().After(deadline) {
			cancel()
			t.Fatalf("control socket not up within 30s: %v", err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	return cancel, done
}

// TestTriggerAndStatus: the CLI's calls reach the running agent's backend
// over the socket and get its answers; the socket is owner-only.
func TestTriggerAndStatus(t *testing.T) {
	path := socketPath(t)
	b := &backend{failOn: "missing"}
	cancel, done := start(t, path, b)
	defer func() { cancel(); <-done }()
	ctx := context.Background()

	var res TriggerResult
	if err := Call(ctx, path, "POST", "/v1/trigger-test", map[string]any{"count": 3, "rule": "selftest-high"}, &res); err != nil {
		t.Fatal(err)
	}
	if res != (TriggerResult{Count: 3, FirstSeq: 10, LastSeq: 12, Nonce: "n0nce"}) {
		t.Errorf("result %+v", res)
	}
	if len(b.calls) != 1 || b.calls[0] != "trigger-test/selftest-high" {
		t.Errorf("backend saw %v", b.calls)
	}
	err := Call(ctx, path, "POST", "/v1/trigger-test", map[string]any{"count": 1, "rule": "missing"}, &res)
	if err == nil || !strings.Contains(err.Error(), "agent refused: no enabled selftest rule") {
		t.Errorf("backend error: %v", err)
	}
	var st map[string]any
	if err := Call(ctx, path, "GET", "/v1/status", nil, &st); err != nil || st["device_id"] != "dev-1" {
		t.Errorf("status %v, %v", st, err)
	}
	if err := Call(ctx, path, "GET", "/v1/nothing", nil, &st); err == nil {
		t.Error("unknown route answered")
	}
	// A body that is not JSON is refused before the backend sees it.
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dial(ctx, path)
	}}}
	resp, err := hc.Post("http://vigil-agent/v1/trigger-test", "application/json", strings.NewReader("count=1"))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || len(b.calls) != 2 {
		t.Errorf("bad body: %d, backend calls %v", resp.StatusCode, b.calls)
	}
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode %v, %v", fi.Mode().Perm(), err)
		}
	}
}

// TestOneAgentPerStateDir: a second agent on the same state dir is refused
// while the first answers (it would otherwise steal the socket); after
// the first stops, the socket is gone and the CLI says the agent is not
// running.
func TestOneAgentPerStateDir(t *testing.T) {
	path := socketPath(t)
	cancel, done := start(t, path, &backend{})
	err := Serve(context.Background(), path, &backend{})
	if err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("second Serve: %v", err)
	}
	var st map[string]any
	if err := Call(context.Background(), path, "GET", "/v1/status", nil, &st); err != nil {
		t.Fatalf("first agent stopped answering after the refused second: %v", err)
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("Serve after cancel: %v", err)
	}
	deadline := time.Now().Add(30 * time.Second)
	for runtime.GOOS != "windows" { // a pipe is gone with its last handle
		if _, err := os.Stat(path); errors.Is(err, os.ErrNotExist) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("socket left behind after stop")
		}
		time.Sleep(5 * time.Millisecond)
	}
	err = Call(context.Background(), path, "GET", "/v1/status", nil, &st)
	if err == nil || !strings.Contains(err.Error(), "not running") {
		t.Errorf("call with no agent: %v", err)
	}
	// A stale socket file (agent killed) does not stop the next start (on
	// Windows the file is not the endpoint, so it is simply ignored).
	os.WriteFile(path, nil, 0o600)
	cancel2, done2 := start(t, path, &backend{})
	cancel2()
	<-done2
}
