package all

import (
	"testing"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

// TestDefaultPackValidates: every rule in the embedded default pack names a
// check kind New constructs, with valid params. If this fails, a check is
// missing from New, and the agent would refuse its own defaults.
func TestDefaultPackValidates(t *testing.T) {
	reg := New(Deps{StateDir: t.TempDir()}).Registry
	set, errs := rules.LoadFiles(rules.Defaults(), reg)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	kinds := map[string]bool{}
	for _, r := range set.Rules {
		kinds[r.Check] = true
		if !reg.Known(r.Check) {
			t.Errorf("rule %s: kind %s not constructed", r.ID, r.Check)
		}
	}
	for _, k := range reg.KindNames() {
		if !kinds[k] {
			t.Logf("kind %s has no rule in the default pack", k)
		}
	}
}

// TestNewIsolated: two constructed sets share no state (before, checks were
// package globals: a second agent in one process, or a test, saw the
// first's Hub and quarantine folder).
func TestNewIsolated(t *testing.T) {
	a, b := New(Deps{StateDir: t.TempDir()}), New(Deps{StateDir: t.TempDir()})
	if a.Screen == b.Screen || a.Sessions == b.Sessions {
		t.Fatal("two constructed check sets share their screen hub or session monitor")
	}
	for _, c := range []*Checks{a, b} {
		if len(c.Registry.KindNames()) != 7 {
			t.Errorf("kinds %v", c.Registry.KindNames())
		}
	}
	if _, err := checks.NewRegistry(checks.SelfTest{}, checks.SelfTest{}); err == nil {
		t.Error("a registry accepted one kind twice")
	}
}
