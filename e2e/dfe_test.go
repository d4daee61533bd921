package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

type checkRecord struct {
	ID          string    `json:"id"`
	RequestedBy string    `json:"requested_by"`
	CompletedAt time.Time `json:"completed_at"`
	Devices     []struct {
		DeviceID   string    `json:"device_id"`
		Outcome    string    `json:"outcome"`
		Detail     string    `json:"detail"`
		ProvedAt   time.Time `json:"proved_at"`
		LastProved time.Time `json:"last_proved"`
	} `json:"devices"`
}

// TestDFECheckRecord: the evidence pack's check record across real agents
// on loopback. One works; one is in a pupil's graphical session whose
// session helper was attached and then stopped; one went silent (killed,
// no goodbye) after its scheduled selftest had come through. A fleet check
// requested with the CLI asks each for a selftest through the ordinary
// control request and follows its finding into the store: the first is
// working end to end, the second answers but is named for its missing
// session helper, the third is named not connected and silent, with the
// time its last selftest arrived. The pack's PDF (pdftotext) names them
// the same way.
func TestDFECheckRecord(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a user and runs their session helper as them")
	}
	need(t, "useradd", "userdel", "Xvfb", "openbox", "xterm", "xdotool", "xprop", "pdftotext")
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	rulesDir := t.TempDir()
	rule := `apiVersion: vigil/v1
id: session-helper-missing
version: 1
name: Session helper attached to every graphical session
rationale: test copy of the default rule with a short grace period
severity: medium
category: tamper
check: session
scope:
  groups: [pupils]
params:
  grace: 2s
  every: 500ms
`
	if err := os.WriteFile(filepath.Join(rulesDir, "session.yaml"), []byte(rule), 0o644); err != nil {
		t.Fatal(err)
	}
	// The local rules folder replaces the pushed bundle: it needs the
	// default selftest rule too, or the device could never prove itself.
	selftest, err := os.ReadFile("../rules/default/selftest.yaml")
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(rulesDir, "selftest.yaml"), selftest, 0o644); err != nil {
		t.Fatal(err)
	}
	u := makeUser(t, "vigiltest4")
	c := newCollector(t)
	working, helper, silent := enrollAgent(t, c, "lab"), enrollAgent(t, c, "pupils"), enrollAgent(t, c, "lab")
	working.start()
	silent.start()
	helper.start("--rules", rulesDir)

	// The pupil's session with its helper attached, then the helper stopped.
	d, _ := userDesktop(t, u, "Homework - Notes")
	sessionStatus := func(want string) func() bool {
		return func() bool {
			for _, f := range c.findings(helper.id) {
				if f.Check == "session" && f.RuleID == "session-helper-missing" && f.Status == want {
					return true
				}
			}
			return false
		}
	}
	for dir := filepath.Dir(filepath.Dir(helper.sock)); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args := append(autostartArgs(t), "--session-socket", helper.sock)
	sh := startAs(t, u, []string{"DISPLAY=" + d}, "helper "+u.name, filepath.Join(binDir, "vigil-agent"), args...)
	waitFor(t, 60*time.Second, "session-helper-missing pass with the helper attached", sessionStatus("pass"))
	sh.kill()
	waitFor(t, 60*time.Second, "session-helper-missing fail once the helper stopped", sessionStatus("fail"))
	waitState(t, c, helper.id, "session_helper_missing")

	// The silent device: its scheduled selftest (at start) came through,
	// then it was killed without a goodbye.
	var silentSelftest time.Time
	waitFor(t, 60*time.Second, "the silent agent's scheduled selftest stored", func() bool {
		for _, f := range c.findings(silent.id) {
			if f.Check == "selftest" {
				silentSelftest, _ = time.Parse(time.RFC3339Nano, f.Time)
				return true
			}
		}
		return false
	})
	waitState(t, c, working.id, "connected")
	silent.p.kill()
	var cov coverageReport
	waitFor(t, 90*time.Second, "the killed agent judged silent", func() bool {
		prev := cov.State
		cov = coverageOf(t, c)[silent.id]
		if cov.State != prev {
			t.Logf("killed agent: %s (%s)", cov.State, cov.Why)
		}
		return cov.State == "silent"
	})
	t.Logf("silent: %s", cov.Why)

	id := strings.TrimSpace(mustRun(t, "vigil-collector", "dfe", "check", "--data", c.data, "--reason", "termly check", "--by", "head1", "--wait", "5m"))
	var rec checkRecord
	if err := json.Unmarshal([]byte(mustRun(t, "vigil-collector", "dfe", "check", "show", "--data", c.data, "--json", id)), &rec); err != nil {
		t.Fatal(err)
	}
	if rec.ID != id || rec.RequestedBy != "head1" || rec.CompletedAt.IsZero() || len(rec.Devices) != 3 {
		t.Fatalf("check record %+v", rec)
	}
	byID := map[string]int{}
	for i, d := range rec.Devices {
		byID[d.DeviceID] = i
		t.Logf("%s: %s (%s) last proved %s", d.DeviceID, d.Outcome, d.Detail, d.LastProved)
	}
	w := rec.Devices[byID[working.id]]
	if w.Outcome != "working" || w.ProvedAt.IsZero() || w.LastProved.IsZero() {
		t.Errorf("working agent: %+v", w)
	}
	// The requested selftest really went through the agent's spool: its
	// finding, with the nonce the check recorded, is in the store.
	found := false
	for _, f := range c.findings(working.id) {
		if f.Check == "selftest" && f.Details["trigger"] == "collector" {
			found = true
		}
	}
	if !found {
		t.Errorf("no collector-triggered selftest finding from %s", working.id)
	}
	h := rec.Devices[byID[helper.id]]
	if h.Outcome != "session_helper_missing" || !strings.Contains(h.Detail, "no session helper") || h.ProvedAt.IsZero() {
		t.Errorf("agent without its session helper: %+v", h)
	}
	s := rec.Devices[byID[silent.id]]
	if s.Outcome != "not_connected" || !strings.HasPrefix(s.Detail, "silent:") || !s.LastProved.Equal(silentSelftest.UTC()) {
		t.Errorf("silent agent: %+v (its last selftest %s)", s, silentSelftest)
	}

	pdf := filepath.Join(t.TempDir(), "pack.pdf")
	mustRun(t, "vigil-collector", "dfe", "pack", "--data", c.data, "--format", "pdf", "--out", pdf)
	out, err := exec.Command("pdftotext", "-layout", pdf, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v %s", err, out)
	}
	text := strings.Join(strings.Fields(string(out)), " ")
	for _, want := range []string{
		"Fleet check " + id + " requested by head1",
		"3 devices, 1 working end to end, 2 not.",
		"(" + helper.id + "): Session helper missing: screen not monitored.",
		"(" + silent.id + "): Not connected. silent:",
		"NOT NAMED", // nobody entered in the roles register yet
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the pack lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(text, "("+working.id+")") {
		t.Errorf("the working device is listed among those that did not prove themselves:\n%s", out)
	}
}
