package control

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"net"
	"path/filepath"
	"strings"

	"github.com/vigil-safeguarding/vigil/internal/winpipe"
)

// The control API is a named pipe on Windows, not the AF_UNIX socket file:
// Go's Chmod cannot make a socket file owner-only there (it only toggles
// the read-only attribute), so the file would inherit the state dir's ACL,
// while a pipe carries its own DACL; and Wine (8.0), where the Windows
// agent is tested end to end, has no AF_UNIX at all.

// pipeSDDL: LocalSystem (the service) and Administrators (an elevated
// `vigil-agent status`) only, network logons denied; the protected DACL
// (P) ignores inherited entries. The counterpart of the Unix socket's 0600.
const pipeSDDL = "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)"

// Endpoint is the pipe of the control socket path: one per state dir, as
// the socket file is, named after the path (case-insensitively, as Windows
// paths are).
func Endpoint(path string) string {
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	sum := sha256.Sum256([]byte(strings.ToLower(filepath.Clean(path))))
	return `\\.\pipe\vigil-agent-control-` + hex.EncodeToString(sum[:12])
}

// listen creates the pipe with FILE_FLAG_FIRST_PIPE_INSTANCE (winpipe), so
// a pipe of the same name made earlier by someone else makes it fail
// rather than share the name. Nothing is left to remove when it closes.
func listen(path string) (net.Listener, func(), error) {
	l, err := winpipe.Listen(Endpoint(path), pipeSDDL, 64<<10)
	if err != nil {
		return nil, nil, err
	}
	return l, func() {}, nil
}

func dial(ctx context.Context, path string) (net.Conn, error) {
	return winpipe.Dial(ctx, Endpoint(path))
}
