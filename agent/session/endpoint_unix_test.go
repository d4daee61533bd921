//go:build !windows

package session

import (
	"path/filepath"
	"testing"
)

// testEndpoint is a fresh session endpoint for one test.
func testEndpoint(t *testing.T) string {
	return filepath.Join(t.TempDir(), "run", "s.sock")
}

// selfProbe is the real probe: the tests run as root, admitted for any
// display without it.
func selfProbe(*testing.T) SessionProbe { return NewProbe() }
