package session

import (
	"context"
	"log/slog"
	"testing"

	"github.com/vigil-safeguarding/vigil/agent/screen"
)

// For the external tests (package session_test), which run a helper
// against the real screen check: it imports this package, so they cannot
// live inside it.

// RunTestHelper runs a helper on src against sock, claiming display :99
// (the tests run as root, which is admitted for any display).
func RunTestHelper(ctx context.Context, src screen.Source, sock string, log *slog.Logger) error {
	return runHelper(ctx, src, HelperOptions{Socket: sock, Display: ":99"}, log)
}

// SocketForTest returns an endpoint path (socket or pipe name) for one test.
func SocketForTest(t *testing.T) string {
	t.Helper()
	return testEndpoint(t)
}

// ProbeForTest is the session probe that admits this test process's own
// user (the real probe on Unix, where the tests run as root; under Wine,
// which reports no interactive sessions, this process's own session).
func ProbeForTest(t *testing.T) SessionProbe { return selfProbe(t) }
