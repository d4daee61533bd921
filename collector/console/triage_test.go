package console

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"image/png"
	"reflect"
	"sort"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/triage"
	"github.com/vigil-safeguarding/vigil/internal/testutil"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestTriageStateMachine: New → In review → Concluded as the review form:
// a reason, two different signers, a conclusion from the list; history only
// grows; a concluded alert takes notes only.
func TestTriageStateMachine(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	e.user("dsl2", RoleDSL, false, "")
	e.user("dsl3", RoleDSL, false, "")
	id := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "kill myself", time.Now())
	d1, d2, d3 := e.login("dsl1"), e.login("dsl2"), e.login("dsl3")

	var history []store.HistoryEntry
	step := func(c *client, body map[string]string, want int) alertDetail {
		t.Helper()
		code, d := c.action(id, body)
		if code != want {
			t.Fatalf("%v: got %d, want %d", body, code, want)
		}
		if code == 200 {
			if len(d.History) != len(history)+1 || !sameJSON(d.History[:len(history)], history) {
				t.Fatalf("history not appended: before %+v after %+v", history, d.History)
			}
			history = d.History
		}
		return d
	}
	step(d1, map[string]string{"action": "sign"}, 409) // not in review yet
	step(d1, map[string]string{"action": "conclude", "conclusion": "no_concern"}, 409)
	step(d1, map[string]string{"action": "start_review"}, 400) // reason required
	step(d1, map[string]string{"action": "bogus"}, 400)
	d := step(d1, map[string]string{"action": "start_review", "reason": "term on a pupil laptop"}, 200)
	if d.Status != "in_review" || d.Review.Reason != "term on a pupil laptop" {
		t.Fatalf("after start: %+v", d)
	}
	step(d2, map[string]string{"action": "start_review", "reason": "again"}, 409)
	step(d1, map[string]string{"action": "note", "text": "spoke to the form tutor"}, 200)
	d = step(d1, map[string]string{"action": "sign"}, 200)
	if d.Review.FirstReviewer != "dsl1" || d.Review.FirstSignedAt == nil {
		t.Fatalf("first signature: %+v", d.Review)
	}
	step(d1, map[string]string{"action": "sign"}, 409) // same person twice
	step(d1, map[string]string{"action": "conclude", "conclusion": "no_concern"}, 409)
	d = step(d2, map[string]string{"action": "sign"}, 200)
	if d.Review.SecondReviewer != "dsl2" {
		t.Fatalf("second signature: %+v", d.Review)
	}
	step(d2, map[string]string{"action": "sign"}, 409)
	step(d3, map[string]string{"action": "sign"}, 409) // two already
	step(d2, map[string]string{"action": "conclude", "conclusion": "maybe"}, 400)
	step(d2, map[string]string{"action": "conclude", "conclusion": "other"}, 400) // other needs text
	d = step(d2, map[string]string{"action": "conclude", "conclusion": "other", "other": "pastoral support plan"}, 200)
	if d.Status != "concluded" || d.Review.Conclusion != "other" || d.Review.ConclusionOther != "pastoral support plan" || d.Review.ConcludedAt == nil {
		t.Fatalf("concluded: %+v", d)
	}
	for _, body := range []map[string]string{
		{"action": "sign"}, {"action": "start_review", "reason": "x"},
		{"action": "conclude", "conclusion": "no_concern"}, {"action": "false_positive", "reason": "x"},
	} {
		step(d3, body, 409)
	}
	d = step(d3, map[string]string{"action": "note", "text": "parents called back"}, 200)
	if len(d.Review.Notes) != 2 || d.Review.Conclusion != "other" {
		t.Fatalf("note after conclusion: %+v", d.Review)
	}
	var actions []string
	for _, h := range d.History {
		actions = append(actions, h.By+":"+h.Action)
	}
	want := "dsl1:start_review dsl1:note dsl1:sign dsl2:sign dsl2:conclude dsl3:note"
	if got := strings.Join(actions, " "); got != want {
		t.Errorf("history %q, want %q", got, want)
	}
	// The detail read shows the same record and is logged.
	var got alertDetail
	if code := d1.getJSON("/api/v1/alerts/"+id, &got); code != 200 || !sameJSON(got.History, d.History) {
		t.Errorf("detail: %d %+v", code, got.History)
	}
	if l := e.accessLog(); len(l) == 0 || l[len(l)-1].Action != "view-alert" || l[len(l)-1].Who != "dsl1" || l[len(l)-1].AlertID != id {
		t.Errorf("view-alert not logged: %+v", l)
	}
}

