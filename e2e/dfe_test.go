package e2e

import (
	"context"
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
	// A device is only "silent" when it went quiet in school hours (out of
	// hours it is dormant): the school here is open at every hour, so the
	// test does not depend on the day and time it runs.
	c := newCollector(t, "--working-hours", "sun-sat 00:00-24:00", "--timezone", "UTC")
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
	waitFor(t, 60*time.Second, "the silent agent's scheduled selftest stored", func() bool {
		for _, f := range c.findings(silent.id) {
			if f.Check == "selftest" {
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

	// Its newest selftest stored, read once it can send no more.
	var silentSelftest time.Time
	for _, f := range c.findings(silent.id) {
		if at, err := time.Parse(time.RFC3339Nano, f.Time); err == nil && f.Check == "selftest" && at.After(silentSelftest) {
			silentSelftest = at
		}
	}

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

	// Before any review the CLI shows the reminder; the roles and a review
	// entered with the CLI are in the pack.
	if out := mustRun(t, "vigil-collector", "dfe", "review", "list", "--data", c.data); !strings.Contains(out, "REMINDER: No review") {
		t.Errorf("dfe review list before any review:\n%s", out)
	}
	roles := mustRun(t, "vigil-collector", "dfe", "roles", "--data", c.data, "--by", "head1", "--senior-leader", "Priya Shah",
		"--governor", "Tom Evans", "--dsl", "Grace Obi", "--it-provider", "Northgate IT Ltd", "--it-provider-contact", "support desk")
	if !strings.Contains(roles, "Northgate IT Ltd") || !strings.Contains(roles, "support desk") {
		t.Errorf("dfe roles:\n%s", roles)
	}
	if _, stderr, code := run(t, "vigil-collector", "dfe", "review", "add", "--data", c.data, "--date", time.Now().UTC().Format("2006-01-02"),
		"--attendee", "Priya Shah"); code == 0 || !strings.Contains(stderr, "findings") {
		t.Errorf("a review without findings was accepted (%d): %s", code, stderr)
	}
	mustRun(t, "vigil-collector", "dfe", "review", "add", "--data", c.data, "--by", "head1", "--date", time.Now().UTC().Format("2006-01-02"),
		"--attendee", "Priya Shah", "--attendee", "Grace Obi", "--findings", "Monitoring proved on the working devices", "--action", "Restart the silent device")
	if out := mustRun(t, "vigil-collector", "dfe", "review", "list", "--data", c.data); strings.Contains(out, "REMINDER") || !strings.Contains(out, "next review due") {
		t.Errorf("dfe review list after the review:\n%s", out)
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
		"Priya Shah", "Northgate IT Ltd", "Monitoring proved on the working devices", "Action: Restart the silent device",
		"roles register updated",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("the pack lacks %q:\n%s", want, out)
		}
	}
	if strings.Contains(text, "NOT NAMED") || strings.Contains(text, "REMINDER") {
		t.Errorf("the pack shows an empty role or a review reminder after both were entered:\n%s", out)
	}
	if strings.Contains(text, "("+working.id+")") {
		t.Errorf("the working device is listed among those that did not prove themselves:\n%s", out)
	}
}

// TestConsoleDFEBrowser: in real Chromium against a real collector and
// agent, the headteacher sees the review reminder, names the roles,
// records the review (the reminder goes), runs the fleet check and watches
// the device prove itself end to end, and downloads the evidence pack,
// whose text names the roles, the review and the device's check.
func TestConsoleDFEBrowser(t *testing.T) {
	need(t, "pdftotext")
	node := consoleTools(t)
	home := t.TempDir()
	for _, k := range []string{"HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"} {
		t.Setenv(k, home)
	}
	c := newCollector(t)
	pass := "head1-correct-horse-battery"
	pwFile := filepath.Join(t.TempDir(), "head1")
	os.WriteFile(pwFile, []byte(pass+"\n"), 0o600)
	mustRun(t, "vigil-collector", "user", "add", "--data", c.data, "--username", "head1", "--role", "headteacher",
		"--display-name", "Hana Head", "--password-file", pwFile)
	a := enrollAgent(t, c, "ict")
	a.start()
	waitState(t, c, a.id, "connected")

	downloads, tmp, shots := t.TempDir(), t.TempDir(), t.TempDir()
	if os.Getenv("VIGIL_UPDATE_SCREENSHOTS") == "1" {
		shots, _ = filepath.Abs(filepath.Join("..", "docs", "screenshots"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 6*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("console", "console.test.mjs"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "PHASE=dfe", "BASE_URL="+c.url(""), "CONSOLE_SPKI="+consoleSPKI(t, c), "TMPDIR="+tmp,
		"SCREENSHOT_DIR="+shots, "TOTAL_TIMEOUT_MS=300000", "HEAD_USER=head1", "HEAD_PASS="+pass,
		"DEVICE_ID="+a.id, "DOWNLOAD_DIR="+downloads)
	cmd.WaitDelay = 10 * time.Second
	err := cmd.Run()
	t.Logf("console.test.mjs PHASE=dfe:\n%s", out.String())
	if err != nil {
		t.Fatalf("browser test (dfe) failed: %v", err)
	}
	txt, err := exec.Command("pdftotext", "-layout", filepath.Join(downloads, "dfe.pdf"), "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v %s", err, txt)
	}
	text := strings.Join(strings.Fields(string(txt)), " ")
	for _, want := range []string{"Priya Shah", "Northgate IT Ltd", "Provision meets the standards (e2e)", "Action: Run the fleet check each half term",
		"requested by head1", "1 devices, 1 working end to end, 0 not.", "Working end to end", "roles register updated"} {
		if !strings.Contains(text, want) {
			t.Errorf("the downloaded pack lacks %q:\n%s", want, txt)
		}
	}
}
