package session

import (
	"context"
	"fmt"
	"net"

	"github.com/vigil-safeguarding/vigil/internal/winpipe"
)

// DefaultSocket is the named pipe the service listens on for session
// helpers.
func DefaultSocket() string { return `\\.\pipe\vigil-agent-session` }

// PipeSDDL is the pipe's security descriptor: LocalSystem and
// Administrators have full control, interactive users (IU: logged on at
// the console or over Remote Desktop) may read and write, network logons
// (NU) are denied, so the pipe is not reachable over SMB. The protected
// DACL (P) ignores inherited entries.
const PipeSDDL = "D:P(D;;GA;;;NU)(A;;GA;;;SY)(A;;GA;;;BA)(A;;GRGW;;;IU)"

// Listen creates the named pipe. Its first instance is made with
// FILE_FLAG_FIRST_PIPE_INSTANCE, so a pipe of the same name made earlier by
// someone else (squatting) makes this fail instead of sharing the name.
func Listen(path string) (net.Listener, error) {
	l, err := winpipe.Listen(path, PipeSDDL, 64<<10)
	if err != nil {
		return nil, fmt.Errorf("listen on session pipe %s: %w", path, err)
	}
	return l, nil
}

func dial(ctx context.Context, path string) (net.Conn, error) {
	return winpipe.Dial(ctx, path)
}