// TestFalsePositiveProposesExclusion: marking a false positive ends the
// review (reason, who, when; only notes after it), the queue lists it under
// its own status, and it stores a pending proposal; approval needs a reason
// and a future expiry.
func TestFalsePositiveProposesExclusion(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	id := e.alert("pupil1", "violence", vigilv1.Severity_SEVERITY_HIGH, "shoot", time.Now())
	c := e.login("dsl1")
	if code, _ := c.action(id, map[string]string{"action": "false_positive"}); code != 400 {
		t.Fatalf("false_positive without reason: %d", code)
	}
	code, d := c.action(id, map[string]string{"action": "false_positive", "reason": "basketball drills"})
	// A false positive ends the review, with the reason, who and when.
	fp := d.Review.FalsePositive
	if code != 200 || d.Status != "false_positive" || fp == nil || fp.Reason != "basketball drills" || fp.By != "dsl1" || fp.At == nil ||
		fp.ExclusionStatus != "pending" {
		t.Fatalf("false_positive: %d %+v %+v", code, d, fp)
	}
	// The form no longer offers it (nor any step but a note), and the
	// server refuses it again.
	if !reflect.DeepEqual(d.Review.Actions, []triage.Action{triage.AddNote}) {
		t.Errorf("actions after a false positive: %v, want only note", d.Review.Actions)
	}
	for _, body := range []map[string]string{
		{"action": "false_positive", "reason": "again"}, {"action": "start_review", "reason": "x"}, {"action": "sign"},
	} {
		if code, _ := c.action(id, body); code != 409 {
			t.Errorf("%v after a false positive: %d, want 409", body, code)
		}
	}
	// The queue shows it as such: not among the new alerts, but under its own status.
	var q struct {
		Alerts []AlertJSON `json:"alerts"`
	}
	c.getJSON("/api/v1/alerts?status=new", &q)
	if len(q.Alerts) != 0 {
		t.Errorf("status=new still lists the false positive: %+v", q.Alerts)
	}
	c.getJSON("/api/v1/alerts?status=false_positive", &q)
	if len(q.Alerts) != 1 || q.Alerts[0].ID != id || q.Alerts[0].Status != "false_positive" {
		t.Errorf("status=false_positive: %+v", q.Alerts)
	}
	var xs []store.Exclusion
	c.getJSON("/api/v1/exclusions", &xs)
	if len(xs) != 1 || xs[0].Status != "pending" || xs[0].Term != "shoot" || xs[0].RuleID != "screen-keywords" || xs[0].AlertID != id {
		t.Fatalf("exclusions: %+v", xs)
	}
	path := "/api/v1/exclusions/" + xs[0].ID + "/approve"
	for _, body := range []map[string]string{
		{"expires_at": time.Now().Add(time.Hour).Format(time.RFC3339)},
		{"reason": "PE topic"},
		{"reason": "PE topic", "expires_at": time.Now().Add(-time.Hour).Format(time.RFC3339)},
	} {
		if code, b := c.do("POST", path, body); code != 400 {
			t.Errorf("approve %v: %d %s", body, code, b)
		}
	}
	exp := time.Now().Add(14 * 24 * time.Hour).UTC().Truncate(time.Second)
	var x store.Exclusion
	code, b := c.do("POST", path, map[string]string{"reason": "PE topic this term", "expires_at": exp.Format(time.RFC3339)})
	json.Unmarshal(b, &x)
	if code != 200 || x.Status != "approved" || x.ApprovedBy != "dsl1" || !x.ExpiresAt.Equal(exp) {
		t.Fatalf("approve: %d %s", code, b)
	}
	if code, _ := c.do("POST", path, map[string]string{"reason": "again", "expires_at": exp.Format(time.RFC3339)}); code != 409 {
		t.Errorf("second approval: %d, want 409", code)
	}
	// Approved: the alert stays a false positive, and says its exclusion is in force.
	var after alertDetail
	c.getJSON("/api/v1/alerts/"+id, &after)
	if after.Status != "false_positive" || after.Review.FalsePositive == nil || after.Review.FalsePositive.ExclusionStatus != "approved" ||
		after.Review.FalsePositive.ExclusionID != xs[0].ID {
		t.Errorf("after approval: %s %+v", after.Status, after.Review.FalsePositive)
	}
}

