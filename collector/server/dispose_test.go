package server

import (
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestDisposedDeviceRefused: a device disposed of (seed 000 §4.13) is
// refused on the real gRPC path, streaming with its certificate and
// enrolling again with a fresh token, and stays known to the store.
func TestDisposedDeviceRefused(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	conn := e.enrollConn(t)
	_, tok := e.mintToken(t, tokenSpec{group: "ict-suite"})
	key, req := enrollReq(t, tok, "fp-old-pc")
	d, _, err := e.callEnroll(conn, key, req)
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := openStream(t, d.conn(t), d.hello("i1")); err != nil {
		t.Fatalf("stream before disposal: %v", err)
	}
	if err := e.st.Dispose(store.Disposal{DeviceID: d.id, Date: time.Now(), AuthorisedBy: "head", PersonalData: "none", Method: "WEEE recycler", RecordedAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	_, _, err = openStream(t, d.conn(t), d.hello("i2"))
	wantCode(t, "stream of disposed device", err, codes.PermissionDenied, "revoked")
	_, fresh := e.mintToken(t, tokenSpec{group: "ict-suite", uses: 1})
	_, _, err = e.callEnroll(conn, key, enrollReqFor(t, key, fresh, "fp-old-pc"))
	wantCode(t, "re-enroll of disposed key", err, codes.PermissionDenied, "revoked")
	if dev, ok := e.st.GetDevice(d.id); !ok || !dev.Revoked {
		t.Fatalf("disposed device %+v (known %v): want kept and revoked", dev, ok)
	}
	if _, err := e.st.Unrevoke(d.id); err == nil {
		t.Fatal("a disposed device's revocation was lifted")
	}
}
