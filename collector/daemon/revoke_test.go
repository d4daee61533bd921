package daemon_test

import (
	"os/user"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-safeguarding/vigil/collector/daemon"
)

// TestRevocationNeedsExplicitUnrevoke is issue 8 item 9 end to end: a
// revoked device's key, brought back with a fresh valid token, is refused;
// `devices unrevoke` lifts it, is in the access log with who and why, and
// then enrollment works.
func TestRevocationNeedsExplicitUnrevoke(t *testing.T) {
	c := startCollector(t, daemon.Config{})
	a := c.mustEnroll(t, "year-7", "host-lost")
	if _, err := c.cli(t, "devices", "revoke", "--device", a.id, "--reason", "reported stolen"); err != nil {
		t.Fatal(err)
	}
	_, err := c.enroll(t, a.key, c.token(t, "year-7"), a.hostFP)
	if status.Code(err) != codes.PermissionDenied || !strings.Contains(status.Convert(err).Message(), "revoked") {
		t.Fatalf("re-enroll of revoked key with a fresh token: %v, want PermissionDenied (revoked)", err)
	}
	if _, err := a.openStream(t, "old-cert"); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("stream with the revoked certificate: %v, want PermissionDenied", err)
	}

	// Unrevoke needs a reason.
	if _, err := c.cli(t, "devices", "unrevoke", "--device", a.id); err == nil {
		t.Fatal("unrevoke without --reason succeeded")
	}
	if _, err := c.cli(t, "devices", "unrevoke", "--device", a.id, "--reason", "found in the library, wiped"); err != nil {
		t.Fatal(err)
	}
	a2, err := c.enroll(t, a.key, c.token(t, "year-7"), a.hostFP)
	if err != nil {
		t.Fatalf("enroll after unrevoke: %v", err)
	}
	s, err := a2.openStream(t, "after")
	if err != nil {
		t.Fatal(err)
	}
	if ack, err := s.batch(1, findings(1, 3)); err != nil || ack.Stored != 3 {
		t.Fatalf("ack %v, err %v", ack, err)
	}

	me := "unknown"
	if u, err := user.Current(); err == nil {
		me = "os:" + u.Username
	}
	var revoked, lifted bool
	for _, e := range c.accessLog(t) {
		if e["device_id"] != a.id || e["who"] != me {
			continue
		}
		switch e["action"] {
		case "revoke-device":
			revoked = e["reason"] == "reported stolen" && e["time"] != ""
		case "unrevoke-device":
			lifted = e["reason"] == "found in the library, wiped" && e["time"] != ""
		}
	}
	if !revoked || !lifted {
		t.Errorf("access log lacks the revoke (%v) or unrevoke (%v) entry for %s by %s: %v", revoked, lifted, a.id, me, c.accessLog(t))
	}
	if !strings.Contains(c.logs.String(), "device revocation lifted") {
		t.Error("the collector log does not record the unrevoke")
	}
}