// TestRoutingAndNobodySeesThemselves (seed 002 §5.3).
func TestRoutingAndNobodySeesThemselves(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	e.user("dsl2", RoleDSL, false, "")
	e.user("head", RoleHeadteacher, false, "")
	e.user("chair", RoleGovernor, true, "")
	e.user("gov", RoleGovernor, false, "")
	e.people(
		store.Person{Username: "pupil1", DisplayName: "Pupil One", Role: "pupil", Year: "7B"},
		store.Person{Username: "dsl2", DisplayName: "Dee Two", Role: "staff"},
		store.Person{Username: "head", DisplayName: "The Head", Role: "headteacher"},
	)
	now := time.Now()
	pupil := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_HIGH, "t1", now.Add(-5*time.Minute))
	unknown := e.alert(`SCHOOL\Visitor7`, "drugs", vigilv1.Severity_SEVERITY_MEDIUM, "t2", now.Add(-4*time.Minute))
	staff := e.alert("dsl2", "gambling", vigilv1.Severity_SEVERITY_HIGH, "t3", now.Add(-3*time.Minute))
	headA := e.alert("head", "hate", vigilv1.Severity_SEVERITY_HIGH, "t4", now.Add(-2*time.Minute))
	// dsl1 is not in the directory, so an alert about dsl1's own account
	// routes to the DSL, yet dsl1 must not see it (dsl2 does).
	self := e.alert("dsl1", "bullying", vigilv1.Severity_SEVERITY_HIGH, "t5", now.Add(-time.Minute))

	want := map[string][]string{
		"dsl1":  {pupil, unknown},
		"dsl2":  {pupil, unknown, self},
		"head":  {staff},
		"chair": {headA},
	}
	all := []string{pupil, unknown, staff, headA, self}
	for u, ids := range want {
		c := e.login(u)
		var resp struct {
			Alerts []AlertJSON `json:"alerts"`
		}
		if code := c.getJSON("/api/v1/alerts", &resp); code != 200 {
			t.Fatalf("%s list: %d", u, code)
		}
		var got []string
		for _, a := range resp.Alerts {
			got = append(got, a.ID)
		}
		sort.Strings(got)
		w := append([]string(nil), ids...)
		sort.Strings(w)
		if !reflect.DeepEqual(got, w) {
			t.Errorf("%s sees %v, want %v", u, got, w)
		}
		for _, id := range all {
			visible := false
			for _, x := range ids {
				visible = visible || x == id
			}
			code, _ := c.do("GET", "/api/v1/alerts/"+id, nil)
			if visible && code != 200 || !visible && code != 404 {
				t.Errorf("%s GET %s: %d (visible %v)", u, id, code, visible)
			}
			code, _ = c.action(id, map[string]string{"action": "note", "text": "x"})
			if !visible && code != 404 {
				t.Errorf("%s acts on invisible %s: %d", u, id, code)
			}
		}
	}
	// Fields and routing labels.
	c := e.login("dsl1")
	var resp struct {
		Alerts []AlertJSON `json:"alerts"`
	}
	c.getJSON("/api/v1/alerts", &resp)
	for _, a := range resp.Alerts {
		switch a.ID {
		case pupil:
			if a.PersonName != "Pupil One" || a.PersonRole != "pupil" || a.RoutedTo != "dsl" || a.Term != "t1" || a.Status != "new" || len(a.Evidence) != 1 {
				t.Errorf("pupil alert: %+v", a)
			}
		case unknown:
			if a.Person != "visitor7" || a.PersonRole != "unknown" || a.RoutedTo != "dsl" {
				t.Errorf("unknown-person alert: %+v", a)
			}
		}
	}
	if resp.Alerts[0].ID != unknown {
		t.Errorf("newest first: %s", resp.Alerts[0].ID)
	}
	// The governor without the chair flag sees no alerts at all.
	if code, _ := e.login("gov").do("GET", "/api/v1/alerts", nil); code != 403 {
		t.Errorf("governor list: %d", code)
	}
}

