package daemon

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// syncBuffer is a log sink safe for the loops' goroutines.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func waitUntil(t *testing.T, what string, ok func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok() {
		if time.Now().After(deadline) {
			t.Fatalf("%s: not within 30s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestSupervisorFatalEndsRun: a listener that stops serving ends the
// collector with its name in the error (wait returns it).
func TestSupervisorFatalEndsRun(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var logs syncBuffer
	s := newSupervisor(ctx, slog.New(slog.NewTextHandler(&logs, nil)))
	s.fatal("gRPC server", func(context.Context) error { return errors.New("accept: too many open files") })
	s.fatal("admin socket", func(ctx context.Context) error { <-ctx.Done(); return nil })
	err := s.wait()
	if err == nil || !strings.Contains(err.Error(), "gRPC server") || !strings.Contains(err.Error(), "too many open files") {
		t.Fatalf("wait: %v", err)
	}
	cancel()
	s.stop()
	if !strings.Contains(logs.String(), "collector part failed") {
		t.Errorf("not logged: %s", logs.String())
	}
}

// TestSupervisorFatalEarlyNilReturn: a server that returns nil before
// shutdown has stopped serving all the same.
func TestSupervisorFatalEarlyNilReturn(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s := newSupervisor(ctx, slog.New(slog.DiscardHandler))
	s.fatal("console HTTP server", func(context.Context) error { return nil })
	if err := s.wait(); err == nil || !strings.Contains(err.Error(), "stopped unexpectedly") {
		t.Fatalf("wait: %v", err)
	}
	cancel()
	s.stop()
}

// TestSupervisorRetriedLoop: the rules folder watch failing (as dist.Watch
// does when inotify cannot be set up) is logged and restarted, not
// dropped, and does not stop the collector.
func TestSupervisorRetriedLoop(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	s := newSupervisor(ctx, slog.New(slog.NewTextHandler(&logs, nil)))
	var runs atomic.Int32
	s.retried("rules folder watch", time.Millisecond, func(ctx context.Context) error {
		if runs.Add(1) < 3 {
			return errors.New("inotify: no space left on device")
		}
		<-ctx.Done()
		return nil
	})
	waitUntil(t, "third start of the watch", func() bool { return runs.Load() >= 3 })
	if n := strings.Count(logs.String(), "inotify: no space left on device"); n != 2 {
		t.Errorf("%d failures logged, want 2:\n%s", n, logs.String())
	}
	cancel()
	if err := s.wait(); err != nil {
		t.Errorf("a retried loop ended the collector: %v", err)
	}
	s.stop()
	if runs.Load() != 3 {
		t.Errorf("restarted after shutdown: %d runs", runs.Load())
	}
}

// TestSupervisorLoopError: a plain loop's error is logged.
func TestSupervisorLoopError(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	var logs syncBuffer
	s := newSupervisor(ctx, slog.New(slog.NewTextHandler(&logs, nil)))
	done := make(chan struct{})
	s.loop("device state flush", func(context.Context) error { defer close(done); return errors.New("boom") })
	<-done
	waitUntil(t, "log line", func() bool { return strings.Contains(logs.String(), "boom") })
	cancel()
	s.stop()
}
