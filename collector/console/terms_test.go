package console

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/schoolterms"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestSchoolTermsAPI: a DSL adds a term with cases, a bad case is refused
// with its line, the term is in the rendered bundle files, removal needs a
// reason, both are in the decision log; other roles get 403.
func TestSchoolTermsAPI(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	for _, r := range []string{RoleAdmin, RoleTechnician, RoleHeadteacher, RoleGovernor} {
		e.user(r+"1", r, false, "")
	}
	var calls atomic.Int32
	e.srv.terms.changed = func() { calls.Add(1) }
	c := e.login("dsl1")
	body := map[string]string{"term": "gobbo gibbs", "category": "bullying", "severity": "high",
		"rationale": "nickname used to bully a Year 8 pupil", "cases": "+ gobbo gibbs lol\n- gibbs free energy\n+ no match here\n"}

	code, b := c.do("POST", "/api/v1/terms", body)
	var bad termProblemsResponse
	json.Unmarshal(b, &bad)
	if code != 400 || len(bad.Problems) != 1 || bad.Problems[0].Field != "cases" || bad.Problems[0].Line != 3 || !strings.Contains(bad.Error, "cases line 3") {
		t.Fatalf("bad case: %d %s", code, b)
	}
	if ts, _ := e.st.SchoolTerms(); len(ts) != 0 || calls.Load() != 0 {
		t.Fatalf("refused term stored: %+v", ts)
	}

	body["cases"] = "+ gobbo gibbs lol\n- gibbs free energy\n"
	code, b = c.do("POST", "/api/v1/terms", body)
	var added store.SchoolTerm
	json.Unmarshal(b, &added)
	if code != 201 || added.ID == "" || added.AddedBy != "dsl1" || calls.Load() != 1 {
		t.Fatalf("add: %d %s", code, b)
	}
	var list termsResponse
	if c.getJSON("/api/v1/terms", &list); len(list.Terms) != 1 || list.Terms[0].ID != added.ID || len(list.Categories) < 8 {
		t.Fatalf("list: %+v", list)
	}
	if code, b = c.do("POST", "/api/v1/terms", body); code != 400 || !strings.Contains(string(b), "duplicate term") {
		t.Fatalf("duplicate: %d %s", code, b)
	}
	files, _ := schoolterms.BundleFiles(e.st, store.DefaultSchool)
	if !strings.Contains(string(files["keywords/school-bullying.txt"]), "gobbo gibbs ; severity=high") {
		t.Fatalf("bundle files: %q", files)
	}

	for _, r := range []string{RoleAdmin, RoleTechnician, RoleHeadteacher, RoleGovernor} {
		o := e.login(r + "1")
		if code, _ := o.do("GET", "/api/v1/terms", nil); code != 403 {
			t.Errorf("%s lists terms: %d", r, code)
		}
		if code, _ := o.do("POST", "/api/v1/terms/"+added.ID+"/remove", map[string]string{"reason": "x"}); code != 403 {
			t.Errorf("%s removes a term: %d", r, code)
		}
	}

	if code, _ := c.do("POST", "/api/v1/terms/"+added.ID+"/remove", map[string]string{"reason": " "}); code != 400 {
		t.Fatalf("removal without a reason: %d", code)
	}
	if code, b := c.do("POST", "/api/v1/terms/"+added.ID+"/remove", map[string]string{"reason": "no longer used"}); code != 200 || calls.Load() != 2 {
		t.Fatalf("remove: %d %s", code, b)
	}
	if code, _ := c.do("POST", "/api/v1/terms/"+added.ID+"/remove", map[string]string{"reason": "again"}); code != 404 {
		t.Fatalf("second remove: %d", code)
	}
	if files, _ := schoolterms.BundleFiles(e.st, store.DefaultSchool); files != nil {
		t.Fatalf("removed term still in the bundle: %q", files)
	}
	var log struct{ Decisions []store.TermDecision }
	c.getJSON("/api/v1/terms/decisions", &log)
	if len(log.Decisions) != 2 || log.Decisions[0].Action != store.TermAdded || log.Decisions[0].By != "dsl1" ||
		log.Decisions[1].Action != store.TermRemoved || log.Decisions[1].Reason != "no longer used" {
		t.Fatalf("decision log: %+v", log.Decisions)
	}
}