// TestAlertListFiltersAndPaging: filters, cursor paging, bounded scans.
func TestAlertListFiltersAndPaging(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	e.user("dsl2", RoleDSL, false, "")
	base := time.Date(2026, 11, 2, 9, 0, 0, 0, time.UTC)
	var ids []string
	for i := 0; i < 25; i++ {
		cat := []string{"self_harm", "bullying", "drugs"}[i%3]
		ids = append(ids, e.alert("pupil1", cat, vigilv1.Severity(2+i%4), "t", base.Add(time.Duration(i)*time.Hour)))
	}
	c := e.login("dsl1")
	c.action(ids[24], map[string]string{"action": "start_review", "reason": "r"})
	type page struct {
		Alerts []AlertJSON `json:"alerts"`
		Next   string      `json:"next_cursor"`
	}
	// Paging through everything, 10 at a time.
	var seen []string
	cursor := ""
	for i := 0; i < 5; i++ {
		var p page
		if code := c.getJSON("/api/v1/alerts?limit=10&cursor="+cursor, &p); code != 200 {
			t.Fatal(code)
		}
		for _, a := range p.Alerts {
			seen = append(seen, a.ID)
		}
		cursor = p.Next
		if cursor == "" {
			break
		}
	}
	if len(seen) != 25 || seen[0] != ids[24] || seen[24] != ids[0] {
		t.Fatalf("paged %d: %v", len(seen), seen)
	}
	check := func(q string, n int, f func(AlertJSON) bool) {
		t.Helper()
		var p page
		if code := c.getJSON("/api/v1/alerts?"+q, &p); code != 200 {
			t.Fatalf("%s: %d", q, code)
		}
		if len(p.Alerts) != n {
			t.Errorf("%s: %d alerts, want %d", q, len(p.Alerts), n)
		}
		for _, a := range p.Alerts {
			if !f(a) {
				t.Errorf("%s: %+v", q, a)
			}
		}
	}
	check("category=self_harm", 9, func(a AlertJSON) bool { return a.Category == "self_harm" })
	check("category=self_harm&status=new", 8, func(a AlertJSON) bool { return a.Category == "self_harm" && a.Status == "new" })
	check("status=in_review", 1, func(a AlertJSON) bool { return a.ID == ids[24] })
	check("severity=critical", 6, func(a AlertJSON) bool { return a.Severity == "critical" })
	check("person=PUPIL1&group=pupils&device="+testDevice, 25, func(a AlertJSON) bool { return true })
	check("person=nobody", 0, nil)
	check("from=2026-11-02T12:00:00Z&to=2026-11-02T14:00:00Z", 3, func(a AlertJSON) bool {
		return a.Time >= "2026-11-02T12" && a.Time <= "2026-11-02T14:00:00Z"
	})
	for _, q := range []string{"status=open", "severity=huge", "from=yesterday", "limit=0", "limit=500", "cursor=zz"} {
		if code, _ := c.do("GET", "/api/v1/alerts?"+q, nil); code != 400 {
			t.Errorf("%s: %d, want 400", q, code)
		}
	}
	// A selective filter pages through every match in full pages of
	// limit, and the cursor continues without losing or repeating alerts.
	var got []string
	cursor = ""
	for i := 0; i < 20; i++ {
		var p page
		c.getJSON("/api/v1/alerts?category=drugs&limit=3&cursor="+cursor, &p)
		for _, a := range p.Alerts {
			got = append(got, a.ID)
		}
		if cursor = p.Next; cursor == "" {
			break
		}
		if len(p.Alerts) != 3 {
			t.Errorf("page of %d drugs alerts with a cursor, want 3", len(p.Alerts))
		}
	}
	if len(got) != 8 {
		t.Errorf("paging found %d drugs alerts, want 8: %v", len(got), got)
	}
}

