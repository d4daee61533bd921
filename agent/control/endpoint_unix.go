//go:build !windows

package control

import (
	"context"
	"net"
	"os"
)

// Endpoint is where the control API of path listens: the socket itself.
func Endpoint(path string) string { return path }

// listen replaces a stale socket (an agent killed without cleaning up; a
// live one was refused by Serve's dial first) and makes it owner-only.
func listen(path string) (net.Listener, func(), error) {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return nil, nil, err
	}
	if err := os.Chmod(path, 0o600); err != nil {
		l.Close()
		return nil, nil, err
	}
	return l, func() { os.Remove(path) }, nil
}

func dial(ctx context.Context, path string) (net.Conn, error) {
	var d net.Dialer
	return d.DialContext(ctx, "unix", path)
}
