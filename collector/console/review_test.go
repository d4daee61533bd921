package console

import (
	"encoding/json"
	"slices"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// reviewOf reads an alert's review form as u sees it: the HTTP status and
// the fields this test needs, from the JSON (so the test reads what a
// browser reads).
func reviewOf(t *testing.T, c *client, id string) (int, map[string]any) {
	t.Helper()
	code, b := c.do("GET", "/api/v1/alerts/"+id, nil)
	var d map[string]any
	json.Unmarshal(b, &d)
	return code, d
}

func eligible(d map[string]any) []string {
	var out []string
	rv, _ := d["review"].(map[string]any)
	list, _ := rv["second_reviewers"].([]any)
	for _, x := range list {
		if m, ok := x.(map[string]any); ok {
			out = append(out, m["username"].(string))
		}
	}
	slices.Sort(out)
	return out
}

func listed(t *testing.T, c *client, id string) bool {
	t.Helper()
	var resp struct {
		Alerts []AlertJSON `json:"alerts"`
	}
	c.getJSON("/api/v1/alerts", &resp)
	for _, a := range resp.Alerts {
		if a.ID == id {
			return true
		}
	}
	return false
}

// TestStaffAndHeadteacherConcernsConclude: in a school with one
// headteacher, a concern about a staff member is started and signed by the
// headteacher, who sees who may sign second (the DSLs and the chair of
// governors, never the subject) and names the chair; the chair then sees
// it and signs, and the review concludes. A concern about the headteacher
// is reviewed by the chair with a DSL as second reviewer, and the
// headteacher never sees it. Before the fix the second reviewer got "404
// no such alert" and the review could never be concluded.
func TestStaffAndHeadteacherConcernsConclude(t *testing.T) {
	e := newEnv(t)
	e.user("head", RoleHeadteacher, false, "")
	e.user("dsl1", RoleDSL, false, "")
	e.user("dsl2", RoleDSL, false, "") // a DSL who is also staff: the subject below
	e.user("chair", RoleGovernor, true, "")
	e.user("gov", RoleGovernor, false, "")
	e.user("tech", RoleTechnician, false, "")
	e.people(
		store.Person{Username: "dsl2", DisplayName: "Dee Two", Role: "staff"},
		store.Person{Username: "head", DisplayName: "The Head", Role: "headteacher"},
	)
	staff := e.alert("dsl2", "gambling", vigilv1.Severity_SEVERITY_HIGH, "bet365", time.Now())
	headA := e.alert("head", "hate", vigilv1.Severity_SEVERITY_HIGH, "slur", time.Now())
	c := map[string]*client{}
	for _, u := range []string{"head", "dsl1", "dsl2", "chair", "gov"} {
		c[u] = e.login(u)
	}
	act := func(u, id string, body map[string]string, want int) {
		t.Helper()
		if code, d := c[u].action(id, body); code != want {
			t.Fatalf("%s %v on %s: %d, want %d (%+v)", u, body, id, code, want, d.Review)
		}
	}
	neverSeen := func(u, id string) {
		t.Helper()
		if code, _ := reviewOf(t, c[u], id); code != 404 || listed(t, c[u], id) {
			t.Fatalf("%s (the subject, or not asked) sees %s: %d", u, id, code)
		}
		if code, _ := c[u].action(id, map[string]string{"action": "sign"}); code != 404 {
			t.Fatalf("%s signs %s: %d, want 404", u, id, code)
		}
	}

	// A staff concern: the headteacher is first reviewer.
	act("head", staff, map[string]string{"action": "start_review", "reason": "gambling site on a staff laptop"}, 200)
	act("head", staff, map[string]string{"action": "sign"}, 200)
	_, d := reviewOf(t, c["head"], staff)
	if got := eligible(d); !slices.Equal(got, []string{"chair", "dsl1"}) {
		t.Errorf("who may sign second on a staff concern: %v, want [chair dsl1] (not the subject dsl2, a governor or the technician)", got)
	}
	neverSeen("chair", staff) // not asked yet
	neverSeen("dsl2", staff)  // the subject
	for _, bad := range []string{"dsl2", "gov", "tech", "head", "nobody"} {
		act("head", staff, map[string]string{"action": "request_second_reviewer", "reviewer": bad}, 400)
	}
	act("dsl1", staff, map[string]string{"action": "request_second_reviewer", "reviewer": "chair"}, 404)
	act("head", staff, map[string]string{"action": "request_second_reviewer", "reviewer": "chair"}, 200)
	if code, _ := reviewOf(t, c["chair"], staff); code != 200 || !listed(t, c["chair"], staff) {
		t.Fatalf("the chair, asked to sign, cannot open the staff concern: %d", code)
	}
	neverSeen("dsl1", staff) // asked nobody else
	neverSeen("dsl2", staff)
	act("chair", staff, map[string]string{"action": "sign"}, 200)
	act("head", staff, map[string]string{"action": "conclude", "conclusion": "kept_on_file"}, 200)
	_, d = reviewOf(t, c["chair"], staff)
	rv := d["review"].(map[string]any)
	if d["status"] != "concluded" || rv["first_reviewer"] != "head" || rv["second_reviewer"] != "chair" {
		t.Fatalf("staff concern: %v %v", d["status"], rv)
	}
	if code, _ := c["chair"].do("GET", "/api/v1/alerts/"+staff+"/form.pdf", nil); code != 200 {
		t.Errorf("the second reviewer's review form: %d", code)
	}
	neverSeen("dsl2", staff)

	// A concern about the headteacher: the chair is first, a DSL second;
	// the headteacher never sees it.
	neverSeen("head", headA)
	act("chair", headA, map[string]string{"action": "start_review", "reason": "hate term on the head's laptop"}, 200)
	act("chair", headA, map[string]string{"action": "sign"}, 200)
	_, d = reviewOf(t, c["chair"], headA)
	if got := eligible(d); !slices.Equal(got, []string{"dsl1", "dsl2"}) {
		t.Errorf("who may sign second on a headteacher concern: %v, want [dsl1 dsl2]", got)
	}
	act("chair", headA, map[string]string{"action": "request_second_reviewer", "reviewer": "head"}, 400)
	act("chair", headA, map[string]string{"action": "request_second_reviewer", "reviewer": "dsl1"}, 200)
	neverSeen("head", headA)
	neverSeen("dsl2", headA)
	act("dsl1", headA, map[string]string{"action": "sign"}, 200)
	act("dsl1", headA, map[string]string{"action": "conclude", "conclusion": "referred_safeguarding_board"}, 200)
	neverSeen("head", headA)
	// Nor its review form.
	if code, _ := c["head"].do("GET", "/api/v1/alerts/"+headA+"/form.pdf", nil); code != 404 {
		t.Errorf("the subject's review form: %d, want 404", code)
	}
}