// TestEvidenceRevealLoggedAndIllegalRefused.
func TestEvidenceRevealLoggedAndIllegalRefused(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	e.user("head", RoleHeadteacher, false, "")
	id := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "kill myself", time.Now())
	illegal := e.alert("pupil1", "sexual_content", vigilv1.Severity_SEVERITY_CRITICAL, "child porn", time.Now())
	groom := e.alert("pupil1", "grooming", vigilv1.Severity_SEVERITY_CRITICAL, "dont tell your parents", time.Now())
	medium := e.alert("pupil1", "sexual_content", vigilv1.Severity_SEVERITY_MEDIUM, "nude pics", time.Now())
	c := e.login("dsl1")
	var d alertDetail
	c.getJSON("/api/v1/alerts/"+id, &d)
	ev := d.Evidence[0].ID
	before := len(e.accessLog())

	if code, _ := c.do("POST", "/api/v1/evidence/"+id+"/"+ev, nil); code != 400 {
		t.Errorf("no reason: %d, want 400", code)
	}
	if code, _ := c.do("POST", "/api/v1/evidence/"+id+"/nosuch", map[string]string{"reason": "x"}); code != 404 {
		t.Errorf("unknown evidence: %d", code)
	}
	if n := len(e.accessLog()); n != before {
		t.Errorf("refused reveals were logged as views")
	}
	resp := c.req("POST", "/api/v1/evidence/"+id+"/"+ev, map[string]string{"reason": "triage of alert"}, nil)
	defer resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "image/png" {
		t.Fatalf("reveal: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	if _, err := png.Decode(resp.Body); err != nil {
		t.Fatalf("not a PNG: %v", err)
	}
	l := e.accessLog()
	last := l[len(l)-1]
	if last.Action != "view-evidence" || last.Who != "dsl1" || last.EvidenceID != ev || last.Reason != "triage of alert" || last.AlertID != id {
		t.Errorf("access log: %+v", last)
	}
	// Logged first: when the access log cannot be written, nothing is shown.
	e.srv.logAccessFn = func(store.AccessEntry) error { return errors.New("disk full") }
	code, b := c.do("POST", "/api/v1/evidence/"+id+"/"+ev, map[string]string{"reason": "again"})
	if code != 500 || bytes.Contains(b, []byte("PNG")) {
		t.Errorf("reveal with a failing access log: %d %q", code, b)
	}
	if code, _ := c.do("GET", "/api/v1/alerts/"+id, nil); code != 500 {
		t.Errorf("detail with a failing access log: %d", code)
	}
	e.srv.logAccessFn = nil

	for _, x := range []string{illegal, groom} {
		var a alertDetail
		c.getJSON("/api/v1/alerts/"+x, &a)
		if !a.Illegal {
			t.Errorf("%s: illegal=false", x)
		}
		code, b := c.do("POST", "/api/v1/evidence/"+x+"/"+a.Evidence[0].ID, map[string]string{"reason": "look"})
		var m map[string]string
		json.Unmarshal(b, &m)
		if code != 403 || m["guidance"] != IllegalGuidance || bytes.Contains(b, []byte("PNG")) {
			t.Errorf("illegal evidence: %d %s", code, b)
		}
	}
	var a alertDetail
	c.getJSON("/api/v1/alerts/"+medium, &a)
	if a.Illegal {
		t.Errorf("medium sexual_content marked illegal")
	}
	// Only the DSL reveals evidence.
	if code, _ := e.login("head").do("POST", "/api/v1/evidence/"+id+"/"+ev, map[string]string{"reason": "x"}); code != 403 {
		t.Errorf("headteacher reveal: %d", code)
	}
	// The headteacher reads the access log.
	var entries []store.AccessEntry
	if code := e.login("head").getJSON("/api/v1/access-log", &entries); code != 200 || len(entries) == 0 || entries[0].Action != "view-alert" {
		t.Errorf("access log read: %d %+v", code, entries)
	}
}

