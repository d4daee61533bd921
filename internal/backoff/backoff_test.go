package backoff

import (
	"errors"
	"testing"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func TestFullJitterBounds(t *testing.T) {
	b := New(100*time.Millisecond, 2*time.Second)
	for i := 0; i < 50; i++ {
		ceil := 100 * time.Millisecond << min(i, 30)
		if ceil > 2*time.Second {
			ceil = 2 * time.Second
		}
		d := b.Next(0)
		if d <= 0 || d > ceil+time.Millisecond {
			t.Fatalf("attempt %d: wait %v outside (0, %v]", i, d, ceil)
		}
	}
	b.Reset()
	if b.Attempt() != 0 {
		t.Fatal("Reset did not reset")
	}
	// A server floor is honoured and jittered upward, never below.
	for i := 0; i < 100; i++ {
		if d := b.Next(time.Second); d < time.Second || d > 2*time.Second {
			t.Fatalf("floor 1s gave %v", d)
		}
	}
}

func TestJitterSpreads(t *testing.T) {
	// 1000 agents at the same attempt must not all pick the same wait.
	seen := map[time.Duration]bool{}
	for i := 0; i < 1000; i++ {
		b := New(time.Second, time.Minute)
		b.attempt = 5
		seen[b.Next(0)/time.Millisecond] = true
	}
	if len(seen) < 500 {
		t.Fatalf("only %d distinct waits among 1000 agents", len(seen))
	}
}

func TestRetryDelayRoundTrip(t *testing.T) {
	st, _ := status.New(codes.ResourceExhausted, "busy").WithDetails(RetryInfo(3 * time.Second))
	if d, ok := RetryDelay(st.Err()); !ok || d != 3*time.Second {
		t.Fatalf("RetryDelay = %v, %v", d, ok)
	}
	if _, ok := RetryDelay(errors.New("plain")); ok {
		t.Fatal("plain error has no retry delay")
	}
}
