package e2e

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// coverageCollector starts a collector that e-mails a real SMTP server
// (aiosmtpd on loopback) with working hours given, and a technician who
// has an address.
func coverageCollector(t *testing.T, hours string) (c *collector, maildir string) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import aiosmtpd").Run(); err != nil {
		t.Skip("python3-aiosmtpd is not installed (apt-get install python3-aiosmtpd)")
	}
	smtpAddr := freePort(t)
	maildir = filepath.Join(t.TempDir(), "mail")
	smtp := exec.Command("/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l", smtpAddr, "-c", "aiosmtpd.handlers.Mailbox", maildir)
	if err := smtp.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { smtp.Process.Kill(); smtp.Wait() })
	waitFor(t, 60*time.Second, "aiosmtpd listening", func() bool {
		cn, err := net.Dial("tcp", smtpAddr)
		if err == nil {
			cn.Close()
		}
		return err == nil
	})
	c = &collector{t: t, data: filepath.Join(t.TempDir(), "collector"), grpc: freePort(t), web: freePort(t)}
	c.p = start(t, "vigil-collector", "serve", "--data", c.data, "--grpc-listen", c.grpc, "--http-listen", c.web, "--heartbeat", "2s",
		"--smtp", smtpAddr, "--working-hours", hours, "--timezone", "UTC", "--log-level", "debug")
	waitFor(t, 60*time.Second, "collector admin socket", func() bool {
		_, _, code := run(t, "vigil-collector", "devices", "list", "--data", c.data, "--json")
		return code == 0
	})
	pw := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pw, []byte("correct horse battery staple 42\n"), 0o600)
	mustRun(t, "vigil-collector", "user", "add", "--data", c.data, "--username", "tech", "--role", "technician",
		"--password-file", pw, "--email", "tech@school.test")
	return c, maildir
}

type coverageReport struct {
	DeviceID string `json:"device_id"`
	State    string `json:"state"`
	Alarm    struct {
		Open       bool      `json:"open"`
		NotifiedAt time.Time `json:"notified_at"`
	} `json:"alarm"`
	Why string `json:"why"`
}

func coverageOf(t *testing.T, c *collector) map[string]coverageReport {
	t.Helper()
	out := mustRun(t, "vigil-collector", "devices", "coverage", "--data", c.data, "--json")
	m := map[string]coverageReport{}
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		var r coverageReport
		if err := json.Unmarshal([]byte(line), &r); err != nil {
			t.Fatalf("devices coverage line %q: %v", line, err)
		}
		m[r.DeviceID] = r
	}
	return m
}

// mailsAbout counts the e-mails that link to device's page.
func mailsAbout(t *testing.T, maildir, device string) int {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(maildir, "new", "*"))
	n := 0
	for _, f := range files {
		b, _ := os.ReadFile(f)
		if strings.Contains(string(b), "#/devices/"+device) {
			n++
		}
	}
	return n
}

func waitState(t *testing.T, c *collector, device, state string) coverageReport {
	t.Helper()
	var last coverageReport
	waitFor(t, 60*time.Second, fmt.Sprintf("device %s coverage %s", device, state), func() bool {
		last = coverageOf(t, c)[device]
		return last.State == state
	})
	return last
}

// watcherPasses waits until the coverage watcher has checked the fleet n
// more times (its debug log line).
func watcherPasses(t *testing.T, c *collector, n int) {
	t.Helper()
	const line = "coverage: fleet checked"
	from := strings.Count(c.p.log.String(), line)
	waitFor(t, 60*time.Second, fmt.Sprintf("%d more coverage passes", n), func() bool {
		return strings.Count(c.p.log.String(), line) >= from+n
	})
}

func waitDisconnected(t *testing.T, c *collector, device string) {
	t.Helper()
	waitFor(t, 60*time.Second, "collector notices "+device+" is gone", func() bool {
		for _, d := range c.devices() {
			if d.DeviceID == device {
				return !d.Connected
			}
		}
		return false
	})
}

