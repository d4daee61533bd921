package screenwatch

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/agent/session"
	"github.com/vigil-safeguarding/vigil/rules"
	"github.com/vigil-safeguarding/vigil/rules/exclusions"
)

const testLibrary = `#! rule: keywords-test
#! category: self_harm
#! severity: high
#! name: Test terms
zorblax                      # excluded by the DSL in the test
quuxity                      # never excluded
`

const testRule = `apiVersion: vigil/v1
id: screen-keywords
version: 1
name: Safeguarding keywords on screen
rationale: test
severity: high
category: safeguarding
check: screen
params:
  libraries: ["keywords/*.txt"]
  screenshot: false
  repeat_after: 10m
`

// testBundle is a bundle as the collector sends it, loaded through the
// agent's own loader (so the exclusions data kind must be registered).
func testBundle(t *testing.T, excl []exclusions.Exclusion) *rules.Rule {
	t.Helper()
	files := map[string][]byte{"screen.yaml": []byte(testRule), "keywords/test.txt": []byte(testLibrary)}
	if excl != nil {
		files[exclusions.Path] = exclusions.Marshal(excl)
	}
	set, errs := rules.LoadFiles(files, checks.MustRegistry(Check{}))
	if errs != nil {
		t.Fatal(errs)
	}
	return &set.Rules[0]
}

type recorder struct {
	ch chan checks.Observation
}

func (r *recorder) emit(ctx context.Context, _ *rules.Rule, obs ...checks.Observation) (uint64, uint64, error) {
	for _, o := range obs {
		r.ch <- o
	}
	return 1, 1, nil
}

func (r *recorder) next(t *testing.T, what string) checks.Observation {
	t.Helper()
	select {
	case o := <-r.ch:
		return o
	case <-time.After(5 * time.Second):
		t.Fatalf("%s: no observation", what)
	}
	return checks.Observation{}
}

func (r *recorder) none(t *testing.T, what string) {
	t.Helper()
	select {
	case o := <-r.ch:
		t.Fatalf("%s: unexpected observation %q", what, o.Message)
	case <-time.After(200 * time.Millisecond):
	}
}

func terms(o checks.Observation) []string {
	var out []string
	for _, m := range o.Details["matches"].([]any) {
		out = append(out, m.(map[string]any)["term"].(string))
	}
	return out
}

// TestApprovedExclusion: a term excluded in the bundle raises nothing until
// the exclusion expires (checked at match time, without a new bundle); then
// it is observed again. Other terms, other libraries' terms and the other
// matches in the same title are unaffected.
func TestApprovedExclusion(t *testing.T) {
	t0 := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	var mu sync.Mutex
	clock := t0
	h := NewHub()
	h.now = func() time.Time { mu.Lock(); defer mu.Unlock(); return clock }
	r := testBundle(t, []exclusions.Exclusion{
		{ID: "x1", LibraryRuleID: "keywords-test", Term: "zorblax", Reason: "pupil's username in a game", ApprovedBy: "dsl1", ApprovedAt: t0.Add(-time.Hour), ExpiresAt: t0.Add(time.Hour)},
		{ID: "x2", LibraryRuleID: "keywords-other", Term: "quuxity", Reason: "another library", ApprovedBy: "dsl1", ApprovedAt: t0, ExpiresAt: t0.Add(time.Hour)},
	})
	ar, err := compile(r)
	if err != nil {
		t.Fatal(err)
	}
	rec := &recorder{ch: make(chan checks.Observation, 16)}
	h.activate([]*activeRule{ar}, rec.emit)
	ctx := context.Background()
	peer := session.Peer{UID: 1000, Username: "pupil1"}
	observe := func(id uint32, title string) {
		t.Helper()
		if _, err := h.Observe(ctx, peer, screen.Window{ID: id, Title: title, Process: "firefox"}); err != nil {
			t.Fatal(err)
		}
	}

	observe(1, "zorblax - Google Search")
	rec.none(t, "excluded term")

	observe(2, "quuxity - Google Search")
	if o := rec.next(t, "term excluded only for another library"); o.Details["term"] != "quuxity" {
		t.Errorf("term %v", o.Details["term"])
	}

	observe(3, "zorblax and quuxity")
	if o := rec.next(t, "mixed title"); len(terms(o)) != 1 || terms(o)[0] != "quuxity" {
		t.Errorf("mixed title matches %v, want only quuxity", terms(o))
	}

	mu.Lock()
	clock = t0.Add(time.Hour) // the expiry itself: no longer excluded
	mu.Unlock()
	observe(1, "zorblax - Google Search")
	if o := rec.next(t, "after expiry"); o.Details["term"] != "zorblax" || o.Details["library"] != "keywords-test" ||
		o.ScreenMatch.GetTerm() != "zorblax" || o.ScreenMatch.GetLibrary() != "keywords-test" || o.ScreenMatch.GetSource() != "window_title" {
		t.Errorf("after expiry: %+v", o.Details)
	}
}

