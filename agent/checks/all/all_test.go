package all

import (
	"testing"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

// TestDefaultPackValidates: every rule in the embedded default pack names a
// check kind linked into the agent, with valid params. If this fails, a
// check package is missing from the imports above, and the agent would
// refuse its own defaults.
func TestDefaultPackValidates(t *testing.T) {
	set, errs := rules.LoadFiles(rules.Defaults(), checks.Kinds{})
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	kinds := map[string]bool{}
	for _, r := range set.Rules {
		kinds[r.Check] = true
	}
	for _, k := range checks.KindNames() {
		if !kinds[k] {
			t.Logf("kind %s has no rule in the default pack", k)
		}
	}
}
