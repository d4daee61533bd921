package console

import (
	"encoding/json"
	"strings"
	"sync/atomic"
	"testing"

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
