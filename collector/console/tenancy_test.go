package console

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/coverage"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// tenantSchool is one school of the isolation matrix with what it owns
// and the strings that would give its data away.
type tenantSchool struct {
	id      string // store school ID ("default" for the default school)
	device  string
	alerts  map[string]string // reviewer account -> an alert routed to them
	evID    string            // evidence of alerts["dsl"]
	token   string            // an enrollment token of the school
	audit   string            // a device audit of the school
	term    string            // a keyword term of the school
	dropped string            // another, for the remove route
	excl    string            // an exclusion proposed from one of its alerts
	markers []string          // in no response to another school's account
}

// TestTenantIsolationMatrix: every console API route the Handler
// registers (enumerated from its mux, so a new route without a school
// decision fails here) × every role × own school / other school, and a
// DSL granted the other school (a trust safeguarding lead). Two
// schools: the default one (everything existing, records naming no school)
// and Oak Primary. A school account asking for another school's record
// gets exactly what it gets for one that does not exist (same status, same
// body); every answer to a school account is free of the other school's
// data; installation-wide routes are closed to school accounts once there
// are two schools; admin accounts stay installation-wide.
func TestTenantIsolationMatrix(t *testing.T) {
	e := newEnv(t)
	if _, err := e.st.AddSchool(store.School{ID: "oak-primary", Name: "Oak Primary"}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	const oakDevice = "oakoakoakoakoakoakoakoakoa"
	e.srv.deploy = &DeployConfig{Tokens: &tokens.Service{Store: e.st, CAFingerprint: identity.Fingerprint([]byte("matrix CA"))},
		DefaultCollector: "vigil.trust.lan:7443", AgentDir: t.TempDir()}
	e.srv.audits = &audit.Service{Store: e.st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	e.srv.SetCoverage(coverage.NewWatcher(coverage.Config{Devices: e.st, Schedule: coverage.Schedule{Heartbeat: time.Minute}}))
	e.people(
		store.Person{Username: "ashpupil", DisplayName: "Ash Pupilname", Role: "pupil", Year: "Y9"},
		store.Person{Username: "ashteacher", DisplayName: "Ash Teachername", Role: "staff"},
		store.Person{Username: "ashhead", DisplayName: "Ash Headname", Role: "headteacher"},
		store.Person{Username: "oakpupil", DisplayName: "Oak Pupilname", Role: "pupil", Year: "Y9"},
		store.Person{Username: "oakteacher", DisplayName: "Oak Teachername", Role: "staff"},
		store.Person{Username: "oakhead", DisplayName: "Oak Headname", Role: "headteacher"})

	schools := map[string]*tenantSchool{}
	for _, sc := range []struct{ prefix, id, device string }{{"ash", store.DefaultSchool, testDevice}, {"oak", "oak-primary", oakDevice}} {
		school := ""
		if sc.id != store.DefaultSchool {
			school = sc.id
		}
		ts := &tenantSchool{id: sc.id, device: sc.device, alerts: map[string]string{},
			markers: []string{sc.prefix + "secret", sc.prefix + "pupil", sc.prefix + "teacher", sc.prefix + "head", sc.prefix + "-lap", sc.device}}
		if err := e.st.PutDevice(store.Device{DeviceID: sc.device, School: school, Group: "pupils", Hostname: sc.prefix + "-lap-01", OS: "linux", LastSeen: now}); err != nil {
			t.Fatal(err)
		}
		for _, role := range []struct {
			name, role string
			chair      bool
		}{{"dsl", RoleDSL, false}, {"dsl2", RoleDSL, false}, {"head", RoleHeadteacher, false}, {"tech", RoleTechnician, false}, {"gov", RoleGovernor, false}, {"chair", RoleGovernor, true}} {
			e.userIn(school, sc.prefix+role.name, role.role, role.chair, "")
		}
		ts.alerts["dsl"] = e.alertOn(sc.device, sc.prefix+"pupil", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, sc.prefix+"secret", now.Add(-3*time.Minute))
		ts.alerts["head"] = e.alertOn(sc.device, sc.prefix+"teacher", "extremism", vigilv1.Severity_SEVERITY_HIGH, sc.prefix+"secret", now.Add(-2*time.Minute))
		ts.alerts["chair"] = e.alertOn(sc.device, sc.prefix+"head", "gambling", vigilv1.Severity_SEVERITY_HIGH, sc.prefix+"secret", now.Add(-time.Minute))
		e.conclude(ts.alerts["dsl"], sc.prefix+"dsl", sc.prefix+"dsl2", "kept_on_file")
		e.conclude(ts.alerts["head"], sc.prefix+"head", "x", "no_concern")
		e.conclude(ts.alerts["chair"], sc.prefix+"chair", "y", "no_concern")
		dev, seq, _ := parseAlertID(ts.alerts["dsl"])
		a, err := e.st.GetAlert(dev, seq)
		if err != nil {
			t.Fatal(err)
		}
		ts.evID = a.Finding.Evidence[0].Id
		tok, err := e.srv.deploy.Tokens.CreateIn(t.Context(), sc.id, "pupils", time.Hour, 100)
		if err != nil {
			t.Fatal(err)
		}
		ts.token = tok.ID
		h, err := e.srv.audits.Request(t.Context(), sc.id, audit.Scope{Kind: "all"}, audit.Reader{Name: sc.prefix + "head"}, sc.prefix+"secret audit", 0)
		if err != nil {
			t.Fatal(err)
		}
		ts.audit = h.ID
		for _, id := range []*string{&ts.term, &ts.dropped} {
			*id = newExclusionID()
			if err := e.st.AddSchoolTerm(store.SchoolTerm{ID: *id, Term: sc.prefix + "secret nick " + *id, Category: "bullying", Severity: "high",
				Rationale: sc.prefix + "secret rationale", School: school, AddedBy: sc.prefix + "dsl", AddedAt: now}, sc.prefix+"secret reason"); err != nil {
				t.Fatal(err)
			}
		}
		ts.excl = newExclusionID()
		if err := e.st.PutExclusion(store.Exclusion{ID: ts.excl, AlertID: ts.alerts["dsl"], RuleID: "screen-keywords", Library: "keywords-self-harm",
			Term: sc.prefix + "secret phrase", Status: "pending", ProposedBy: sc.prefix + "dsl", ProposedAt: now,
			ProposalReason: sc.prefix + "secret proposal", School: school}); err != nil {
			t.Fatal(err)
		}
		schools[sc.prefix] = ts
	}
	e.user("admin", RoleAdmin, false, "")
	const noDevice = "nonenonenonenonenonenonen0"
	// A trust-wide term: in force in both schools, seen by both.
	if err := e.st.AddSchoolTerm(store.SchoolTerm{ID: "trustterm", Term: "trust wide nick", Category: "bullying", Severity: "high",
		Rationale: "heard across the trust", TrustWide: true, AddedBy: "x", AddedAt: now}, "trust"); err != nil {
		t.Fatal(err)
	}

	// How each school-scoped route is asked for one record: own, another
	// school's, and one that does not exist. {a} is an alert of the
	// caller's own routing; list routes have no record to name, and are
	// checked for the other school's data only.
	type recordRoute struct {
		path     func(u string, ts *tenantSchool) string
		body     func(ts *tenantSchool) any
		none     string // the path of a record that does not exist
		noneBody any
	}
	alertOf := func(u string, ts *tenantSchool) string {
		if id, ok := ts.alerts[u]; ok {
			return id
		}
		return ts.alerts["dsl"]
	}
	noAlert := AlertID(noDevice, 1)
	pkg := func(ts *tenantSchool) any {
		return map[string]string{"school": ts.id, "group": "pupils", "format": "deb", "arch": "amd64"}
	}
	auditOf := func(ts *tenantSchool) any {
		return map[string]any{"school": ts.id, "all": true, "reason": "matrix"}
	}
	const noAudit = "au-20261206T000000.000-000000"
	added := 0
	newTerm := func(ts *tenantSchool) any {
		// Letters only, none that normalises to another (1/l/I, 0/o).
		const letters = "bcdfghjkmnpqrstvwxz"
		added++
		n := "zqx" + ts.id[:3] + string(letters[added%len(letters)]) + string(letters[added/len(letters)%len(letters)])
		return map[string]any{"term": n, "category": "bullying", "severity": "high", "rationale": "matrix",
			"cases": "+ look at " + n + " lol\n- nothing to see\n", "school": ts.id}
	}
	reason := func(*tenantSchool) any { return map[string]string{"reason": "matrix"} }
	approve := map[string]string{"reason": "matrix", "expires_at": now.Add(time.Hour).UTC().Format(time.RFC3339)}
	records := map[string]recordRoute{
		"POST /api/v1/terms": {path: func(string, *tenantSchool) string { return "/api/v1/terms" }, body: newTerm,
			none: "/api/v1/terms", noneBody: map[string]any{"term": "zqxnone", "category": "bullying", "severity": "high", "rationale": "matrix",
				"cases": "+ zqxnone\n- nothing\n", "school": "no-such-school"}},
		"POST /api/v1/terms/{id}/remove": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/terms/" + ts.dropped + "/remove" },
			body: reason, none: "/api/v1/terms/0000000000000000/remove", noneBody: map[string]string{"reason": "matrix"}},
		"POST /api/v1/terms/{id}/suppress": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/terms/" + ts.term + "/suppress" },
			body: reason, none: "/api/v1/terms/0000000000000000/suppress", noneBody: map[string]string{"reason": "matrix"}},
		"POST /api/v1/terms/{id}/restore": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/terms/" + ts.term + "/restore" },
			body: reason, none: "/api/v1/terms/0000000000000000/restore", noneBody: map[string]string{"reason": "matrix"}},
		"POST /api/v1/exclusions/{id}/approve": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/exclusions/" + ts.excl + "/approve" },
			body: func(*tenantSchool) any { return approve }, none: "/api/v1/exclusions/0000000000000000/approve", noneBody: approve},
		"GET /api/v1/alerts/{id}": {path: func(u string, ts *tenantSchool) string { return "/api/v1/alerts/" + alertOf(u, ts) },
			none: "/api/v1/alerts/" + noAlert},
		"POST /api/v1/alerts/{id}/actions": {path: func(u string, ts *tenantSchool) string { return "/api/v1/alerts/" + alertOf(u, ts) + "/actions" },
			body: func(*tenantSchool) any { return map[string]string{"action": "note", "text": "matrix note"} },
			none: "/api/v1/alerts/" + noAlert + "/actions", noneBody: map[string]string{"action": "note", "text": "matrix note"}},
		"GET /api/v1/alerts/{id}/form.pdf": {path: func(u string, ts *tenantSchool) string { return "/api/v1/alerts/" + alertOf(u, ts) + "/form.pdf" },
			none: "/api/v1/alerts/" + noAlert + "/form.pdf"},
		"POST /api/v1/evidence/{alert}/{evidence}": {path: func(u string, ts *tenantSchool) string {
			return "/api/v1/evidence/" + ts.alerts["dsl"] + "/" + ts.evID
		}, body: func(*tenantSchool) any { return map[string]string{"reason": "matrix"} },
			none: "/api/v1/evidence/" + noAlert + "/ev000000000000000000000000000001", noneBody: map[string]string{"reason": "matrix"}},
		"GET /api/v1/devices/{id}": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/devices/" + ts.device },
			none: "/api/v1/devices/" + noDevice},
		"GET /api/v1/coverage/{device}": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/coverage/" + ts.device },
			none: "/api/v1/coverage/" + noDevice},
		"POST /api/v1/coverage/{device}/ack": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/coverage/" + ts.device + "/ack" },
			none: "/api/v1/coverage/" + noDevice + "/ack"},
		"POST /api/v1/tokens/{id}/revoke": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/tokens/" + ts.token + "/revoke" },
			body: func(*tenantSchool) any { return map[string]string{"reason": "matrix"} },
			none: "/api/v1/tokens/00000000deadbeef/revoke", noneBody: map[string]string{"reason": "matrix"}},
		"POST /api/v1/audits": {path: func(string, *tenantSchool) string { return "/api/v1/audits" }, body: auditOf,
			none: "/api/v1/audits", noneBody: map[string]any{"school": "no-such-school", "all": true, "reason": "matrix"}},
		"GET /api/v1/audits/{id}": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/audits/" + ts.audit },
			none: "/api/v1/audits/" + noAudit},
		"GET /api/v1/audits/{id}/progress": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/audits/" + ts.audit + "/progress" },
			none: "/api/v1/audits/" + noAudit + "/progress"},
		"POST /api/v1/audits/{id}/sign": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/audits/" + ts.audit + "/sign" },
			body: func(*tenantSchool) any { return map[string]string{"note": "matrix"} },
			none: "/api/v1/audits/" + noAudit + "/sign", noneBody: map[string]string{"note": "matrix"}},
		"GET /api/v1/audits/{id}/report.pdf": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/audits/" + ts.audit + "/report.pdf" },
			none: "/api/v1/audits/" + noAudit + "/report.pdf"},
		"GET /api/v1/audits/{id}/report.csv": {path: func(_ string, ts *tenantSchool) string { return "/api/v1/audits/" + ts.audit + "/report.csv" },
			none: "/api/v1/audits/" + noAudit + "/report.csv"},
		"POST /api/v1/packages": {path: func(string, *tenantSchool) string { return "/api/v1/packages" }, body: pkg,
			none: "/api/v1/packages", noneBody: map[string]string{"school": "no-such-school", "group": "pupils", "format": "deb", "arch": "amd64"}},
	}
	lists := map[string]string{
		"GET /api/v1/alerts":                  "/api/v1/alerts?status=concluded",
		"GET /api/v1/alert-categories":        "/api/v1/alert-categories",
		"GET /api/v1/incidents.csv":           "/api/v1/incidents.csv",
		"GET /api/v1/devices":                 "/api/v1/devices",
		"GET /api/v1/deploy":                  "/api/v1/deploy",
		"GET /api/v1/tokens":                  "/api/v1/tokens",
		"GET /api/v1/trends":                  "/api/v1/trends",
		"GET /api/v1/coverage":                "/api/v1/coverage",
		"GET /api/v1/reports/monitoring.json": "/api/v1/reports/monitoring.json",
		"GET /api/v1/reports/monitoring.csv":  "/api/v1/reports/monitoring.csv",
		"GET /api/v1/reports/monitoring.pdf":  "/api/v1/reports/monitoring.pdf",
		"GET /api/v1/reports/governors.json":  "/api/v1/reports/governors.json",
		"GET /api/v1/reports/governors.csv":   "/api/v1/reports/governors.csv",
		"GET /api/v1/reports/governors.pdf":   "/api/v1/reports/governors.pdf",
		"GET /api/v1/audits":                  "/api/v1/audits",
		"GET /api/v1/inventory":               "/api/v1/inventory",
		"GET /api/v1/access-log":              "/api/v1/access-log",
		"GET /api/v1/terms":                   "/api/v1/terms",
		"GET /api/v1/terms/decisions":         "/api/v1/terms/decisions",
		"GET /api/v1/exclusions":              "/api/v1/exclusions",
	}

	if len(e.srv.patterns) < 40 {
		t.Fatalf("the console registered %d routes; the matrix cannot have enumerated them", len(e.srv.patterns))
	}
	accounts := []string{"dsl", "head", "tech", "gov", "chair"}
	var table strings.Builder
	clients := map[string]*client{}
	login := func(name string) *client {
		if c, ok := clients[name]; ok {
			return c
		}
		clients[name] = e.login(name)
		return clients[name]
	}
	noLeak := func(who, method, path string, code int, body []byte, other *tenantSchool) {
		t.Helper()
		for _, m := range other.markers {
			if strings.Contains(string(body), m) {
				t.Errorf("%s %s %s (%d): the answer carries %q of school %s: %.300s", who, method, path, code, m, other.id, body)
			}
		}
	}
	for _, pattern := range e.srv.patterns {
		scope := tenancy.Routes()[pattern]
		method, _, _ := strings.Cut(pattern, " ")
		if !strings.Contains(pattern, " ") {
			method = "GET"
		}
		switch scope {
		case tenancy.Unclassified:
			t.Errorf("route %q has no school decision: classify it in collector/tenancy Routes", pattern)
			continue
		case tenancy.Public, tenancy.Account:
			// Before sign-in, or the caller's own account: no school data
			// (TestAuthorizationMatrix covers them).
			continue
		case tenancy.Installation:
			// Closed to every school account now there are two schools,
			// with no data; the installation-wide admin is not refused by
			// the school gate (the role gate is TestAuthorizationMatrix's).
			path := strings.NewReplacer("{id}", "x", "{username}", "x").Replace(strings.TrimPrefix(pattern, method+" "))
			for _, pre := range []string{"ash", "oak"} {
				for _, u := range accounts {
					code, b := login(pre+u).do(method, path, map[string]string{})
					fmt.Fprintf(&table, "%-9s %-6s %-45.45s installation  %d\n", pre+u, method, path, code)
					if code != 403 {
						t.Errorf("%s %s %s: %d, want 403 (installation-wide route, two schools): %.300s", pre+u, method, path, code, b)
					}
					other := schools["oak"]
					if pre == "oak" {
						other = schools["ash"]
					}
					noLeak(pre+u, method, path, code, b, other)
				}
			}
			if code, b := login("admin").do(method, path, map[string]string{}); code == 403 && strings.Contains(string(b), "school") {
				t.Errorf("admin %s %s: refused by the school gate: %s", method, path, b)
			}
			continue
		}
		// Scoped.
		rec, isRecord := records[pattern]
		listPath, isList := lists[pattern]
		if !isRecord && !isList {
			t.Errorf("school-scoped route %q has no request in the isolation matrix: add one", pattern)
			continue
		}
		for _, pre := range []string{"ash", "oak"} {
			own, other := schools[pre], schools["oak"]
			if pre == "oak" {
				other = schools["ash"]
			}
			for _, u := range accounts {
				c := login(pre + u)
				if isList {
					code, b := c.do(method, listPath, nil)
					fmt.Fprintf(&table, "%-9s %-6s %-45.45s list          %d\n", pre+u, method, listPath, code)
					noLeak(pre+u, method, listPath, code, b, other)
					continue
				}
				var ownBody, otherBody any
				if rec.body != nil {
					ownBody, otherBody = rec.body(own), rec.body(other)
				}
				ownPath, otherPath := rec.path(u, own), rec.path(u, other)
				ownCode, _ := c.do(method, ownPath, ownBody)
				noneCode, noneB := c.do(method, rec.none, rec.noneBody)
				otherCode, otherB := c.do(method, otherPath, otherBody)
				fmt.Fprintf(&table, "%-9s %-6s %-45.45s own %d other %d none %d\n", pre+u, method, otherPath, ownCode, otherCode, noneCode)
				noLeak(pre+u, method, otherPath, otherCode, otherB, other)
				switch {
				case ownCode == 403:
					// The role may not: refused the same whichever school.
					if otherCode != 403 {
						t.Errorf("%s %s %s: %d, want 403 as for its own school", pre+u, method, otherPath, otherCode)
					}
				case otherCode != noneCode || string(otherB) != string(noneB):
					t.Errorf("%s %s %s: another school's record answered %d %.200s; one that does not exist %d %.200s",
						pre+u, method, otherPath, otherCode, otherB, noneCode, noneB)
				case otherCode/100 == 2:
					t.Errorf("%s %s %s: another school's record answered %d", pre+u, method, otherPath, otherCode)
				}
			}
		}
	}

	// Trust grant: a DSL of the default school granted Oak answers on
	// every school-scoped record route as Oak's own DSL does.
	e.userIn("", "trustlead", RoleDSL, false, "")
	if _, err := e.st.UpdateUser("trustlead", func(u *store.User) error { u.Granted = []string{"oak-primary"}; return nil }); err != nil {
		t.Fatal(err)
	}
	for _, pattern := range e.srv.patterns {
		rec, ok := records[pattern]
		if !ok {
			continue
		}
		method, _, _ := strings.Cut(pattern, " ")
		oak := schools["oak"]
		var body, leadBody any
		if rec.body != nil {
			body, leadBody = rec.body(oak), rec.body(oak)
		}
		path := rec.path("dsl", oak)
		ownCode, _ := login("oakdsl").do(method, path, body)
		code, b := login("trustlead").do(method, path, leadBody)
		fmt.Fprintf(&table, "%-9s %-6s %-45.45s granted %d (oak's dsl %d)\n", "trustlead", method, path, code, ownCode)
		if code != ownCode {
			t.Errorf("trustlead (granted oak) %s %s: %d, oak's own DSL %d: %.200s", method, path, code, ownCode, b)
		}
		noLeak("trustlead", method, path, code, b, &tenantSchool{id: "elsewhere"})
	}

	// What a school account does see of its own school (so the matrix is
	// not green for a console that shows nobody anything).
	var logEntries []store.AccessEntry
	if code := login("oakhead").getJSON("/api/v1/access-log", &logEntries); code != 200 || len(logEntries) == 0 {
		t.Errorf("oak's headteacher reads no access-log entry about their school: %d %+v", code, logEntries)
	}
	for _, en := range logEntries {
		dev := en.DeviceID
		if dev == "" {
			dev, _, _ = parseAlertID(en.AlertID)
		}
		if dev != oakDevice {
			t.Errorf("oak's headteacher reads an access-log entry about %q: %+v", dev, en)
		}
	}
	var all []store.AccessEntry
	if code := login("admin").getJSON("/api/v1/access-log", &all); code != 200 || len(all) <= len(logEntries) {
		t.Errorf("the admin reads %d access-log entries, oak's headteacher %d", len(all), len(logEntries))
	}
	var list struct {
		Alerts []AlertJSON `json:"alerts"`
	}
	if code := login("oakdsl").getJSON("/api/v1/alerts?status=concluded", &list); code != 200 || len(list.Alerts) == 0 {
		t.Errorf("oak's DSL sees no alert of their own school: %d %+v", code, list)
	}
	for _, a := range list.Alerts {
		if dev, _, _ := parseAlertID(a.ID); dev != oakDevice {
			t.Errorf("oak's DSL listed alert %s", a.ID)
		}
	}
	var devs []DeviceJSON
	if code := login("ashtech").getJSON("/api/v1/devices", &devs); code != 200 || len(devs) != 1 || devs[0].DeviceID != testDevice {
		t.Errorf("ash's technician's devices: %d %+v", code, devs)
	}
	var toks []tokens.Info
	if code := login("oaktech").getJSON("/api/v1/tokens", &toks); code != 200 || len(toks) != 1 || toks[0].School != "oak-primary" {
		t.Errorf("oak's technician's tokens: %d %+v", code, toks)
	}
	// The installation-wide admin sees both schools' devices on the
	// Deploy side (tokens) and no safeguarding content.
	toks = nil
	if code := login("admin").getJSON("/api/v1/tokens", &toks); code != 200 || len(toks) != 2 {
		t.Errorf("admin's tokens: %d %+v", code, toks)
	}
	if code, _ := login("admin").do("GET", "/api/v1/alerts/"+schools["oak"].alerts["dsl"], nil); code != 403 {
		t.Errorf("admin opened an alert: %d", code)
	}
	// E-mail: collector/notify tells the reviewers routing names, and
	// only those of the device's school.
	for name, want := range map[string]bool{"oakdsl": true, "ashdsl": false} {
		u, err := e.st.GetUser(name)
		if err != nil {
			t.Fatal(err)
		}
		f := &vigilv1.Finding{DeviceId: oakDevice, User: "oakpupil"}
		if got := e.srv.Reviews(&u, e.srv.RouteOf(f), f); got != want {
			t.Errorf("%s told of an Oak alert: %v, want %v", name, got, want)
		}
	}
	t.Logf("tenant matrix:\n%s", table.String())
}

