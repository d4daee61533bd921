package console

import (
	"encoding/json"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/coverage"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestCoverageAcknowledge: a silent device's alarm, raised by the real
// watcher over the real store, is listed for the technician, DSL and
// headteacher, acknowledged in the console by name (which is what stops
// its escalation), and the acknowledgement is in the access log; others
// are refused and unknown or quiet devices say so.
func TestCoverageAcknowledge(t *testing.T) {
	e := newEnv(t)
	e.user("tech", RoleTechnician, false, "")
	e.user("dsl", RoleDSL, false, "")
	e.user("head", RoleHeadteacher, false, "")
	e.user("gov", RoleGovernor, false, "")
	now := time.Now()
	if err := e.st.PutDevice(store.Device{DeviceID: "dev-silent", Group: "pupils", Hostname: "lap-07", LastSeen: now.Add(-48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.PutDevice(store.Device{DeviceID: "dev-ok", Group: "pupils", Hostname: "lap-08", LastSeen: now, Connected: true}); err != nil {
		t.Fatal(err)
	}
	w := coverage.NewWatcher(coverage.Config{Devices: e.st, Schedule: coverage.Schedule{Heartbeat: time.Minute}})
	w.Check(t.Context())
	e.srv.SetCoverage(w)

	list := func(c *client) map[string]coverage.Report {
		t.Helper()
		code, b := c.do("GET", "/api/v1/coverage", nil)
		if code != 200 {
			t.Fatalf("coverage list: %d %s", code, b)
		}
		var reps []coverage.Report
		if err := json.Unmarshal(b, &reps); err != nil {
			t.Fatal(err)
		}
		out := map[string]coverage.Report{}
		for _, r := range reps {
			out[r.DeviceID] = r
		}
		return out
	}
	for _, u := range []string{"tech", "dsl", "head"} {
		reps := list(e.login(u))
		if r := reps["dev-silent"]; !r.Alarm.Open || !r.Judgement.Alarm || r.Alarm.AckedBy != "" {
			t.Fatalf("%s: silent device: %+v", u, r)
		}
		if r := reps["dev-ok"]; r.Alarm.Open || r.Problem {
			t.Fatalf("%s: connected device: %+v", u, r)
		}
	}
	tech := e.login("tech")
	if code, b := tech.do("POST", "/api/v1/coverage/dev-ok/ack", nil); code != 409 {
		t.Errorf("ack without an alarm: %d %s, want 409", code, b)
	}
	if code, b := tech.do("POST", "/api/v1/coverage/no-such-device/ack", nil); code != 404 {
		t.Errorf("ack of an unknown device: %d %s, want 404", code, b)
	}
	gov := e.login("gov")
	for _, p := range []string{"/api/v1/coverage", "/api/v1/coverage/dev-silent"} {
		if code, b := gov.do("GET", p, nil); code != 403 {
			t.Errorf("governor %s: %d %s, want 403", p, code, b)
		}
	}
	if code, b := gov.do("POST", "/api/v1/coverage/dev-silent/ack", nil); code != 403 {
		t.Errorf("governor ack: %d %s, want 403", code, b)
	}
	if code, b := tech.do("POST", "/api/v1/coverage/dev-silent/ack", nil); code != 200 {
		t.Fatalf("technician ack: %d %s", code, b)
	}
	var one coverage.Report
	if code := e.login("head").getJSON("/api/v1/coverage/dev-silent", &one); code != 200 || one.Alarm.AckedBy != "tech" || one.Alarm.AckedAt.IsZero() {
		t.Fatalf("after ack: %d %+v", code, one)
	}
	d, _ := e.st.GetDevice("dev-silent")
	if d.Presence.Alarm.AckedBy != "tech" {
		t.Errorf("stored alarm: %+v", d.Presence.Alarm)
	}
	var logged bool
	for _, a := range e.accessLog() {
		logged = logged || a.Action == "ack-coverage" && a.Who == "tech" && a.Detail == "dev-silent"
	}
	if !logged {
		t.Errorf("no ack-coverage entry in the access log: %+v", e.accessLog())
	}
}
