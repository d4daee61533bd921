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

func newFDPlan(limit int) fdPlan {
	return fdPlan{
		limit:   limit,
		reserve: 256 + limit/20,
		http:    min(1024, max(32, limit/16)),
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
func streams(grpcConns, maxUnauth int) int {
	return max(1, grpcConns-min(maxUnauth, grpcConns/10))
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