// TestAccountSchool: accounts are created in a school (the default when
// none is named); admin accounts are installation-wide and name none; an
// unknown school is refused.
func TestAccountSchool(t *testing.T) {
	e := newEnv(t)
	e.user("admin", RoleAdmin, false, "")
	if _, err := e.st.AddSchool(store.School{Name: "Oak Primary"}); err != nil {
		t.Fatal(err)
	}
	c := e.login("admin")
	add := func(name, role, school string) (int, []byte) {
		return c.do("POST", "/api/v1/users", map[string]string{"username": name, "display_name": "N", "role": role, "password": testPassword, "school": school})
	}
	if code, b := add("oakdsl", RoleDSL, "Oak Primary"); code != 201 && code != 200 {
		t.Fatalf("add oakdsl: %d %s", code, b)
	}
	if u, err := e.st.GetUser("oakdsl"); err != nil || u.School != "oak-primary" {
		t.Errorf("oakdsl: %+v %v", u, err)
	}
	if code, b := add("ashdsl", RoleDSL, ""); code/100 != 2 {
		t.Fatalf("add ashdsl: %d %s", code, b)
	}
	if u, _ := e.st.GetUser("ashdsl"); u.School != "" {
		t.Errorf("an account naming no school is stored in %q, want the default (\"\")", u.School)
	}
	if code, b := add("oakadmin", RoleAdmin, "oak-primary"); code != 400 || !strings.Contains(string(b), "whole installation") {
		t.Errorf("school-bound admin: %d %s", code, b)
	}
	if code, b := add("elmdsl", RoleDSL, "Elm High"); code != 400 || !strings.Contains(string(b), "no school") {
		t.Errorf("unknown school: %d %s", code, b)
	}
	var users []UserJSON
	c.getJSON("/api/v1/users", &users)
	got := map[string]string{}
	for _, u := range users {
		got[u.Username] = u.School
	}
	if got["oakdsl"] != "oak-primary" || got["ashdsl"] != store.DefaultSchool || got["admin"] != "" {
		t.Errorf("users' schools: %v", got)
	}
}