// TestReviewFormPDFAndIncidentCSV.
func TestReviewFormPDFAndIncidentCSV(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	e.user("dsl2", RoleDSL, false, "")
	e.people(store.Person{Username: "pupil1", DisplayName: "Pupil One", Role: "pupil", Year: "7B"})
	if err := e.st.PutDevice(store.Device{DeviceID: testDevice, Group: "pupils", Hostname: "lap-07", OS: "windows", Arch: "amd64"}); err != nil {
		t.Fatal(err)
	}
	id := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "kill myself", time.Now())
	open := e.alert("pupil1", "drugs", vigilv1.Severity_SEVERITY_HIGH, "=cmd|calc", time.Now())
	d1, d2 := e.login("dsl1"), e.login("dsl2")
	if code, _ := d1.do("GET", "/api/v1/alerts/"+id+"/form.pdf", nil); code != 409 {
		t.Errorf("PDF before conclusion: %d, want 409", code)
	}
	d1.action(id, map[string]string{"action": "start_review", "reason": "search term on pupil laptop"})
	d1.action(id, map[string]string{"action": "note", "text": "Spoke with form tutor (Mr Green)"})
	d1.action(id, map[string]string{"action": "sign"})
	d2.action(id, map[string]string{"action": "sign"})
	if code, _ := d2.action(id, map[string]string{"action": "conclude", "conclusion": "parents_informed"}); code != 200 {
		t.Fatal("conclude")
	}
	resp := d1.req("GET", "/api/v1/alerts/"+id+"/form.pdf", nil, nil)
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	resp.Body.Close()
	pdf := buf.String()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" || !strings.HasPrefix(pdf, "%PDF") {
		t.Fatalf("PDF: %d %q", resp.StatusCode, pdf[:min(len(pdf), 20)])
	}
	// The text as a viewer shows it (the embedded font encodes glyphs).
	pdf = strings.Join(strings.Fields(testutil.PDFText(t, buf.Bytes())), " ")
	for _, want := range []string{"[X] Parents informed", "Dsl1 Name", "Dsl2 Name", "search term on pupil laptop",
		"lap-07", "Pupil One", "Spoke with form tutor (Mr Green)", "Record of reviewing devices"} {
		if !strings.Contains(pdf, want) {
			t.Errorf("PDF lacks %q", want)
		}
	}
	if l := e.accessLog(); l[len(l)-1].Action != "export-pdf" || l[len(l)-1].Who != "dsl1" {
		t.Errorf("export-pdf not logged: %+v", l[len(l)-1])
	}
	e.conclude(open, "dsl1", "dsl2", "no_concern")
	code, b := d1.do("GET", "/api/v1/incidents.csv", nil)
	if code != 200 {
		t.Fatal(code)
	}
	rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
	if err != nil || len(rows) != 3 {
		t.Fatalf("CSV: %v %q", err, b)
	}
	if strings.Join(rows[0], ",") != "id,time,person,category,severity,term,reason,first_reviewer,second_reviewer,conclusion,concluded_at" {
		t.Errorf("header %v", rows[0])
	}
	r := rows[1]
	if r[0] != id || r[2] != "pupil1" || r[3] != "self_harm" || r[4] != "critical" || r[5] != "kill myself" ||
		r[6] != "search term on pupil laptop" || r[7] != "Dsl1 Name (dsl1, Designated Safeguarding Lead)" || r[8] != "Dsl2 Name (dsl2, Designated Safeguarding Lead)" || r[9] != "Parents informed" || r[10] == "" {
		t.Errorf("row %v", r)
	}
	if rows[2][5] != "'=cmd|calc" {
		t.Errorf("formula not defused: %q", rows[2][5])
	}
	if l := e.accessLog(); l[len(l)-1].Action != "export-incidents" {
		t.Errorf("export-incidents not logged")
	}
}

