package sessionwatch

import (
	"context"
	"log/slog"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/session"
	"github.com/vigil-safeguarding/vigil/rules"
)

// desk is the machine as the test sets it: sessions the probe lists and
// helpers attached.
type desk struct {
	mu       sync.Mutex
	sessions []session.GraphicalSession
	attached []session.Attached
}

func (d *desk) GraphicalSessions(context.Context) ([]session.GraphicalSession, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]session.GraphicalSession(nil), d.sessions...), nil
}
func (d *desk) Attached() []session.Attached {
	d.mu.Lock()
	defer d.mu.Unlock()
	return append([]session.Attached(nil), d.attached...)
}
func (d *desk) Probe() session.SessionProbe { return d }

type rec struct{ obs []checks.Observation }

func (r *rec) emit(_ context.Context, _ *rules.Rule, o ...checks.Observation) (uint64, uint64, error) {
	r.obs = append(r.obs, o...)
	return 0, 0, nil
}

func (r *rec) take() []checks.Observation { o := r.obs; r.obs = nil; return o }

// TestHelperMissing: a graphical session with no helper is reported once
// after the grace period (not before), for that user only; it clears when
// a helper attaches, is reported again after the helper goes away for the
// grace period, and clears when the session ends.
func TestHelperMissing(t *testing.T) {
	d := &desk{sessions: []session.GraphicalSession{
		{UID: 1001, Username: "pupil1", Display: ":1"},
		{UID: 1002, Username: "pupil2", Display: ":2"},
	}}
	// pupil2's helper is attached throughout.
	d.attached = []session.Attached{{Peer: session.Peer{UID: 1002, Username: "pupil2", Display: ":2"}}}
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	m := NewMonitor()
	m.now = func() time.Time { return now }
	m.Use(d, slog.Default())
	p := Params{}
	p.defaults()
	r := &rules.Rule{ID: "session-helper-missing"}
	tr := newTracker()
	var got rec
	step := func(advance time.Duration) []checks.Observation {
		now = now.Add(advance)
		m.step(context.Background(), tr, r, p, got.emit)
		return got.take()
	}

	// What the engine would record: the status per key when it changes.
	recorded := map[string]string{}
	changes := func(o []checks.Observation) []string {
		var out []string
		for _, x := range o {
			if recorded[x.Key] != x.Status {
				recorded[x.Key] = x.Status
				out = append(out, x.User+":"+x.Status)
			}
		}
		return out
	}
	expect := func(what string, advance time.Duration, want ...string) {
		t.Helper()
		got := changes(step(advance))
		if strings.Join(got, ",") != strings.Join(want, ",") {
			t.Fatalf("%s: recorded %v, want %v", what, got, want)
		}
	}

	expect("first sight", 0, "pupil2:pass")
	expect("within the 3m grace", 2*time.Minute)
	expect("after the grace", time.Minute+time.Second, "pupil1:fail")
	expect("still failing", time.Minute)

	d.mu.Lock()
	d.attached = append(d.attached, session.Attached{Peer: session.Peer{UID: 1001, Username: "pupil1", Display: ":1"}})
	d.mu.Unlock()
	expect("helper attached", 15*time.Second, "pupil1:pass")

	// The helper is killed: reported again after the grace period, not at once.
	d.mu.Lock()
	d.attached = d.attached[:1]
	d.mu.Unlock()
	expect("helper just gone", 15*time.Second)
	expect("helper gone past the grace", 3*time.Minute+time.Second, "pupil1:fail")

	// Logout: the finding clears.
	d.mu.Lock()
	d.sessions = d.sessions[1:]
	d.mu.Unlock()
	expect("session ended", 15*time.Second, "pupil1:pass")
}

// TestHelperOfAnotherUserDoesNotCount: a helper attached for one user
// does not cover another user's session.
func TestHelperOfAnotherUserDoesNotCount(t *testing.T) {
	d := &desk{
		sessions: []session.GraphicalSession{{UID: 1001, Username: "pupil1", Display: ":1"}},
		attached: []session.Attached{{Peer: session.Peer{UID: 1002, Username: "pupil2", Display: ":2"}}},
	}
	tr := newTracker()
	now := time.Now()
	tr.update(now, time.Minute, d.sessions, d.attached)
	o := tr.update(now.Add(2*time.Minute), time.Minute, d.sessions, d.attached)
	if len(o) != 1 || o[0].User != "pupil1" || o[0].Status != "fail" {
		t.Fatalf("%+v, want pupil1 failing", o)
	}
}

func TestParams(t *testing.T) {
	for _, c := range []struct {
		yaml string
		ok   bool
	}{
		{"grace: 2s\nevery: 1s\n", true},
		{"grace: 3m\n", true},
		{"every: 1ms\n", false},
		{"grace: soon\n", false},
		{"bogus: 1\n", false},
	} {
		err := Check{}.ValidateParams(yamlNode(t, c.yaml))
		if (err == nil) != c.ok {
			t.Errorf("%q: err %v, want ok=%v", c.yaml, err, c.ok)
		}
	}
}

// TestDefaultPackGrace: the default pack's session rule takes its grace
// from DefaultGrace (the one definition) and still loads as a session rule.
func TestDefaultPackGrace(t *testing.T) {
	set, errs := rules.LoadFiles(map[string][]byte{"session.yaml": rules.Defaults()["session.yaml"]},
		rules.KindMap{Kind: Check{}.ValidateParams})
	if errs != nil {
		t.Fatal(errs)
	}
	if len(set.Rules) != 1 || set.Rules[0].ID != "session-helper-missing" {
		t.Fatalf("rules: %+v", set.Rules)
	}
	var p Params
	if err := checks.DecodeParams(set.Rules[0].Params, &p); err != nil {
		t.Fatal(err)
	}
	if p.Grace != 0 {
		t.Errorf("the default pack restates grace (%v): leave it to DefaultGrace", time.Duration(p.Grace))
	}
	p.defaults()
	if time.Duration(p.Grace) != DefaultGrace || time.Duration(p.Every) != 15*time.Second {
		t.Errorf("default session rule: grace %v every %v", time.Duration(p.Grace), time.Duration(p.Every))
	}
}
