package e2e

import (
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"
)

// TestServiceInstallStartStop installs the agent as an OS service through
// kardianos/service, starts it through the service manager, sees the same
// `run` code answer on its control socket and deliver a finding, then stops
// and uninstalls it. It needs root and a SysV init directory (this machine
// has no systemd, so kardianos picks SysV); elsewhere it skips.
func TestServiceInstallStartStop(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("service install needs root")
	}
	if _, err := os.Stat("/run/systemd/system"); err == nil {
		t.Skip("systemd host: not touching real units from a test")
	}
	if _, err := os.Stat("/etc/init.d"); err != nil {
		t.Skip("no /etc/init.d")
	}
	if _, err := os.Stat("/etc/init.d/vigil-agent"); err == nil {
		t.Skip("a vigil-agent service is already installed on this machine")
	}
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	mustRun(t, "vigil-agent", "install", "--state", a.state)
	t.Cleanup(func() {
		run(t, "vigil-agent", "stop", "--state", a.state)
		run(t, "vigil-agent", "uninstall", "--state", a.state)
		exec.Command("pkill", "-f", "vigil-agent run --state "+a.state).Run()
	})
	script, err := os.ReadFile("/etc/init.d/vigil-agent")
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(script), `"run" "--state" "`+a.state+`"`) {
		t.Fatalf("service does not run `vigil-agent run --state`:\n%s", script)
	}
	mustRun(t, "vigil-agent", "start", "--state", a.state)
	waitFor(t, 20*time.Second, "service-started agent answering", func() bool {
		_, _, code := run(t, "vigil-agent", "status", "--state", a.state)
		return code == 0
	})
	r, err := a.trigger(1, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "finding from the service-run agent", func() bool { return len(triggered(c.findings(a.id), r.Nonce)) == 1 })
	mustRun(t, "vigil-agent", "stop", "--state", a.state)
	waitFor(t, 20*time.Second, "service stopped", func() bool {
		_, _, code := run(t, "vigil-agent", "status", "--state", a.state)
		return code != 0
	})
	mustRun(t, "vigil-agent", "uninstall", "--state", a.state)
	if _, err := os.Stat("/etc/init.d/vigil-agent"); err == nil {
		t.Fatal("uninstall left /etc/init.d/vigil-agent")
	}
}