// TestTrendsHaveNoNames: governors get counts only.
func TestTrendsHaveNoNames(t *testing.T) {
	e := newEnv(t)
	e.user("gov", RoleGovernor, false, "")
	e.people(store.Person{Username: "pupil1", DisplayName: "Pupil One", Role: "pupil"})
	now := time.Now()
	e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_HIGH, "secretterm", now)
	e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_HIGH, "secretterm", now.Add(-8*24*time.Hour))
	e.alert("pupil1", "drugs", vigilv1.Severity_SEVERITY_HIGH, "secretterm", now.Add(-200*24*time.Hour))
	code, b := e.login("gov").do("GET", "/api/v1/trends", nil)
	for _, bad := range []string{"secretterm", "pupil1", "Pupil One", testDevice} {
		if strings.Contains(string(b), bad) {
			t.Errorf("trends leak %q", bad)
		}
	}
	var tr struct {
		Weeks []weekJSON              `json:"weeks"`
		Cats  map[string]reports.Cell `json:"categories"`
	}
	if err := json.Unmarshal(b, &tr); err != nil {
		t.Fatal(err)
	}
	// Two alerts: a governor sees "fewer than 5" (TestTrendsSuppressedForGovernors).
	if code != 200 || len(tr.Weeks) != 13 || !tr.Cats["self_harm"].Suppressed || tr.Cats["drugs"].N != 0 || !tr.Weeks[12].Counts["self_harm"].Suppressed {
		t.Errorf("trends: %d %s", code, b)
	}
}

func sameJSON(a, b []store.HistoryEntry) bool {
	if len(a) == 0 && len(b) == 0 {
		return true
	}
	x, _ := json.Marshal(a)
	y, _ := json.Marshal(b)
	return bytes.Equal(x, y)
}

// TestIncidentsCSVOpenAlerts: the incident log says what it holds. By
// default concluded reviews only (the link says so); include=open adds the
// open alerts the caller may see, each saying it is not concluded, after
// the concluded ones.
func TestIncidentsCSVOpenAlerts(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	e.user("dsl2", RoleDSL, false, "")
	now := time.Now()
	done := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "kill myself", now.Add(-2*time.Hour))
	open := e.alert("pupil2", "bullying", vigilv1.Severity_SEVERITY_HIGH, "loser", now.Add(-time.Hour))
	e.conclude(done, "dsl1", "dsl2", "no_concern")
	c := e.login("dsl1")
	read := func(path string) [][]string {
		t.Helper()
		code, b := c.do("GET", path, nil)
		if code != 200 {
			t.Fatalf("%s: %d %s", path, code, b)
		}
		rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if err != nil {
			t.Fatal(err)
		}
		return rows
	}
	if rows := read("/api/v1/incidents.csv"); len(rows) != 2 || rows[1][0] != done {
		t.Fatalf("default export: %v, want the concluded alert only", rows)
	}
	rows := read("/api/v1/incidents.csv?include=open")
	if len(rows) != 3 || rows[1][0] != done || rows[2][0] != open {
		t.Fatalf("with open alerts: %v", rows)
	}
	if rows[2][9] != "not concluded: new" || rows[2][10] != "" {
		t.Errorf("open alert's row: %v", rows[2])
	}
	if rows[1][9] == "" || rows[1][10] == "" {
		t.Errorf("concluded alert's row: %v", rows[1])
	}
}
