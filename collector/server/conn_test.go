package server

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestSilentConnectionsClosed: a client that connects and never completes
// a handshake, or completes TLS without a certificate and then sends
// nothing, is closed by the gRPC server's handshake timeout (it used to be
// held for gRPC's default 120 s, and idle TLS connections for ever).
func TestSilentConnectionsClosed(t *testing.T) {
	e := newEnv(t, Config{HandshakeTimeout: 500 * time.Millisecond}, store.Options{})
	start := time.Now()
	raw, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	tc, err := net.Dial("tcp", e.addr)
	if err != nil {
		t.Fatal(err)
	}
	tl := tls.Client(tc, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
	defer tl.Close()
	if err := tl.Handshake(); err != nil {
		t.Fatalf("TLS handshake without a client certificate: %v", err)
	}
	for name, c := range map[string]net.Conn{"silent TCP": raw, "TLS, no preface": tl} {
		c.SetReadDeadline(time.Now().Add(30 * time.Second))
		buf := make([]byte, 4096)
		for {
			if _, err := c.Read(buf); err != nil {
				if ne, ok := err.(net.Error); ok && ne.Timeout() {
					t.Fatalf("%s connection still open after 30 s", name)
				}
				break
			}
		}
		t.Logf("%s closed after %s", name, time.Since(start).Round(time.Millisecond))
	}
}
