package daemon

import (
	"syscall"
	"testing"
)

// TestRaiseFileLimit: the soft limit is lifted to the hard one at start.
func TestRaiseFileLimit(t *testing.T) {
	var orig syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &orig); err != nil {
		t.Fatal(err)
	}
	if orig.Max < 512 {
		t.Skipf("hard descriptor limit %d too low to test", orig.Max)
	}
	t.Cleanup(func() { syscall.Setrlimit(syscall.RLIMIT_NOFILE, &orig) })
	low := syscall.Rlimit{Cur: 256, Max: orig.Max}
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &low); err != nil {
		t.Fatal(err)
	}
	got, err := raiseFileLimit()
	if err != nil {
		t.Fatal(err)
	}
	var now syscall.Rlimit
	syscall.Getrlimit(syscall.RLIMIT_NOFILE, &now)
	if now.Cur != orig.Max || uint64(got) != min(orig.Max, 1<<30) {
		t.Errorf("after raise: soft %d (reported %d), want the hard limit %d", now.Cur, got, orig.Max)
	}
}

// TestFDPlanLeavesTheStoreRoom: at 20,000 descriptors (the machine where
// 20,000 agents crashed Badger) connections never take the store's reserve,
// and streams stop before connections do.
func TestFDPlanLeavesTheStoreRoom(t *testing.T) {
	for _, limit := range []int{1024, 4096, 20000, 1 << 20} {
		p := newFDPlan(limit)
		other := 100 // Badger tables, memtables, logs
		conns := p.grpcConns(other)
		if free := limit - conns - p.http - other; free < 256 || free < limit/100 {
			t.Errorf("limit %d: only %d descriptors left for the store at full load", limit, free)
		}
		if s := streams(conns, min(2048, conns/4)); s >= conns || s < conns/2 {
			t.Errorf("limit %d: %d streams for %d connections", limit, s, conns)
		}
		t.Logf("limit %d: %d agent connections, %d streams, %d console, %d reserved", limit, conns, streams(conns, min(2048, conns/4)), p.http, p.reserve)
	}
	// A 20,000-descriptor machine holds 19,000 agents (issue 13).
	if p := newFDPlan(20000); streams(p.grpcConns(100), 2048) < 19000 {
		t.Errorf("limit 20000: %d streams, want at least 19,000", streams(p.grpcConns(100), 2048))
	}
	// The cap shrinks as the store opens more files.
	p := newFDPlan(20000)
	if p.grpcConns(5000) >= p.grpcConns(100) {
		t.Error("the agent cap does not follow the store's descriptors")
	}
}
