package console

import (
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules/exclusions"
)

// TestApprovedExclusionReachesBundleFile: approving a proposal calls the
// ExclusionsChanged hook and puts the exclusion, with its reason, approver
// and expiry, in the bundle file; pending, expired and unappliable ones are
// not in it.
func TestApprovedExclusionReachesBundleFile(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	var calls atomic.Int32
	e.srv.exclChg = func() { calls.Add(1) }
	id := e.alert("pupil1", "violence", vigilv1.Severity_SEVERITY_HIGH, "shoot", time.Now())
	c := e.login("dsl1")
	if code, _ := c.action(id, map[string]string{"action": "false_positive", "reason": "basketball drills"}); code != 200 {
		t.Fatal("false_positive")
	}
	var xs []store.Exclusion
	c.getJSON("/api/v1/exclusions", &xs)
	if len(xs) != 1 || xs[0].Library != "keywords-violence" {
		t.Fatalf("exclusions: %+v", xs)
	}
	now := time.Now()
	data, err := ExclusionsFile(e.st, store.DefaultSchool, now)
	if err != nil {
		t.Fatal(err)
	}
	if data != nil {
		t.Errorf("pending exclusion in the bundle: %s", data)
	}
	exp := now.Add(14 * 24 * time.Hour).UTC().Truncate(time.Second)
	if code, b := c.do("POST", "/api/v1/exclusions/"+xs[0].ID+"/approve", map[string]string{"reason": "PE topic this term", "expires_at": exp.Format(time.RFC3339)}); code != 200 {
		t.Fatalf("approve: %d %s", code, b)
	}
	if calls.Load() != 1 {
		t.Errorf("ExclusionsChanged called %d times, want 1", calls.Load())
	}
	data, _ = ExclusionsFile(e.st, store.DefaultSchool, now)
	list, err := exclusions.Parse(data)
	if err != nil || len(list) != 1 {
		t.Fatalf("bundle file: %v %s", err, data)
	}
	x := list[0]
	if x.ID != xs[0].ID || x.LibraryRuleID != "keywords-violence" || x.Term != "shoot" || x.Reason != "PE topic this term" ||
		x.ApprovedBy != "dsl1" || !x.ExpiresAt.Equal(exp) || x.ApprovedAt.IsZero() {
		t.Errorf("bundle entry %+v", x)
	}
	if data, _ = ExclusionsFile(e.st, store.DefaultSchool, exp); data != nil {
		t.Errorf("expired exclusion still in the bundle: %s", data)
	}

	// A proposal naming no library cannot be applied by agents: refused.
	if err := e.st.PutExclusion(store.Exclusion{ID: "nolib", RuleID: "screen-keywords", Term: "x", Status: "pending", ProposedBy: "dsl1", ProposedAt: now}); err != nil {
		t.Fatal(err)
	}
	if code, _ := c.do("POST", "/api/v1/exclusions/nolib/approve", map[string]string{"reason": "r", "expires_at": exp.Format(time.RFC3339)}); code != 409 {
		t.Errorf("approving an unappliable exclusion: %d, want 409", code)
	}
}
