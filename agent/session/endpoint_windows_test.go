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

// selfProbe lists this process's own session as its user's graphical
// session: the real WTS probe needs LocalSystem (WTSQueryUserToken), which
// a test run by the logged-on user does not have; TestWTSProbe covers it.
func selfProbe(t *testing.T) SessionProbe {
	sid, name, sess := selfIdentity(t)
	return staticProbe{{UID: -1, SID: sid, Username: name, Display: sess}}
}
