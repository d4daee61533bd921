package console

import (
	"encoding/json"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

type trendsResp struct {
	Weeks      []weekJSON              `json:"weeks"`
	Categories map[string]reports.Cell `json:"categories"`
	Status     map[string]reports.Cell `json:"status"`
	Outcomes   map[string]reports.Cell `json:"outcomes"`
}

// TestTrendsSuppressedForGovernors: the trends a governor gets follow the
// governors' report's rule (reports.Suppress): no count from 1 to 4 is
// shown, and no shown total less the shown parts gives a hidden one
// (categories and review statuses split the same alerts, so they are
// suppressed together); the headteacher gets the same trends unsuppressed.
func TestTrendsSuppressedForGovernors(t *testing.T) {
	e := newEnv(t)
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC) // a Wednesday
	e.setNow(now)
	e.user("gov", RoleGovernor, false, "")
	e.user("head", RoleHeadteacher, false, "")
	e.user("dsl", RoleDSL, false, "")
	e.people(store.Person{Username: "pupil1", DisplayName: "Pupil One", Role: "pupil"})
	// This week: 9 self-harm, 3 drugs (one concluded); last week: 6
	// self-harm, 6 bullying.
	for i := range 9 {
		e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_HIGH, "t", now.Add(-time.Duration(i+1)*time.Minute))
	}
	var drugs []string
	for i := range 3 {
		drugs = append(drugs, e.alert("pupil1", "drugs", vigilv1.Severity_SEVERITY_HIGH, "t", now.Add(-time.Duration(i+20)*time.Minute)))
	}
	e.conclude(drugs[0], "dsl", "head", "no_concern")
	for i := range 6 {
		e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_HIGH, "t", now.Add(-7*24*time.Hour-time.Duration(i)*time.Minute))
		e.alert("pupil1", "bullying", vigilv1.Severity_SEVERITY_HIGH, "t", now.Add(-7*24*time.Hour-time.Duration(i+10)*time.Minute))
	}

	get := func(user string) (trendsResp, string) {
		code, b := e.login(user).do("GET", "/api/v1/trends", nil)
		if code != 200 {
			t.Fatalf("%s trends: %d %s", user, code, b)
		}
		var tr trendsResp
		if err := json.Unmarshal(b, &tr); err != nil {
			t.Fatalf("%s trends: %v %s", user, err, b)
		}
		return tr, string(b)
	}
	head, _ := get("head")
	if head.Categories["drugs"].N != 3 || head.Categories["self_harm"].N != 15 || head.Weeks[12].Total.N != 12 || head.Categories["bullying"].N != 6 || head.Outcomes["no_concern"].N != 1 {
		t.Fatalf("headteacher's trends are not the plain counts: %+v", head)
	}
	gov, raw := get("gov")
	// No number from 1 to 4 anywhere in what a governor receives.
	if m := regexp.MustCompile(`:\s*[1-4][,}]`).FindString(raw); m != "" {
		t.Errorf("a small count reached a governor (%q): %s", m, raw)
	}
	if !gov.Categories["drugs"].Suppressed || !gov.Outcomes["no_concern"].Suppressed {
		t.Errorf("drugs %v, no_concern %v: want fewer than 5", gov.Categories["drugs"], gov.Outcomes["no_concern"])
	}
	// This week is 9 self-harm + 3 drugs = 12: with the total shown and
	// drugs hidden, self-harm must be withheld too, or 12 - 9 gives 3.
	w := gov.Weeks[12]
	if !w.Counts["drugs"].Hidden() || (!w.Total.Hidden() && !w.Counts["self_harm"].Hidden()) {
		t.Errorf("this week's counts give the hidden one away: %+v", w)
	}
	// Counts that give nothing away are still shown: the 15 self-harm
	// alerts (the 6 bullying are withheld instead, so that the weeks'
	// totals less the categories shown cannot give the drugs).
	if c := gov.Categories["self_harm"]; c.Hidden() || c.N != 15 {
		t.Errorf("self-harm over the weeks: %v, want 15", c)
	}
	if !strings.Contains(raw, `"threshold":5`) {
		t.Errorf("governors' trends do not name the threshold: %s", raw)
	}
}
