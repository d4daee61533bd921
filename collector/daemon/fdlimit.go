package daemon

import (
	"fmt"
	"os"
	"runtime"
	"time"
)

// fdPlan divides the process's file descriptor limit. The store must
// always be able to open its next memtable or table file: with 20,000
// agents on a 20,000 limit Badger failed with "too many open files" and the
// collector crashed. So a reserve is kept for the store and everything else
// that opens files (the admin socket, logs, the console), and the agent
// listener's cap is what is left after the descriptors already open.
type fdPlan struct {
	limit   int
	reserve int // never given to connections
	http    int // cap on console connections
}

// The reserve is headroom for files the store has yet to open: what it has
// open now is counted apart (grpcConns' otherFDs, re-read as it changes).
// Badger opens a table or value-log file at a time, so 256 plus 1 % of the
// limit is ample, and it leaves a 20,000-descriptor machine room for 19,000
// agents (issue 13; it was 5 %, which capped such a machine near 17,600).
// The console is a few people's browsers: 1/128 of the limit (156 at
// 20,000), at least 32, at most 1024.
func newFDPlan(limit int) fdPlan {
	return fdPlan{
		limit:   limit,
		reserve: 256 + limit/100,
		http:    min(1024, max(32, limit/128)),
	}
}

// grpcConns is the agent listener's cap when other descriptors (store,
// sockets, the console's current connections are counted apart) are open.
func (p fdPlan) grpcConns(otherFDs int) int {
	return max(16, p.limit-p.reserve-p.http-otherFDs)
}

// streams is the stream limit: below the connection cap, so that at
// capacity an agent with a certificate is told RESOURCE_EXHAUSTED with a
// retry delay rather than having its connection reset.
// The margin is the room for connections still in their handshake: 1/128
// of the cap (150 at 20,000), a second or more of a term-start reconnect
// storm at the rate this machine completes TLS handshakes (loadgen ramps
// at 400/s with few retries).
func streams(grpcConns, maxUnauth int) int {
	return max(1, grpcConns-min(maxUnauth, max(1, grpcConns/128)))
}

// openFDs counts the process's open descriptors, or -1 where that cannot
// be read cheaply.
func openFDs() int {
	dir := "/proc/self/fd"
	if runtime.GOOS == "darwin" {
		dir = "/dev/fd"
	}
	f, err := os.Open(dir)
	if err != nil {
		return -1
	}
	defer f.Close()
	names, err := f.Readdirnames(-1)
	if err != nil {
		return -1
	}
	return len(names) - 1 // the directory itself
}

func (p fdPlan) String() string {
	return fmt.Sprintf("fd limit %d: %d reserved for the store and files, %d for the console", p.limit, p.reserve, p.http)
}

// agentLimits are the agent port's caps (netlimit) and the stream limit.
type agentLimits struct {
	conns, unauth, perSource, streams int
	lifetime                          time.Duration
	dynamic                           bool // conns follows the store's descriptors
}

// agentLimitsFor takes what cfg sets and derives the rest from the plan.
func agentLimitsFor(cfg Config, plan fdPlan) agentLimits {
	l := agentLimits{conns: cfg.MaxConns, unauth: cfg.MaxUnauthConns, perSource: cfg.MaxUnauthPerSource,
		lifetime: cfg.UnauthLifetime, dynamic: cfg.MaxConns <= 0}
	if l.dynamic {
		// +3 for the listeners and admin socket about to open.
		l.conns = plan.grpcConns(max(0, openFDs()) + 3)
	}
	if l.unauth <= 0 {
		l.unauth = min(2048, max(16, l.conns/4))
	}
	if l.perSource <= 0 {
		l.perSource = min(128, l.unauth)
	}
	if l.lifetime <= 0 {
		l.lifetime = time.Minute
	}
	l.streams = streams(l.conns, l.unauth)
	return l
}
