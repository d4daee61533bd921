package e2e

import (
	"encoding/json"
	"strings"
	"testing"
)

// TestCheckOnceDefaultPack: `vigil-agent check --once --json` runs the
// embedded default pack without a collector and prints one JSON object per
// finding with the fields technicians and tests rely on; posture checks say
// pass or fail and carry their raw observation.
func TestCheckOnceDefaultPack(t *testing.T) {
	out := mustRun(t, "vigil-agent", "check", "--once", "--group", "pupils", "--json")
	seen := map[string]map[string]any{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var f map[string]any
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("not JSON: %q", line)
		}
		for _, k := range []string{"check", "rule_id", "severity", "message"} {
			if s, _ := f[k].(string); s == "" {
				t.Errorf("line without %s: %s", k, line)
			}
		}
		seen[f["check"].(string)] = f
	}
	for _, check := range []string{"antivirus", "bluetooth", "selftest"} {
		if seen[check] == nil {
			t.Fatalf("no %s finding in:\n%s", check, out)
		}
	}
	for _, posture := range []string{"antivirus", "bluetooth"} {
		f := seen[posture]
		if st := f["status"]; st != "pass" && st != "fail" {
			t.Errorf("%s status %v, want pass or fail", posture, st)
		}
		if d, _ := f["details"].(map[string]any); len(d) == 0 {
			t.Errorf("%s has no details", posture)
		}
	}
	// Staff scope: the pupils Bluetooth rule does not apply.
	staff := mustRun(t, "vigil-agent", "check", "--once", "--group", "staff", "--json")
	if strings.Contains(staff, `"rule_id":"bluetooth-pupils"`) {
		t.Error("pupils rule evaluated for a staff device")
	}
}
