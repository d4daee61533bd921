package session

import (
	"crypto/rand"
	"encoding/hex"
	"testing"
)

// testEndpoint is a fresh named pipe for one test.
func testEndpoint(t *testing.T) string {
	b := make([]byte, 8)
	rand.Read(b)
	return `\\.\pipe\vigil-test-` + hex.EncodeToString(b)
}