// TestTrustWideTermsAndOverrides: a lead who sees every school sets a
// term trust-wide and it is in force in every school's bundle; a school's
// DSL adds terms for their school only, cannot set or remove trust-wide
// ones, and overrides one for their school by suppressing it (and
// restoring it), which changes their school's bundle alone; the list and
// the decision log show a school's suppression only to those who see the
// school. Exclusions likewise: a school's applies on its devices only, a
// trust-wide one (approved by the lead) on every school's, and another
// school sees what it excludes but not the proposal.
func TestTrustWideTermsAndOverrides(t *testing.T) {
	e := newEnv(t)
	if _, err := e.st.AddSchool(store.School{ID: "oak-primary", Name: "Oak Primary"}); err != nil {
		t.Fatal(err)
	}
	e.userIn("", "lead", RoleDSL, false, "")
	if _, err := e.st.UpdateUser("lead", func(u *store.User) error { u.Granted = []string{"oak-primary"}; return nil }); err != nil {
		t.Fatal(err)
	}
	e.userIn("", "ashdsl", RoleDSL, false, "")
	e.userIn("oak-primary", "oakdsl", RoleDSL, false, "")
	lead, ash, oak := e.login("lead"), e.login("ashdsl"), e.login("oakdsl")
	term := func(text string, trust bool) map[string]any {
		return map[string]any{"term": text, "category": "bullying", "severity": "high", "rationale": "heard in school",
			"cases": "+ look " + text + " lol\n- nothing to see\n", "trust_wide": trust}
	}
	inBundle := func(school, text string) bool {
		t.Helper()
		files, err := schoolterms.BundleFiles(e.st, school)
		if err != nil {
			t.Fatal(err)
		}
		return strings.Contains(string(files[schoolterms.LibraryPath("bullying")]), text)
	}

	var trustTerm store.SchoolTerm
	if code, b := lead.do("POST", "/api/v1/terms", term("zqxtrust", true)); code != 201 || json.Unmarshal(b, &trustTerm) != nil || !trustTerm.TrustWide {
		t.Fatalf("lead adds a trust-wide term: %d %s", code, b)
	}
	if code, b := oak.do("POST", "/api/v1/terms", term("zqxoakwide", true)); code != 403 {
		t.Errorf("a school's DSL set a trust-wide term: %d %s", code, b)
	}
	var oakTerm store.SchoolTerm
	if code, b := oak.do("POST", "/api/v1/terms", term("zqxoakonly", false)); code != 201 || json.Unmarshal(b, &oakTerm) != nil || oakTerm.School != "oak-primary" {
		t.Fatalf("oak adds its own term: %d %s", code, b)
	}
	// The trust's term is checked beside every school's terms.
	if code, b := lead.do("POST", "/api/v1/terms", term("zqxoakonly", true)); code != 400 || !strings.Contains(string(b), "duplicate") {
		t.Errorf("a trust-wide term clashing with oak's: %d %s", code, b)
	}
	if !inBundle("default", "zqxtrust") || !inBundle("oak-primary", "zqxtrust") {
		t.Error("the trust-wide term is not in force in every school")
	}
	if !inBundle("oak-primary", "zqxoakonly") || inBundle("default", "zqxoakonly") {
		t.Error("oak's term is not oak's alone")
	}
	if code, b := oak.do("POST", "/api/v1/terms/"+trustTerm.ID+"/remove", map[string]string{"reason": "not here"}); code != 403 {
		t.Errorf("a school's DSL removed a trust-wide term: %d %s", code, b)
	}

	// Oak overrides the trust's term for its school.
	if code, b := oak.do("POST", "/api/v1/terms/"+trustTerm.ID+"/suppress", map[string]string{"reason": "a pupil's real surname here"}); code != 200 {
		t.Fatalf("suppress: %d %s", code, b)
	}
	if code, _ := oak.do("POST", "/api/v1/terms/"+trustTerm.ID+"/suppress", map[string]string{"reason": "again"}); code != 409 {
		t.Errorf("suppressing twice: %d, want 409", code)
	}
	if inBundle("oak-primary", "zqxtrust") || !inBundle("default", "zqxtrust") {
		t.Error("oak's suppression did not take the term out of oak's bundle alone")
	}
	suppressedIn := func(c *client) []string {
		var list termsResponse
		c.getJSON("/api/v1/terms", &list)
		for _, tm := range list.Terms {
			if tm.ID == trustTerm.ID {
				return tm.SuppressedIn
			}
		}
		t.Fatalf("the trust-wide term is not listed: %+v", list.Terms)
		return nil
	}
	if got := suppressedIn(oak); len(got) != 1 || got[0] != "oak-primary" {
		t.Errorf("oak's list: suppressed in %v", got)
	}
	if got := suppressedIn(ash); len(got) != 0 {
		t.Errorf("the default school's DSL sees oak's suppression: %v", got)
	}
	decisions := func(c *client) string {
		_, b := c.do("GET", "/api/v1/terms/decisions", nil)
		return string(b)
	}
	if d := decisions(ash); strings.Contains(d, "real surname") || strings.Contains(d, "zqxoakonly") {
		t.Errorf("the default school's DSL reads oak's decisions: %.300s", d)
	}
	if d := decisions(lead); !strings.Contains(d, "real surname") || !strings.Contains(d, "zqxoakonly") {
		t.Errorf("the lead does not read oak's decisions: %.300s", d)
	}
	if code, b := oak.do("POST", "/api/v1/terms/"+trustTerm.ID+"/restore", map[string]string{"reason": "pupil left"}); code != 200 || !inBundle("oak-primary", "zqxtrust") {
		t.Errorf("restore: %d %s", code, b)
	}

	// Exclusions.
	alert := e.alertOn(testDevice, "ashpupil", "self_harm", 3, "zqxphrase", time.Now())
	for _, x := range []store.Exclusion{
		{ID: "oakx", AlertID: alert, RuleID: "screen-keywords", Library: "keywords-self-harm", Term: "zqxoakphrase", Status: "pending",
			ProposedBy: "oakdsl", ProposedAt: time.Now(), ProposalReason: "oak drama club script", School: "oak-primary"},
		{ID: "widex", AlertID: alert, RuleID: "screen-keywords", Library: "keywords-self-harm", Term: "zqxwidephrase", Status: "pending",
			ProposedBy: "oakdsl", ProposedAt: time.Now(), ProposalReason: "oak history lesson", School: "oak-primary"},
	} {
		if err := e.st.PutExclusion(x); err != nil {
			t.Fatal(err)
		}
	}
	approve := func(c *client, id string, trust bool) (int, []byte) {
		return c.do("POST", "/api/v1/exclusions/"+id+"/approve", map[string]any{"reason": "agreed", "trust_wide": trust,
			"expires_at": time.Now().Add(time.Hour).UTC().Format(time.RFC3339)})
	}
	if code, b := approve(oak, "oakx", false); code != 200 {
		t.Fatalf("oak approves its exclusion: %d %s", code, b)
	}
	if code, b := approve(oak, "widex", true); code != 403 {
		t.Errorf("oak's DSL approved a trust-wide exclusion: %d %s", code, b)
	}
	if code, b := approve(lead, "widex", true); code != 200 {
		t.Fatalf("the lead approves it trust-wide: %d %s", code, b)
	}
	file := func(school string) string {
		data, err := ExclusionsFile(e.st, school, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		return string(data)
	}
	if f := file("oak-primary"); !strings.Contains(f, "zqxoakphrase") || !strings.Contains(f, "zqxwidephrase") {
		t.Errorf("oak's exclusions file: %s", f)
	}
	if f := file("default"); strings.Contains(f, "zqxoakphrase") || !strings.Contains(f, "zqxwidephrase") {
		t.Errorf("the default school's exclusions file: %s", f)
	}
	_, b := ash.do("GET", "/api/v1/exclusions", nil)
	if !strings.Contains(string(b), "zqxwidephrase") || strings.Contains(string(b), "oak history lesson") || strings.Contains(string(b), "zqxoakphrase") {
		t.Errorf("the default school's list of exclusions: %s", b)
	}
}
