package daemon

import (
	"fmt"
	"os"
	"runtime"
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
