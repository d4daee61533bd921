//go:build !windows

package session

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"syscall"
	"time"
)

// DefaultSocket is where the service listens for session helpers: a
// runtime directory of its own that every user can traverse (0755, owned
// by root), outside the owner-only state dir.
func DefaultSocket() string {
	if runtime.GOOS == "darwin" {
		return "/var/run/vigil-agent/session.sock"
	}
	return "/run/vigil-agent/session.sock"
}

// Listen creates the session socket at path: its directory is created if
// needed and made 0755 (every user's helper must reach the socket), but it
// must belong to this process's user and be writable by nobody else,
// because the socket is made connectable by everyone (0666) with a chmod
// that a directory others could write would let them redirect. A socket
// another running agent still answers on is not taken over.
func Listen(path string) (net.Listener, error) {
	dir := filepath.Dir(path)
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("create session socket directory: %w", err)
	}
	fi, err := os.Lstat(dir)
	if err != nil {
		return nil, fmt.Errorf("session socket directory: %w", err)
	}
	st, _ := fi.Sys().(*syscall.Stat_t)
	switch {
	case !fi.IsDir():
		return nil, fmt.Errorf("session socket directory %s is not a directory", dir)
	case st != nil && int(st.Uid) != os.Geteuid():
		return nil, fmt.Errorf("session socket directory %s belongs to uid %d, not to the agent (uid %d)", dir, st.Uid, os.Geteuid())
	}
	if err := os.Chmod(dir, 0o755); err != nil {
		return nil, fmt.Errorf("make session socket directory traversable: %w", err)
	}
	if c, err := net.DialTimeout("unix", path, time.Second); err == nil {
		c.Close()
		return nil, fmt.Errorf("another agent is serving the session socket %s", path)
	}
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("remove stale session socket: %w", err)
	}
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, fmt.Errorf("listen on session socket: %w", err)
	}
	// Everyone may connect; who they are is the peer credentials' business.
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return nil, fmt.Errorf("open session socket to users: %w", err)
	}
	return l, nil
}

func dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}
