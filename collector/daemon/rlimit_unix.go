//go:build unix

package daemon

import (
	"fmt"

	"golang.org/x/sys/unix"
)

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit (an agent
// connection is a descriptor, and the default soft limit of 1024 would cap
// a school at a thousand devices) and returns the limit now in force.
func raiseFileLimit() (int, error) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return 0, fmt.Errorf("read file descriptor limit: %w", err)
	}
	if rl.Cur < rl.Max {
		want := rl
		want.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &want); err == nil {
			rl = want
		}
		// On failure (macOS caps at OPEN_MAX) keep what we have.
	}
	if rl.Cur > 1<<30 {
		return 1 << 30, nil
	}
	return int(rl.Cur), nil
}