// TestCoverageClassifiedAndMailed: real agents on loopback, each absent in
// its own way, during working hours that include now: a clean stop (SIGTERM:
// goodbye) is judged stopped and not e-mailed; an uninstall (the removal
// scripts' `vigil-agent goodbye --reason uninstall`), a crash loop (killed
// and restarted three times) and silence (killed, no goodbye) are each
// judged so and e-mailed to the technician once.
func TestCoverageClassifiedAndMailed(t *testing.T) {
	c, maildir := coverageCollector(t, "sun-sat 00:00-24:00")
	stopped, uninstalled, looping, silent := enrollAgent(t, c, "lab"), enrollAgent(t, c, "lab"), enrollAgent(t, c, "lab"), enrollAgent(t, c, "lab")
	for _, a := range []*agent{stopped, uninstalled, looping, silent} {
		a.start()
		waitState(t, c, a.id, "connected")
	}

	if err := stopped.p.stop(); err != nil {
		t.Fatalf("clean stop: %v", err)
	}
	r := waitState(t, c, stopped.id, "stopped")
	t.Logf("stopped: %s", r.Why)

	if err := uninstalled.p.stop(); err != nil {
		t.Fatal(err)
	}
	waitState(t, c, uninstalled.id, "stopped")
	out := mustRun(t, "vigil-agent", "goodbye", "--reason", "uninstall", "--state", uninstalled.state)
	t.Logf("goodbye: %s", strings.TrimSpace(out))
	r = waitState(t, c, uninstalled.id, "uninstalled")
	t.Logf("uninstalled: %s", r.Why)

	for i := 0; i < 3; i++ {
		looping.p.kill() // no orderly exit: the run record stays open
		waitDisconnected(t, c, looping.id)
		looping.start()
	}
	r = waitState(t, c, looping.id, "crash_loop")
	t.Logf("crash loop: %s", r.Why)

	silent.p.kill()
	r = waitState(t, c, silent.id, "silent")
	t.Logf("silent: %s", r.Why)

	for _, a := range []*agent{uninstalled, looping, silent} {
		waitFor(t, 60*time.Second, "alarm e-mail about "+a.id, func() bool { return mailsAbout(t, maildir, a.id) >= 1 })
	}
	// After several more passes of the watcher: still one e-mail each, and
	// none about the clean stop.
	watcherPasses(t, c, 3)
	for _, a := range []*agent{uninstalled, looping, silent} {
		if n := mailsAbout(t, maildir, a.id); n != 1 {
			t.Errorf("%d e-mails about %s, want 1", n, a.id)
		}
	}
	if n := mailsAbout(t, maildir, stopped.id); n != 0 {
		t.Errorf("a clean stop was e-mailed (%d)", n)
	}
	if cov := coverageOf(t, c)[stopped.id]; cov.State != "stopped" || cov.Alarm.Open {
		t.Errorf("clean stop: %+v", cov)
	}
	// The table form names each state.
	table := mustRun(t, "vigil-collector", "devices", "coverage", "--data", c.data)
	for _, s := range []string{"stopped", "uninstalled", "crash_loop", "silent"} {
		if !strings.Contains(table, s) {
			t.Errorf("devices coverage table lacks %s:\n%s", s, table)
		}
	}
}

// TestCoverageNoAlarmOutOfHours: the same silence (an agent killed, no
// goodbye) with working hours that exclude now is judged dormant and
// nobody is e-mailed.
func TestCoverageNoAlarmOutOfHours(t *testing.T) {
	h := (time.Now().UTC().Hour() + 12) % 24
	c, maildir := coverageCollector(t, fmt.Sprintf("sun-sat %02d:00-%02d:00", h, h+1))
	a := enrollAgent(t, c, "lab")
	a.start()
	waitState(t, c, a.id, "connected")
	a.p.kill()
	r := waitState(t, c, a.id, "dormant")
	t.Logf("dormant: %s", r.Why)
	watcherPasses(t, c, 3)
	if cov := coverageOf(t, c)[a.id]; cov.State != "dormant" || cov.Alarm.Open {
		t.Fatalf("out of hours: %+v", cov)
	}
	if n := mailsAbout(t, maildir, a.id); n != 0 {
		t.Fatalf("silence out of hours was e-mailed (%d)", n)
	}
}
