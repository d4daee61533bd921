package console

import (
	"context"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestDeviceTimeline: the device page lists the newest findings first; a
// technician gets no screen findings, a reviewer only the alerts routed to
// them (with the alert's id); an unknown device is 404.
func TestDeviceTimeline(t *testing.T) {
	e := newEnv(t)
	e.user("tech", RoleTechnician, false, "")
	e.user("dsl", RoleDSL, false, "")
	e.user("head", RoleHeadteacher, false, "")
	e.people(store.Person{Username: "teacher1", DisplayName: "Tom Teacher", Role: "staff"})
	now := time.Now()
	if err := e.st.PutDevice(store.Device{DeviceID: testDevice, Group: "pupils", Hostname: "lap-01", OS: "linux", Arch: "amd64", LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	pupilAlert := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "secretterm", now.Add(-3*time.Minute))
	staffAlert := e.alert("teacher1", "extremism", vigilv1.Severity_SEVERITY_HIGH, "staffterm", now.Add(-2*time.Minute))
	e.mu.Lock()
	e.seq++
	seq := e.seq
	e.mu.Unlock()
	av := &vigilv1.Finding{DeviceId: testDevice, Seq: seq, Group: "pupils", ObservedAt: timestamppb.New(now.Add(-time.Minute)),
		Check: "antivirus", RuleId: "antivirus-enabled", Status: "fail", Severity: vigilv1.Severity_SEVERITY_HIGH, Category: "posture",
		Message: "Microsoft Defender real-time protection is off"}
	if _, _, err := e.st.CommitFindings(context.Background(), []*vigilv1.Finding{av}); err != nil {
		t.Fatal(err)
	}

	get := func(user string) (DeviceDetailJSON, string) {
		t.Helper()
		var d DeviceDetailJSON
		c := e.login(user)
		if code := c.getJSON("/api/v1/devices/"+testDevice, &d); code != 200 {
			t.Fatalf("%s: %d", user, code)
		}
		_, raw := c.do("GET", "/api/v1/devices/"+testDevice, nil)
		return d, string(raw)
	}
	summary := func(d DeviceDetailJSON) string {
		var out []string
		for _, f := range d.Timeline {
			out = append(out, f.Check+"/"+f.Status+"/"+f.Severity+"/"+f.AlertID)
		}
		return strings.Join(out, " ")
	}

	d, raw := get("tech")
	if d.Hostname != "lap-01" || d.Arch != "amd64" || d.Compliance["antivirus"] != "fail" {
		t.Errorf("record %+v", d.DeviceJSON)
	}
	if got := summary(d); got != "antivirus/fail/high/" {
		t.Errorf("technician timeline %q", got)
	}
	for _, secret := range []string{"secretterm", "staffterm", "self_harm", "extremism", "pupil1", "teacher1"} {
		if strings.Contains(raw, secret) {
			t.Errorf("technician's device page contains %q: %s", secret, raw)
		}
	}
	if d, _ := get("dsl"); summary(d) != "antivirus/fail/high/ screen//critical/"+pupilAlert {
		t.Errorf("dsl timeline %q", summary(d))
	}
	if d, raw := get("head"); summary(d) != "antivirus/fail/high/ screen//high/"+staffAlert || strings.Contains(raw, "secretterm") {
		t.Errorf("headteacher timeline %q", summary(d))
	}
	if code, _ := e.login("dsl").do("GET", "/api/v1/devices/nosuchdevice", nil); code != 404 {
		t.Errorf("unknown device: %d", code)
	}
}
