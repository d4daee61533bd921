package console

import (
	"encoding/json"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/coverage"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestAuthorizationMatrix runs every role (and no session) against every
// endpoint of the real handler: allowed ones answer 2xx, anonymous 401,
// wrong roles 403, and no denial carries data.
func TestAuthorizationMatrix(t *testing.T) {
	e := newEnv(t)
	e.user("dsl", RoleDSL, false, "")
	e.user("dsl2", RoleDSL, false, "")
	e.user("head", RoleHeadteacher, false, "")
	e.user("tech", RoleTechnician, false, "")
	e.user("gov", RoleGovernor, false, "")
	e.user("chair", RoleGovernor, true, "")
	e.user("admin", RoleAdmin, false, "")
	e.people(store.Person{Username: "pupil1", DisplayName: "Pupil One", Role: "pupil", Year: "Y9"},
		store.Person{Username: "teacher1", DisplayName: "Teacher One", Role: "staff"},
		store.Person{Username: "headperson", DisplayName: "The Head", Role: "headteacher"})
	now := time.Now()
	// One concluded alert per reviewing route, so each reviewer has one of
	// its own to open, export and annotate.
	own := map[string]string{
		"dsl":   e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "secretterm", now.Add(-3*time.Minute)),
		"head":  e.alert("teacher1", "extremism", vigilv1.Severity_SEVERITY_HIGH, "secretterm", now.Add(-2*time.Minute)),
		"chair": e.alert("headperson", "gambling", vigilv1.Severity_SEVERITY_HIGH, "secretterm", now.Add(-time.Minute)),
	}
	e.conclude(own["dsl"], "dsl", "dsl2", "kept_on_file")
	e.conclude(own["head"], "head", "x", "no_concern")
	e.conclude(own["chair"], "chair", "y", "no_concern")
	a, _ := e.st.GetAlert(testDevice, 1)
	evID := a.Finding.Evidence[0].Id
	if err := e.st.PutDevice(store.Device{DeviceID: testDevice, Group: "pupils", Hostname: "lap-01", OS: "linux", LastSeen: now}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.PutExclusion(store.Exclusion{ID: "x1", AlertID: own["dsl"], RuleID: "screen-keywords", Library: "keywords-self_harm", Term: "secretterm", Status: "pending", ProposedBy: "dsl", ProposedAt: now}); err != nil {
		t.Fatal(err)
	}

	if err := e.st.PutDevice(store.Device{DeviceID: "dev-cov", Group: "pupils", Hostname: "lap-09", LastSeen: now.Add(-48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	cov := coverage.NewWatcher(coverage.Config{Devices: e.st, Schedule: coverage.Schedule{Heartbeat: time.Minute}})
	cov.Check(t.Context())
	e.srv.SetCoverage(cov)

	e.srv.deploy = &DeployConfig{Tokens: &tokens.Service{Store: e.st, CAFingerprint: identity.Fingerprint([]byte("matrix CA"))},
		DefaultCollector: "vigil.school.lan:7443"}
	mtok, err := e.srv.deploy.Tokens.CreateIn(t.Context(), "", "pupils", time.Hour, 3)
	if err != nil {
		t.Fatal(err)
	}

	releaseEnv(t, e, "1.2.0")

	if err := e.st.AddSchoolTerm(store.SchoolTerm{ID: "k1", Term: "secretterm", Category: "bullying", Severity: "high",
		Rationale: "r", Cases: "+ secretterm\n- x\n", AddedBy: "dsl", AddedAt: now}, "r"); err != nil {
		t.Fatal(err)
	}

	type endpoint struct {
		method, path string
		body         any
		allowed      []string // users allowed; "{alert}" is replaced by their own alert
	}
	readers := []string{"dsl", "head", "chair"}
	exp := now.Add(30 * 24 * time.Hour).UTC().Format(time.RFC3339)
	n, versions := 0, 0
	endpoints := []endpoint{
		{"GET", "/api/v1/me", nil, []string{"dsl", "head", "tech", "gov", "chair", "admin"}},
		{"GET", "/api/v1/alerts", nil, readers},
		{"GET", "/api/v1/alerts?status=concluded&category=self_harm&severity=critical", nil, readers},
		{"GET", "/api/v1/alerts/{alert}", nil, readers},
		{"POST", "/api/v1/alerts/{alert}/actions", map[string]string{"action": "note", "text": "matrix note"}, readers},
		{"GET", "/api/v1/alerts/{alert}/form.pdf", nil, readers},
		{"POST", "/api/v1/evidence/{alert}/" + evID, map[string]string{"reason": "matrix"}, []string{"dsl"}},
		{"GET", "/api/v1/exclusions", nil, []string{"dsl"}},
		{"POST", "/api/v1/exclusions/x1/approve", map[string]string{"reason": "school project on self-harm awareness", "expires_at": exp}, []string{"dsl"}},
		{"GET", "/api/v1/terms", nil, []string{"dsl"}},
		{"POST", "/api/v1/terms", map[string]string{"term": "wonky wes", "category": "bullying", "severity": "high",
			"rationale": "nickname used to bully", "cases": "+ wonky wes\n- wes anderson\n"}, []string{"dsl"}},
		{"POST", "/api/v1/terms/k1/remove", map[string]string{"reason": "matrix"}, []string{"dsl"}},
		{"GET", "/api/v1/terms/decisions", nil, []string{"dsl"}},
		{"GET", "/api/v1/access-log", nil, []string{"admin", "head"}},
		{"GET", "/api/v1/incidents.csv", nil, []string{"dsl", "head"}},
		{"GET", "/api/v1/devices", nil, []string{"tech", "dsl", "head"}},
		{"GET", "/api/v1/devices/" + testDevice, nil, []string{"tech", "dsl", "head"}},
		{"GET", "/api/v1/trends", nil, []string{"gov", "chair", "head", "dsl"}},
		{"GET", "/api/v1/coverage", nil, []string{"tech", "dsl", "head"}},
		{"GET", "/api/v1/coverage/dev-cov", nil, []string{"tech", "dsl", "head"}},
		{"POST", "/api/v1/coverage/dev-cov/ack", nil, []string{"tech", "dsl", "head"}},
		{"GET", "/api/v1/reports/monitoring.json", nil, []string{"dsl", "head"}},
		{"GET", "/api/v1/reports/monitoring.csv", nil, []string{"dsl", "head"}},
		{"GET", "/api/v1/reports/monitoring.pdf", nil, []string{"dsl", "head"}},
		{"GET", "/api/v1/reports/governors.json", nil, []string{"gov", "chair"}},
		{"GET", "/api/v1/reports/governors.csv", nil, []string{"gov", "chair"}},
		{"GET", "/api/v1/reports/governors.pdf", nil, []string{"gov", "chair"}},
		{"GET", "/api/v1/users", nil, []string{"admin"}},
		{"POST", "/api/v1/users", "newuser", []string{"admin"}},
		{"GET", "/api/v1/deploy", nil, []string{"tech", "admin"}},
		{"GET", "/api/v1/tokens", nil, []string{"tech", "admin"}},
		{"POST", "/api/v1/tokens/" + mtok.ID + "/revoke", map[string]string{"reason": "matrix"}, []string{"tech", "admin"}},
		{"GET", "/api/v1/licences", nil, []string{"tech", "admin", "head"}},
		{"GET", "/api/v1/licences/reconcile", nil, []string{"tech", "admin", "head"}},
		{"GET", "/api/v1/inventory", nil, []string{"tech", "admin", "head"}},
		{"POST", "/api/v1/licences/import", map[string]string{"csv": "product,seats\nMatrix Suite 2024,1\n"}, []string{"tech", "admin"}},
		{"GET", "/api/v1/releases", nil, []string{"tech", "admin"}},
		{"GET", "/api/v1/releases/status", nil, []string{"tech", "admin"}},
		{"POST", "/api/v1/releases/rollout", map[string]string{"version": "1.2.0", "group": "pupils"}, []string{"tech", "admin"}},
		{"POST", "/api/v1/releases/rollback", map[string]string{"group": "pupils"}, []string{"tech", "admin"}},
		{"POST", "/api/v1/releases/minimum", map[string]string{"version": "1.0.0"}, []string{"tech", "admin"}},
		// {n}: a version of its own for each caller (a version names one binary).
		{"POST", "/api/v1/releases?version=3.0.{n}&os=linux&arch=amd64", "agent binary", []string{"tech", "admin"}},
		// Last: it ends the session.
		{"DELETE", "/api/v1/session", nil, []string{"dsl", "head", "tech", "gov", "chair", "admin"}},
	}
	users := []string{"", "dsl", "head", "tech", "gov", "chair", "admin"}
	var table strings.Builder
	for _, u := range users {
		c := e.anon()
		name := "anonymous"
		if u != "" {
			c = e.login(u)
			name = u
		}
		for _, ep := range endpoints {
			allowed := false
			for _, x := range ep.allowed {
				allowed = allowed || x == u
			}
			alert := own["dsl"]
			if id, ok := own[u]; ok {
				alert = id
			}
			path := strings.ReplaceAll(ep.path, "{alert}", alert)
			if strings.Contains(path, "{n}") {
				versions++
				path = strings.ReplaceAll(path, "{n}", fmt.Sprint(versions))
			}
			body := ep.body
			if body == "newuser" {
				n++
				body = map[string]string{"username": fmt.Sprintf("new%d", n), "display_name": "New", "role": "technician", "password": testPassword}
			}
			code, b := c.do(ep.method, path, body)
			want := "2xx"
			ok := code/100 == 2
			switch {
			case u == "":
				want, ok = "401", code == 401
			case !allowed:
				want, ok = "403", code == 403
			}
			fmt.Fprintf(&table, "%-9s %-6s %-60.60s %d\n", name, ep.method, path, code)
			if !ok {
				t.Errorf("%s %s %s: got %d, want %s: %s", name, ep.method, path, code, want, b)
				continue
			}
			if code/100 != 2 {
				var m map[string]any
				if json.Unmarshal(b, &m) != nil || m["error"] == nil || len(m) != 1 {
					t.Errorf("%s %s %s: denial body must be {\"error\":...} only, got %s", name, ep.method, path, b)
				}
				if strings.Contains(string(b), "secretterm") || strings.Contains(string(b), "Pupil One") {
					t.Errorf("%s %s %s: denial leaks data: %s", name, ep.method, path, b)
				}
			}
		}
		// The session is gone after DELETE.
		if u != "" {
			if code, _ := c.do("GET", "/api/v1/me", nil); code != 401 {
				t.Errorf("%s: /me after sign-out: %d, want 401", name, code)
			}
		}
	}
	t.Logf("matrix:\n%s", table.String())
}

// TestTechnicianNeverSeesSafeguardingContent: the device list carries no
// alert content.
func TestTechnicianNeverSeesSafeguardingContent(t *testing.T) {
	e := newEnv(t)
	e.user("tech", RoleTechnician, false, "")
	e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "secretterm", time.Now())
	if err := e.st.PutDevice(store.Device{DeviceID: testDevice, Group: "pupils", Hostname: "lap-01", OS: "linux", LastSeen: time.Now().Add(-48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}
	c := e.login("tech")
	code, b := c.do("GET", "/api/v1/devices", nil)
	if code != 200 || strings.Contains(string(b), "secretterm") || strings.Contains(string(b), "pupil1") {
		t.Fatalf("devices: %d %s", code, b)
	}
	var devs []DeviceJSON
	json.Unmarshal(b, &devs)
	if len(devs) != 1 || !devs[0].Silent || devs[0].Compliance["antivirus"] != "unknown" {
		t.Errorf("devices: %+v", devs)
	}
	for _, p := range []string{"/api/v1/alerts", "/api/v1/alerts/" + AlertID(testDevice, 1), "/api/v1/incidents.csv", "/api/v1/access-log"} {
		if code, _ := c.do("GET", p, nil); code != 403 {
			t.Errorf("technician %s: %d, want 403", p, code)
		}
	}
}
