package rules

import (
	"gopkg.in/yaml.v3"
	"strings"
	"testing"
)

func FuzzParseFile(f *testing.F) {
	f.Add([]byte(ruleYAML("seed") + "scope:\n  groups: [a]\n  roles: [staff]\nschedule:\n  interval: 1h\n  windows:\n    - days: [mon]\n      from: \"22:00\"\n      to: \"06:00\"\nparams: {}\n"))
	f.Add([]byte(billionLaughs))
	f.Add([]byte(strings.Repeat("[", 200))) // 10k-deep is in TestHostile; kept small for fuzzing speed
	f.Add([]byte(strings.Repeat("- ", 100)))
	f.Add([]byte(ruleYAML("bad")[:30] + "\xff\xfe" + ruleYAML("bad")[30:]))
	f.Add([]byte(ruleYAML("dns") + "check: dns\nparams:\n  domains: x\n  other: 1\n"))
	f.Add([]byte("---\n" + ruleYAML("a") + "---\n" + ruleYAML("a")))
	kinds := KindMap{"selftest": NoParams, "dns": testKinds["dns"], "plain": testKinds["plain"]}
	f.Fuzz(func(t *testing.T, data []byte) {
		const name = "fuzz.yaml"
		rules, errs := ParseFile(name, data, kinds)
		if (rules == nil) == (errs == nil) && len(rules) > 0 {
			t.Fatalf("rules and errors both set (or neither): %d rules, %v", len(rules), errs)
		}
		if len(errs) > maxErrorsPerFile+1 {
			t.Errorf("%d errors", len(errs))
		}
		for _, e := range errs {
			if e.File != name || e.Line < 1 || e.Col < 1 {
				t.Errorf("bad position in %q", e.Error())
			}
			if strings.Contains(e.Msg, "internal error") {
				t.Errorf("recovered panic: %s", e.Msg)
			}
		}
		for _, r := range rules {
			if !idRE.MatchString(r.ID) || r.Severity < Info || r.Severity > Critical || r.Version < 1 ||
				r.Name == "" || r.Rationale == "" || !kinds.Known(r.Check) || r.Pos.File != name || r.Pos.Line < 1 {
				t.Errorf("invalid rule accepted: %+v", r)
			}
			if r.Params != nil {
				checkTreeForTest(t, r.Params)
			}
		}
	})
}

// checkTreeForTest asserts an accepted params tree has no aliases or anchors.
func checkTreeForTest(t *testing.T, n *yaml.Node) {
	c := &collector{file: "x"}
	checkTree(c, n)
	if len(c.errs) > 0 {
		t.Errorf("accepted params with %v", c.errs)
	}
}
