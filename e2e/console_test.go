package e2e

import (
	"bufio"
	"context"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"encoding/pem"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// consoleTools finds node and Debian's chromium, and makes sure the browser
// test's npm dependency (playwright-core, pinned in e2e/console's lock file;
// it drives the system chromium and downloads no browser) is installed.
// Without them the test skips on a developer's machine and fails in CI.
func consoleTools(t *testing.T) (node string) {
	t.Helper()
	missing := func(what string) {
		if os.Getenv("CI") == "" {
			t.Skipf("browser test needs %s (apt-get install chromium nodejs npm)", what)
		}
		t.Fatalf("browser test needs %s, and CI is set", what)
	}
	chromium := os.Getenv("CHROMIUM")
	if chromium == "" {
		chromium = "/usr/bin/chromium"
	}
	if _, err := os.Stat(chromium); err != nil {
		missing("chromium at " + chromium)
	}
	node, err := exec.LookPath("node")
	if err != nil {
		missing("node")
	}
	if _, err := os.Stat(filepath.Join("console", "node_modules", "playwright-core", "package.json")); err != nil {
		npm, err := exec.LookPath("npm")
		if err != nil {
			missing("npm (to install playwright-core)")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
		defer cancel()
		cmd := exec.CommandContext(ctx, npm, "ci", "--no-audit", "--no-fund")
		cmd.Dir = "console"
		if out, err := cmd.CombinedOutput(); err != nil {
			if os.Getenv("CI") == "" {
				t.Skipf("npm ci in e2e/console failed: %v\n%s", err, out)
			}
			t.Fatalf("npm ci in e2e/console: %v\n%s", err, out)
		}
	}
	return node
}

// TestConsoleBrowser: in real Chromium, against a real collector and agent
// whose screen check raised an alert under Xvfb, a DSL signs in, sees the
// alert, reveals its blurred evidence with a reason (the view lands in the
// access log), starts the review and signs; a second DSL signs and
// concludes "Referred to safeguarding board" and exports the PDF; a
// technician cannot open the alert. Then the device account becomes a
// member of staff and raises another alert: the headteacher starts its
// review, signs and asks the chair of governors, whom the page lists among
// those who may sign second; a DSL who was not asked does not see it; the
// chair signs second and concludes. The script (e2e/console/console.test.mjs)
// also saves screenshots: into docs/screenshots with
// VIGIL_UPDATE_SCREENSHOTS=1, into a temp dir otherwise.
func TestConsoleBrowser(t *testing.T) {
	node := consoleTools(t)
	display, win := xsession(t) // also points HOME and XDG_* at a temp dir
	c := newCollector(t)

	// Console accounts, through the CLI, while the collector runs.
	pw := map[string]string{
		"dsl1": "dsl1-correct-horse-battery", "dsl2": "dsl2-correct-horse-battery",
		"tech1": "tech1-correct-horse-battery", "admin1": "admin1-correct-horse-battery",
		"gov1": "gov1-correct-horse-battery", "head1": "head1-correct-horse-battery", "chair1": "chair1-correct-horse-battery",
		"totp1": "totp1-correct-horse-battery",
	}
	accounts := []struct{ user, role, name string }{
		{"dsl1", "dsl", "Dana Lead"}, {"dsl2", "dsl", "Sam Deputy"}, {"tech1", "technician", "Tom Technician"},
		{"admin1", "admin", "Ada Admin"}, {"gov1", "governor", "Gina Governor"},
		{"head1", "headteacher", "Hana Head"}, {"chair1", "governor", "Carol Chair"},
		{"totp1", "dsl", "Tess Twostep"},
	}
	secrets := t.TempDir()
	var totpSecret string
	for _, a := range accounts {
		f := filepath.Join(secrets, a.user)
		if err := os.WriteFile(f, []byte(pw[a.user]+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		args := []string{"user", "add", "--data", c.data, "--username", a.user, "--role", a.role,
			"--display-name", a.name, "--password-file", f}
		if a.user == "chair1" {
			args = append(args, "--chair")
		}
		if a.user == "totp1" {
			args = append(args, "--totp")
		}
		out := mustRun(t, "vigil-collector", args...)
		if a.user == "totp1" {
			m := regexp.MustCompile(`secret=([A-Z2-7]+)`).FindStringSubmatch(out)
			if m == nil {
				t.Fatalf("user add --totp printed no secret: %s", out)
			}
			totpSecret = m[1]
		}
	}
	// The device account the session helper runs as is a pupil in the
	// school's directory, so the alert routes to the DSL with a name.
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	people := filepath.Join(secrets, "people.csv")
	os.WriteFile(people, []byte("username,display_name,role,year\n"+me.Username+",Jo Example,pupil,Year 8\n"), 0o600)
	mustRun(t, "vigil-collector", "people", "import", "--data", c.data, people)

	// A real agent raises a screen alert with an encrypted screenshot.
	a := enrollAgent(t, c, "pupils")
	a.start()
	helper := start(t, "vigil-agent", "session", "--session-socket", a.sock, "--display", display)
	waitFor(t, 10*time.Second, "session helper connected", func() bool {
		return strings.Contains(helper.log.String(), "watching the screen")
	})
	setTitle(t, win, "how to kill myself - Google Search")
	waitFor(t, 15*time.Second, "screen finding at the collector", func() bool {
		for _, f := range c.findings(a.id) {
			if f.Check == "screen" {
				return true
			}
		}
		return false
	})
	evidence := evidenceOf(t, c, a.id)
	hostname, _ := os.Hostname() // what the agent enrolled with

	// The browser test.
	shots := t.TempDir()
	if os.Getenv("VIGIL_UPDATE_SCREENSHOTS") == "1" {
		shots, _ = filepath.Abs(filepath.Join("..", "docs", "screenshots"))
	}
	tmp := t.TempDir()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Minute)
	defer cancel()
	browserEnv := append(os.Environ(),
		"BASE_URL="+c.url(""), "CONSOLE_SPKI="+consoleSPKI(t, c), "ALERT_TERM=kill myself", "SCREENSHOT_DIR="+shots, "TMPDIR="+tmp,
		"DEVICE_HOSTNAME="+hostname,
		"DSL1_USER=dsl1", "DSL1_PASS="+pw["dsl1"], "DSL2_USER=dsl2", "DSL2_PASS="+pw["dsl2"],
		"TECH_USER=tech1", "TECH_PASS="+pw["tech1"], "ADMIN_USER=admin1", "ADMIN_PASS="+pw["admin1"],
		"GOV_USER=gov1", "GOV_PASS="+pw["gov1"], "TOTAL_TIMEOUT_MS=780000",
		"HEAD_USER=head1", "HEAD_PASS="+pw["head1"], "CHAIR_USER=chair1", "CHAIR_PASS="+pw["chair1"], "CHAIR_NAME=Carol Chair",
		"TOTP_USER=totp1", "TOTP_PASS="+pw["totp1"], "TOTP_SECRET="+totpSecret)
	browser := func(phase string, extra ...string) {
		t.Helper()
		cmd := exec.CommandContext(ctx, node, filepath.Join("console", "console.test.mjs"))
		cmd.Env = append(append(append([]string(nil), browserEnv...), "PHASE="+phase), extra...)
		cmd.WaitDelay = 10 * time.Second
		started := time.Now()
		out, err := cmd.CombinedOutput()
		t.Logf("console.test.mjs PHASE=%s (%v):\n%s", phase, time.Since(started).Round(100*time.Millisecond), out)
		if err != nil {
			t.Fatalf("browser test (%s) failed: %v", phase, err)
		}
	}
	browser("pupil")

	// A staff concern, in a school with one headteacher: the same device
	// account is now a member of staff in the directory, and raises another
	// alert. The headteacher reviews it first and asks the chair of
	// governors to sign second (seed 002 §5.3).
	os.WriteFile(people, []byte("username,display_name,role,year\n"+me.Username+",Jo Staff,staff,\n"), 0o600)
	mustRun(t, "vigil-collector", "people", "import", "--data", c.data, people)
	before := 0
	for _, f := range c.findings(a.id) {
		if f.Check == "screen" {
			before++
		}
	}
	setTitle(t, win, "where to buy cocaine - Google Search")
	waitFor(t, 30*time.Second, "the staff member's screen finding at the collector", func() bool {
		n := 0
		for _, f := range c.findings(a.id) {
			if f.Check == "screen" {
				n++
			}
		}
		return n > before
	})
	browser("staff", "STAFF_TERM=buy cocaine")

	// The collector's own record: dsl1's reveal, with the reason, is in the
	// access log; the technician read nothing.
	sawReveal := false
	sc := bufio.NewScanner(strings.NewReader(mustRun(t, "vigil-collector", "access-log", "--data", c.data, "--json")))
	for sc.Scan() {
		var e struct {
			Who, Action, Reason string
			EvidenceID          string `json:"evidence_id"`
		}
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		if e.Who == "dsl1" && e.Action == "view-evidence" && e.EvidenceID == evidence && strings.Contains(e.Reason, "self-harm search") {
			sawReveal = true
		}
		// The technician's only entries are changes to the licence
		// register (the licences step); never a view of an alert or evidence.
		if e.Who == "tech1" && !strings.Contains(e.Action, "licence") {
			t.Errorf("the technician read something: %s", sc.Text())
		}
		if e.Who == "dsl2" && e.Action == "view-evidence" {
			t.Errorf("dsl2 viewed evidence without revealing it: %s", sc.Text())
		}
	}
	if !sawReveal {
		t.Errorf("dsl1's reveal of evidence %s is not in the access log", evidence)
	}
}

// consoleSPKI is the base64 SHA-256 of the console certificate's public
// key, which Chromium's --ignore-certificate-errors-spki-list accepts: the
// browser trusts exactly the collector's console key, not any certificate.
func consoleSPKI(t *testing.T, c *collector) string {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(c.data, "pki", "console.pem"))
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		t.Fatal("pki/console.pem holds no PEM block")
	}
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	sum := sha256.Sum256(cert.RawSubjectPublicKeyInfo)
	return base64.StdEncoding.EncodeToString(sum[:])
}

// TestConsoleAuditBrowser: in real Chromium, against a real collector and
// two real agents of group "ict" (one offline), the headteacher requests an
// audit of the group with a reason, watches progress ("1/2 answered, 1
// offline: queued"), the offline agent is started and its answer appears
// without a reload, she opens a device's software, signs the audit off and
// downloads the PDF, whose text (pdftotext) names the scope, the reason,
// both devices, real software of this machine and the sign-off. The views
// and the export are in the access log, as from the CLI.
func TestConsoleAuditBrowser(t *testing.T) {
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		t.Skip("needs a dpkg system")
	}
	need(t, "pdftotext")
	node := consoleTools(t)
	home := t.TempDir()
	for _, k := range []string{"HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR"} {
		t.Setenv(k, home)
	}
	c := newCollector(t)
	secrets := t.TempDir()
	pass := "head1-correct-horse-battery"
	pwFile := filepath.Join(secrets, "head1")
	os.WriteFile(pwFile, []byte(pass+"\n"), 0o600)
	mustRun(t, "vigil-collector", "user", "add", "--data", c.data, "--username", "head1", "--role", "headteacher",
		"--display-name", "Hana Head", "--password-file", pwFile)

	online, offline := enrollAgent(t, c, "ict"), enrollAgent(t, c, "ict")
	online.start()
	waitFor(t, 60*time.Second, "the online agent connected", func() bool {
		for _, d := range c.devices() {
			if d.DeviceID == online.id && d.Connected {
				return true
			}
		}
		return false
	})

	signals, downloads, tmp, shots := t.TempDir(), t.TempDir(), t.TempDir(), t.TempDir()
	if os.Getenv("VIGIL_UPDATE_SCREENSHOTS") == "1" {
		shots, _ = filepath.Abs(filepath.Join("..", "docs", "screenshots"))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 8*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, node, filepath.Join("console", "console.test.mjs"))
	var out strings.Builder
	cmd.Stdout, cmd.Stderr = &out, &out
	cmd.Env = append(os.Environ(), "PHASE=audit", "BASE_URL="+c.url(""), "CONSOLE_SPKI="+consoleSPKI(t, c), "TMPDIR="+tmp,
		"SCREENSHOT_DIR="+shots, "TOTAL_TIMEOUT_MS=420000", "HEAD_USER=head1", "HEAD_PASS="+pass,
		"AUDIT_GROUP=ict", "AUDIT_REASON=Termly ICT audit for the governors (000 §5.2)",
		"SIGNAL_DIR="+signals, "DOWNLOAD_DIR="+downloads)
	cmd.WaitDelay = 10 * time.Second
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	// The script writes SIGNAL_DIR/queued once the page shows the offline
	// device queued; only then does that device come online.
	started := false
	for !started {
		select {
		case err := <-done:
			t.Fatalf("browser test ended before the offline device was started: %v\n%s", err, out.String())
		case <-time.After(200 * time.Millisecond):
			if _, err := os.Stat(filepath.Join(signals, "queued")); err == nil {
				offline.start()
				started = true
			}
		}
	}
	err := <-done
	t.Logf("console.test.mjs PHASE=audit:\n%s", out.String())
	if err != nil {
		t.Fatalf("browser test (audit) failed: %v", err)
	}

	// The downloaded PDF, read back as text.
	pdfs, _ := filepath.Glob(filepath.Join(downloads, "*.pdf"))
	if len(pdfs) != 1 {
		t.Fatalf("downloaded PDFs: %v", pdfs)
	}
	pt, err := exec.Command("pdftotext", "-layout", pdfs[0], "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v: %s", err, pt)
	}
	text := string(pt)
	q, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "bash").Output()
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"group ict", "Termly ICT audit for the governors", "head1", "verified",
		online.id, offline.id, "bash", string(q), "Signed off by Hana Head (head1)", "Checked in the console (e2e)"} {
		if !strings.Contains(text, want) {
			t.Errorf("audit PDF lacks %q:\n%s", want, text)
		}
	}

	// The record's views, sign-off and export are in the access log.
	seen := map[string]bool{}
	sc := bufio.NewScanner(strings.NewReader(mustRun(t, "vigil-collector", "access-log", "--data", c.data, "--json")))
	for sc.Scan() {
		var e struct{ Who, Action, Detail string }
		if err := json.Unmarshal(sc.Bytes(), &e); err != nil {
			t.Fatalf("access log line %q: %v", sc.Text(), err)
		}
		if e.Who == "head1" {
			seen[e.Action] = true
		}
	}
	for _, a := range []string{"request-audit", "view-audit", "sign-audit", "export-audit"} {
		if !seen[a] {
			t.Errorf("no %s by head1 in the access log (saw %v)", a, seen)
		}
	}
}
