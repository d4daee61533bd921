package server

import (
	"testing"

	"google.golang.org/grpc/codes"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestStreamNeedsThisCollectorsCertificate: certificates from another CA and
// connections without a certificate cannot open Stream, and neither
// disturbs a good client.
func TestStreamNeedsThisCollectorsCertificate(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	other := newEnv(t, Config{}, store.Options{})
	good := e.enrollDevice(t)

	goodStream := good.mustStream(t, "good-1")
	if _, err := goodStream.sendBatch(1, seqRange(1, 2)); err != nil {
		t.Fatal(err)
	}

	t.Run("certificate from another CA", func(t *testing.T) {
		foreign := other.enrollDevice(t)
		// The foreign agent pins the first collector's CA, so its side of
		// the handshake is happy; the collector must refuse its certificate.
		_, _, err := openStream(t, foreign.connTo(t, e), foreign.hello("f-1"))
		if c := codeOf(err); c != codes.Unavailable && c != codes.Unauthenticated {
			t.Errorf("stream with a foreign certificate: %v, want a handshake failure or Unauthenticated", err)
		}
	})

	t.Run("enrolled key, certificate from another CA", func(t *testing.T) {
		// Same key (so same device ID, which IS enrolled here) certified by
		// another collector: the CN alone must not be trusted.
		_, tok := other.mintToken(t, tokenSpec{})
		impostor, _, err := other.callEnroll(other.enrollConn(t), good.key, enrollReqFor(t, good.key, tok, good.hostFP))
		if err != nil {
			t.Fatal(err)
		}
		if impostor.id != good.id {
			t.Fatalf("same key gave ids %s and %s", impostor.id, good.id)
		}
		_, _, err = openStream(t, impostor.connTo(t, e), impostor.hello("good-1"))
		if c := codeOf(err); c != codes.Unavailable && c != codes.Unauthenticated {
			t.Errorf("stream with an enrolled device ID certified by another CA: %v, want a handshake failure or Unauthenticated", err)
		}
	})

	t.Run("server certificate as client certificate", func(t *testing.T) {
		// Signed by the right CA but for server auth only.
		cert := e.ca.ServerCert
		conn := dial(t, e.addr, pinnedTLS(e.ca.Fingerprint(), &cert))
		_, _, err := openStream(t, conn, good.hello("srv"))
		if c := codeOf(err); c != codes.Unavailable && c != codes.Unauthenticated {
			t.Errorf("stream with the server certificate: %v, want a handshake failure or Unauthenticated", err)
		}
	})

	t.Run("no client certificate", func(t *testing.T) {
		conn := dial(t, e.addr, pinnedTLS(e.ca.Fingerprint(), nil))
		_, _, err := openStream(t, conn, good.hello("anon"))
		wantCode(t, "stream without a client certificate", err, codes.Unauthenticated, "client certificate")
		// The same connection still serves enrollment: the handshake must not
		// require a certificate.
		_, tok := e.mintToken(t, tokenSpec{})
		key, req := enrollReq(t, tok, nextHostFP())
		if _, _, err := e.callEnroll(conn, key, req); err != nil {
			t.Errorf("enroll on the certificate-less connection: %v", err)
		}
	})

	t.Run("revoked device", func(t *testing.T) {
		d := e.enrollDevice(t)
		if err := e.st.UpdateDevice(d.id, func(sd *store.Device) { sd.Revoked = true }); err != nil {
			t.Fatal(err)
		}
		_, _, err := openStream(t, d.conn(t), d.hello("rev"))
		wantCode(t, "stream of a revoked device", err, codes.PermissionDenied, "re-enroll")
	})

	// The good client's stream, opened before all that, still works, and so
	// does a new connection.
	ack, err := goodStream.sendBatch(2, seqRange(3, 4))
	if err != nil || ack.Stored != 2 {
		t.Fatalf("good stream after the refusals: ack %v, err %v", ack, err)
	}
	goodStream.cancel()
	fresh := e.enrollDevice(t).mustStream(t, "fresh")
	if ack, err := fresh.sendBatch(1, seqRange(1, 1)); err != nil || ack.Stored != 1 {
		t.Fatalf("new client after the refusals: ack %v, err %v", ack, err)
	}
	if n := len(storedFindings(t, e.st, good.id)); n != 4 {
		t.Errorf("good device has %d findings stored, want 4", n)
	}
}