// TestTrustGrant: a trust safeguarding lead is a DSL account granted
// further schools on the admin socket: they then see those schools'
// alerts, evidence and devices, and no others; the grant and its removal
// are in the access log; only DSL accounts can be granted; installation
// routes stay closed to them.
func TestTrustGrant(t *testing.T) {
	e := newEnv(t)
	for _, sc := range []store.School{{ID: "oak", Name: "Oak"}, {ID: "elm", Name: "Elm"}} {
		if _, err := e.st.AddSchool(sc); err != nil {
			t.Fatal(err)
		}
	}
	const oakDevice, elmDevice = "oakoakoakoakoakoakoakoakoa", "elmelmelmelmelmelmelmelmel"
	for dev, sc := range map[string]string{oakDevice: "oak", elmDevice: "elm"} {
		if err := e.st.PutDevice(store.Device{DeviceID: dev, School: sc, Hostname: sc + "-lap", LastSeen: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	e.people(store.Person{Username: "oakpupil", Role: "pupil"}, store.Person{Username: "elmpupil", Role: "pupil"})
	oakAlert := e.alertOn(oakDevice, "oakpupil", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "oaksecret", time.Now())
	elmAlert := e.alertOn(elmDevice, "elmpupil", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "elmsecret", time.Now())
	e.user("trustlead", RoleDSL, false, "")
	e.user("chair", RoleGovernor, true, "")
	e.user("head", RoleHeadteacher, false, "")
	adm := httptest.NewServer(e.srv.AdminHandler())
	t.Cleanup(adm.Close)
	grant := func(path string, body GrantRequest) (int, string) {
		b, _ := json.Marshal(body)
		req, _ := http.NewRequest("POST", adm.URL+path, bytes.NewReader(b))
		req.Header.Set("X-Vigil-User", "ceo")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		out, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(out)
	}
	c := e.login("trustlead")
	if code, _ := c.do("GET", "/api/v1/alerts/"+oakAlert, nil); code != 404 {
		t.Fatalf("before the grant: %d, want 404", code)
	}
	if code, b := grant("/v1/users/trustlead/grant", GrantRequest{School: "Oak"}); code != 400 || !strings.Contains(b, "why") {
		t.Errorf("grant without a reason: %d %s", code, b)
	}
	// A headteacher and a chair review concerns about their own school's
	// staff and head: never granted another school.
	for _, u := range []string{"chair", "head"} {
		if code, b := grant("/v1/users/"+u+"/grant", GrantRequest{School: "oak", Reason: "r"}); code != 400 || !strings.Contains(b, "only dsl, technician and governor") {
			t.Errorf("grant to %s: %d %s", u, code, b)
		}
	}
	if code, b := grant("/v1/users/trustlead/grant", GrantRequest{School: "Oak", Reason: "trust safeguarding lead for Oak"}); code != 200 || !strings.Contains(b, `"granted_schools":["oak"]`) {
		t.Fatalf("grant: %d %s", code, b)
	}
	// The session already open sees the grant: the account is read per request.
	if code, b := c.do("GET", "/api/v1/alerts/"+oakAlert, nil); code != 200 || !strings.Contains(string(b), "oaksecret") {
		t.Errorf("granted school's alert: %d %.200s", code, b)
	}
	if code, b := c.do("POST", "/api/v1/evidence/"+oakAlert+"/"+fmt.Sprintf("ev%030d", 1), map[string]string{"reason": "grant"}); code != 200 {
		t.Errorf("granted school's evidence: %d %.200s", code, b)
	}
	if code, b := c.do("GET", "/api/v1/devices/"+oakDevice, nil); code != 200 {
		t.Errorf("granted school's device: %d %s", code, b)
	}
	noneCode, noneB := c.do("GET", "/api/v1/alerts/"+AlertID("nonenonenonenonenonenonen0", 1), nil)
	if code, b := c.do("GET", "/api/v1/alerts/"+elmAlert, nil); code != noneCode || string(b) != string(noneB) {
		t.Errorf("a school not granted: %d %s", code, b)
	}
	if code, b := c.do("GET", "/api/v1/alerts?status=new", nil); code != 200 || !strings.Contains(string(b), oakAlert) || strings.Contains(string(b), "elm") {
		t.Errorf("queue: %d %.300s", code, b)
	}
	// Granted one school of three, the lead does not set what is in force
	// in every school.
	if code, b := c.do("POST", "/api/v1/terms", map[string]any{"term": "zqxtrust", "category": "bullying", "severity": "high",
		"rationale": "r", "cases": "+ zqxtrust\n- nothing\n", "trust_wide": true}); code != 403 || !strings.Contains(string(b), "every school") {
		t.Errorf("a trust-wide term from a lead granted some schools: %d %s, want 403", code, b)
	}
	if code, b := grant("/v1/users/trustlead/ungrant", GrantRequest{School: "oak", Reason: "left the role"}); code != 200 || strings.Contains(b, "granted_schools") {
		t.Fatalf("ungrant: %d %s", code, b)
	}
	if code, _ := c.do("GET", "/api/v1/alerts/"+oakAlert, nil); code != 404 {
		t.Errorf("after the grant is removed: %d, want 404", code)
	}
	var actions []string
	for _, a := range e.accessLog() {
		if strings.Contains(a.Action, "grant") {
			actions = append(actions, a.Who+" "+a.Action+" "+a.Detail+" ("+a.Reason+")")
		}
	}
	want := []string{"ceo grant-school account trustlead, school oak (trust safeguarding lead for Oak)", "ceo revoke-school-grant account trustlead, school oak (left the role)"}
	if strings.Join(actions, "\n") != strings.Join(want, "\n") {
		t.Errorf("access log:\n%s\nwant:\n%s", strings.Join(actions, "\n"), strings.Join(want, "\n"))
	}
}

// TestTrustITLeadAndGovernor: the other trust roles are grants too. A
// technician granted Oak (a trust IT lead) sees Oak's devices and tokens
// besides their own school's and builds packages for Oak, still no alert;
// a governor granted Oak (a trust governor) gets the governors' aggregates
// over both schools and still nothing else.
func TestTrustITLeadAndGovernor(t *testing.T) {
	e := newEnv(t)
	if _, err := e.st.AddSchool(store.School{ID: "oak", Name: "Oak"}); err != nil {
		t.Fatal(err)
	}
	e.srv.deploy = &DeployConfig{Tokens: &tokens.Service{Store: e.st, CAFingerprint: identity.Fingerprint([]byte("trust CA"))},
		DefaultCollector: "vigil.trust.lan:7443", AgentDir: t.TempDir()}
	const oakDevice = "oakoakoakoakoakoakoakoakoa"
	now := time.Now()
	for dev, sc := range map[string]string{testDevice: "", oakDevice: "oak"} {
		if err := e.st.PutDevice(store.Device{DeviceID: dev, School: sc, Hostname: "lap-" + dev[:3], LastSeen: now}); err != nil {
			t.Fatal(err)
		}
	}
	e.people(store.Person{Username: "ashpupil", Role: "pupil"}, store.Person{Username: "oakpupil", Role: "pupil"})
	e.alertOn(testDevice, "ashpupil", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "ashsecret", now.Add(-time.Hour))
	oakAlert := e.alertOn(oakDevice, "oakpupil", "bullying", vigilv1.Severity_SEVERITY_HIGH, "oaksecret", now.Add(-time.Hour))
	oakTok, err := e.srv.deploy.Tokens.CreateIn(t.Context(), "oak", "pupils", time.Hour, 5)
	if err != nil {
		t.Fatal(err)
	}
	e.user("tech", RoleTechnician, false, "")
	e.user("gov", RoleGovernor, false, "")
	for _, u := range []string{"tech", "gov"} {
		if _, err := e.st.UpdateUser(u, func(u *store.User) error { u.Granted = []string{"oak"}; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	tech := e.login("tech")
	var devs []DeviceJSON
	if code := tech.getJSON("/api/v1/devices", &devs); code != 200 || len(devs) != 2 {
		t.Fatalf("trust IT lead's devices: %d %+v", code, devs)
	}
	if code, b := tech.do("GET", "/api/v1/tokens", nil); code != 200 || !strings.Contains(string(b), oakTok.ID) {
		t.Errorf("trust IT lead's tokens: %d %.300s", code, b)
	}
	if code, b := tech.do("GET", "/api/v1/alerts/"+oakAlert, nil); code != 403 || strings.Contains(string(b), "oaksecret") {
		t.Errorf("trust IT lead opens an alert: %d %.200s", code, b)
	}
	gov := e.login("gov")
	code, b := gov.do("GET", "/api/v1/trends", nil)
	if code != 200 || strings.Contains(string(b), "oaksecret") || strings.Contains(string(b), "oakpupil") || strings.Contains(string(b), oakDevice) {
		t.Fatalf("trust governor's trends: %d %.300s", code, b)
	}
	if !strings.Contains(string(b), "bullying") || !strings.Contains(string(b), "self_harm") {
		t.Errorf("trust governor's trends do not span both schools: %.400s", b)
	}
	for _, p := range []string{"/api/v1/alerts", "/api/v1/alerts/" + oakAlert, "/api/v1/devices"} {
		if code, b := gov.do("GET", p, nil); code != 403 {
			t.Errorf("trust governor %s: %d %.200s", p, code, b)
		}
	}
	// Without the grant the governor's trends are their own school's.
	if _, err := e.st.UpdateUser("gov", func(u *store.User) error { u.Granted = nil; return nil }); err != nil {
		t.Fatal(err)
	}
	if code, b := gov.do("GET", "/api/v1/trends", nil); code != 200 || strings.Contains(string(b), "bullying") {
		t.Errorf("governor without the grant: %d %.300s", code, b)
	}
}

// TestMeNamesTheSchool: /me names the account's school (and its grants)
// once there is more than one, and says nothing of schools before.
func TestMeNamesTheSchool(t *testing.T) {
	e := newEnv(t)
	e.user("dsl", RoleDSL, false, "")
	var me meResponse
	if code := e.login("dsl").getJSON("/api/v1/me", &me); code != 200 || me.School != "" || me.Granted != nil {
		t.Fatalf("single school: %d %+v", code, me)
	}
	if _, err := e.st.AddSchool(store.School{ID: "oak", Name: "Oak Primary"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.UpdateUser("dsl", func(u *store.User) error { u.Granted = []string{"oak"}; return nil }); err != nil {
		t.Fatal(err)
	}
	if code := e.login("dsl").getJSON("/api/v1/me", &me); code != 200 || me.School != "Default school" || len(me.Granted) != 1 || me.Granted[0] != "Oak Primary" {
		t.Fatalf("trust: %d %+v", code, me)
	}
}
