package console

import (
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/dfe"
	"github.com/vigil-safeguarding/vigil/collector/fleetcheck"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// withDFE replaces the env's console with one that serves the DfE evidence
// over the same store and clock.
func withDFE(e *env) {
	checks := &fleetcheck.Service{Store: e.st}
	srv, err := New(Config{Store: e.st, EvidenceKey: e.key, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: e.clock,
		Connected: func(string) bool { return false }, DFE: &dfe.Service{Store: e.st, Checks: checks, Now: e.clock}, FleetChecks: checks})
	if err != nil {
		e.t.Fatal(err)
	}
	e.srv = srv
	old := e.http
	e.http = httptest.NewServer(srv.Handler())
	old.Close()
	e.t.Cleanup(e.http.Close)
}

// The headteacher and the DSL keep the roles register and the review
// records and download the pack; a governor sees the review reminder and
// nothing else; a technician may run fleet checks but not read the pack.
// Each change is in the access log.
func TestDFEEvidenceRoutes(t *testing.T) {
	e := newEnv(t)
	withDFE(e)
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	e.setNow(now)
	e.user("head", RoleHeadteacher, false, "")
	e.user("dsl", RoleDSL, false, "")
	e.user("gov", RoleGovernor, false, "")
	e.user("tech", RoleTechnician, false, "")
	if err := e.st.PutDevice(store.Device{DeviceID: testDevice, Group: "pupils", Hostname: "lap-01", OS: "linux", LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	head, dsl, gov, tech := e.login("head"), e.login("dsl"), e.login("gov"), e.login("tech")

	var st struct{ State, Reminder string }
	if code := gov.getJSON("/api/v1/dfe/status", &st); code != 200 || st.State != "never" || !strings.Contains(st.Reminder, "No review") {
		t.Fatalf("governor's status: %d %+v", code, st)
	}
	for _, c := range []struct {
		who          *client
		method, path string
		want         int
	}{
		{gov, "GET", "/api/v1/dfe/roles", 403},
		{gov, "GET", "/api/v1/reports/dfe.pdf", 403},
		{tech, "GET", "/api/v1/reports/dfe.csv", 403},
		{tech, "GET", "/api/v1/dfe/reviews", 403},
		{gov, "POST", "/api/v1/dfe/checks", 403},
		{tech, "GET", "/api/v1/dfe/checks/fc-none", 404},
	} {
		if code, body := c.who.do(c.method, c.path, map[string]string{}); code != c.want {
			t.Errorf("%s %s: %d %s, want %d", c.method, c.path, code, body, c.want)
		}
	}

	if code, body := head.do("PUT", "/api/v1/dfe/roles", RolesRequest{Roles: []store.RoleHolder{
		{Role: store.DFESeniorLeader, Name: "Priya Shah"}, {Role: store.DFEDSL, Name: "Grace Obi"},
		{Role: store.DFEGovernor, Name: "Tom Evans"}, {Role: store.DFEITProvider, Name: "Northgate IT Ltd"}}}); code != 200 {
		t.Fatalf("set roles: %d %s", code, body)
	}
	if code, body := head.do("PUT", "/api/v1/dfe/roles", RolesRequest{Roles: []store.RoleHolder{{Role: "janitor", Name: "x"}}}); code != 400 {
		t.Errorf("unknown role: %d %s", code, body)
	}
	if code, body := dsl.do("POST", "/api/v1/dfe/reviews", ReviewRequest{Date: "2026-12-01", Attendees: []string{"Priya Shah"}}); code != 400 || !strings.Contains(string(body), "findings") {
		t.Errorf("review without findings: %d %s", code, body)
	}
	if code, body := dsl.do("POST", "/api/v1/dfe/reviews", ReviewRequest{Date: "2026-12-01", Attendees: []string{"Priya Shah", "Grace Obi"},
		Findings: "Provision meets the standards", Actions: []string{"Check the new sixth-form laptops"}}); code != 201 {
		t.Fatalf("add review: %d %s", code, body)
	}
	if code := gov.getJSON("/api/v1/dfe/status", &st); code != 200 || st.State != "ok" || st.Reminder != "" {
		t.Errorf("status after the review: %d %+v", code, st)
	}

	resp := dsl.req("GET", "/api/v1/reports/dfe.pdf", nil, nil)
	pdf, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("dfe.pdf: %d %v", resp.StatusCode, resp.Header)
	}
	text := strings.Join(strings.Fields(pdfToText(t, pdf)), " ")
	for _, want := range []string{"Priya Shah", "Northgate IT Ltd", "Next review due 2027-12-01", "Provision meets the standards",
		"No fleet-wide check has been run", "lap-01 (" + testDevice + "): Not in a fleet check yet"} {
		if !strings.Contains(text, want) {
			t.Errorf("the pack lacks %q:\n%s", want, text)
		}
	}
	var actions []string
	for _, a := range e.accessLog() {
		actions = append(actions, a.Action+" by "+a.Who)
	}
	got := strings.Join(actions, ", ")
	for _, want := range []string{"set-dfe-roles by head", "record-dfe-review by dsl"} {
		if !strings.Contains(got, want) {
			t.Errorf("access log %q lacks %q", got, want)
		}
	}
}