// TestNoExclusionsFile: a bundle without exclusions (an older collector)
// works as before.
func TestNoExclusionsFile(t *testing.T) {
	ar, err := compile(testBundle(t, nil))
	if err != nil {
		t.Fatal(err)
	}
	if ar.excluded.Len() != 0 {
		t.Fatal("exclusions from nowhere")
	}
	if ms := ar.find("zorblax", time.Now()); len(ms) != 1 {
		t.Errorf("matches %v", ms)
	}
}

// TestTitleDuringReloadIsMatched: a title reported while no rules are
// active (the engine restarting checks after a rules change) is matched
// once the new rules are active, not silently lost.
func TestTitleDuringReloadIsMatched(t *testing.T) {
	h := NewHub()
	h.EvidenceWait = 10 * time.Millisecond
	r := reloadRule(t)
	ar, err := compile(r)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan checks.Observation, 4)
	emit := func(_ context.Context, _ *rules.Rule, obs ...checks.Observation) (uint64, uint64, error) {
		for _, o := range obs {
			got <- o
		}
		return 0, 0, nil
	}
	if d, _ := h.Observe(context.Background(), session.Peer{UID: 1000, Username: "p"}, screen.Window{ID: 7, Title: "how to kill myself"}); d.Capture {
		t.Fatal("inactive hub asked for a capture")
	}
	h.activate([]*activeRule{ar}, emit)
	select {
	case o := <-got:
		if o.Details["term"] != "kill myself" {
			t.Fatalf("observation %+v", o)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("title reported during the reload was lost")
	}
}

func reloadRule(t *testing.T) *rules.Rule {
	t.Helper()
	lib := "#! rule: keywords-test\n#! category: self_harm\n#! severity: critical\nkill myself # test term\n"
	set, errs := rules.LoadFiles(map[string][]byte{
		"screen.yaml":    []byte("apiVersion: vigil/v1\nid: s\nname: s\nrationale: r\nseverity: high\ncategory: safeguarding\ncheck: screen\nparams:\n  screenshot: false\n"),
		"keywords/t.txt": []byte(lib),
	}, checks.MustRegistry(Check{}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return &set.Rules[0]
}

// attachedHelpers is the session server's side the Hub asks to have a
// helper report again: the helper processes attached, and who was asked.
type attachedHelpers struct {
	mu       sync.Mutex
	attached map[int]bool
	asked    []int
}

func (a *attachedHelpers) ReportAgain(pid int) bool {
	a.mu.Lock()
	defer a.mu.Unlock()
	a.asked = append(a.asked, pid)
	return a.attached[pid]
}

// TestTitleBeforeRulesReportedAgain: once rules are active, the helper of a
// title reported while none were is asked to report again, and the Hub
// records nothing on its own: the helper's new report gets the capture
// decision, so the finding has its screenshot. A title whose helper has
// gone is matched by the Hub at once, saying why it has no screenshot,
// rather than waiting EvidenceWait for a capture nobody was asked for.
func TestTitleBeforeRulesReportedAgain(t *testing.T) {
	ar, err := compile(reloadRule(t))
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	ar.params.Screenshot = &yes
	h := NewHub()
	h.EvidenceWait = 1 << 40 // only evidence, or its absence said at once, completes a finding
	h.SetRecipient("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
	hs := &attachedHelpers{attached: map[int]bool{41: true}}
	h.UseHelpers(hs)
	here := session.Peer{UID: 1000, PID: 41, Username: "here"}
	gone := session.Peer{UID: 1001, PID: 42, Username: "gone"}
	win := screen.Window{ID: 7, Title: "how to kill myself"}
	for _, p := range []session.Peer{here, gone} {
		if d, _ := h.Observe(context.Background(), p, win); d.Capture {
			t.Fatal("a hub without rules asked for a capture")
		}
	}
	rec := &recorder{ch: make(chan checks.Observation, 4)}
	h.activate([]*activeRule{ar}, rec.emit)

	o := rec.next(t, "the title of the helper that has gone")
	if o.User != "gone" || len(o.Evidence) != 0 || o.Details["evidence"] == nil {
		t.Errorf("finding for %s, evidence %v, details.evidence %v; want gone's, without a screenshot, saying why", o.User, o.Evidence, o.Details["evidence"])
	}
	rec.none(t, "the attached helper's title, before it reports again")
	hs.mu.Lock()
	asked := append([]int(nil), hs.asked...)
	hs.mu.Unlock()
	if len(asked) != 2 || (asked[0] != 41 && asked[1] != 41) {
		t.Errorf("asked %v to report again, want 41 and 42", asked)
	}

	d, _ := h.Observe(context.Background(), here, win)
	if !d.Capture {
		t.Fatalf("the helper's new report: decision %+v, want a capture", d)
	}
	if err := h.Evidence(context.Background(), here, d.Token, session.Evidence{Data: []byte("ciphertext"), MediaType: screen.MediaPNG}); err != nil {
		t.Fatal(err)
	}
	if o := rec.next(t, "the attached helper's title"); o.User != "here" || len(o.Evidence) != 1 {
		t.Errorf("finding for %s with evidence %v, want here's with its screenshot", o.User, o.Evidence)
	}
}
