//go:build !linux && !darwin

package session

import (
	"errors"
	"net"
)

// Windows AF_UNIX sockets carry no peer credentials; there the helper's
// requests are attributed to an unknown user (UID -1). Named pipes with
// GetNamedPipeClientProcessId are the planned replacement.
func peerCredentials(*net.UnixConn) (int, int, error) {
	return 0, 0, errors.New("peer credentials not available on this OS")
}
