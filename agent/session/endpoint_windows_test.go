package session

import (
	"crypto/rand"
	"encoding/hex"
	"testing"

	"golang.org/x/sys/windows"
)

// testEndpoint is a fresh named pipe for one test.
func testEndpoint(t *testing.T) string {
	b := make([]byte, 8)
	rand.Read(b)
	return `\\.\pipe\vigil-test-` + hex.EncodeToString(b)
}

// skipUnderWine: under Wine 8.0, go-winio's Accept (an overlapped
// ConnectNamedPipe completed through an I/O completion port) does not
// complete reliably: a client's dial succeeds but the server never
// accepts it (a bare Listen/Dial/Write test hung until the 300 s timeout);
// once, after ~10 s of retries, a connection was served, and then the
// client's identity (GetNamedPipeClientProcessId + its token) was read
// correctly. Tests that need a served pipe skip under Wine, saying so.
func skipUnderWine(t *testing.T) {
	t.Helper()
	if windows.NewLazySystemDLL("ntdll.dll").NewProc("wine_get_version").Find() == nil {
		t.Skip("Wine: go-winio's overlapped ConnectNamedPipe does not complete reliably (pipe accept hangs); run on real Windows")
	}
}
