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

func skipUnderWine(*testing.T) {}
