package e2e

import (
	"bufio"
	"context"
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The endpoint the shipped autostart entries rely on (no flag on their
// command line).
const defaultSessionSocket = "/run/vigil-agent/session.sock"

type osUser struct {
	name     string
	uid, gid int
	home     string
}

// makeUser creates a real unprivileged account, removed with its home at
// the end of the test.
func makeUser(t *testing.T, name string) osUser {
	t.Helper()
	exec.Command("userdel", "-r", name).Run() // left over from a killed run
	if out, err := exec.Command("useradd", "-m", "-s", "/bin/sh", name).CombinedOutput(); err != nil {
		t.Fatalf("useradd %s: %v %s", name, err, out)
	}
	t.Cleanup(func() {
		// The user's processes are gone by now (their Cleanups ran first).
		if out, err := exec.Command("userdel", "-r", name).CombinedOutput(); err != nil {
			t.Logf("userdel -r %s: %v %s", name, err, out)
		}
	})
	u, err := user.Lookup(name)
	if err != nil {
		t.Fatal(err)
	}
	uid, _ := strconv.Atoi(u.Uid)
	gid, _ := strconv.Atoi(u.Gid)
	return osUser{name: name, uid: uid, gid: gid, home: u.HomeDir}
}

// command runs name as u, with a login-like environment and nothing
// inherited from the (root) test process.
func (u osUser) command(env []string, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.SysProcAttr = &syscall.SysProcAttr{Credential: &syscall.Credential{Uid: uint32(u.uid), Gid: uint32(u.gid), Groups: []uint32{}}}
	cmd.Env = append([]string{"HOME=" + u.home, "USER=" + u.name, "LOGNAME=" + u.name,
		"PATH=/usr/local/bin:/usr/bin:/bin", "GORACE=atexit_sleep_ms=0"}, env...)
	cmd.Dir = u.home
	return cmd
}

// startAs starts a long-running process as u, killed at cleanup.
func startAs(t *testing.T, u osUser, env []string, label, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: label, log: &syncBuf{}, done: make(chan struct{})}
	p.cmd = u.command(env, name, args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s as %s: %v", label, u.name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if strings.Contains(p.log.String(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race", label)
		}
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", label, tail(p.log.String(), 4000))
		}
	})
	return p
}

// userDesktop starts Xvfb, openbox and an xterm as u, the way a rootless
// X server (GDM, startx, Xwayland) runs as the logged-in user: the X
// socket in /tmp/.X11-unix is u's. -ac lets other users connect to it, as
// an attacker's helper would try to.
func userDesktop(t *testing.T, u osUser, title string) (display, win string) {
	t.Helper()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	x := &proc{t: t, name: "Xvfb " + u.name, log: &syncBuf{}, done: make(chan struct{})}
	x.cmd = u.command(nil, "Xvfb", "-displayfd", "3", "-ac", "-screen", "0", "1024x768x24", "-nolisten", "tcp")
	x.cmd.ExtraFiles = []*os.File{wr}
	x.cmd.Stdout, x.cmd.Stderr = x.log, x.log
	if err := x.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	wr.Close()
	go func() { x.err = x.cmd.Wait(); close(x.done) }()
	t.Cleanup(func() {
		// SIGTERM lets Xvfb remove its socket and lock.
		x.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-x.done:
		case <-time.After(5 * time.Second):
			x.kill()
		}
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", x.name, tail(x.log.String(), 2000))
		}
	})
	num := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(rd).ReadString('\n')
		rd.Close()
		num <- strings.TrimSpace(line)
	}()
	select {
	case n := <-num:
		if n == "" {
			t.Fatalf("Xvfb as %s exited without reporting a display", u.name)
		}
		display = ":" + n
	case <-time.After(30 * time.Second):
		t.Fatalf("Xvfb as %s did not report a display within 30s", u.name)
	}
	env := []string{"DISPLAY=" + display}
	startAs(t, u, env, "openbox "+u.name, "openbox")
	waitFor(t, 30*time.Second, "window manager on "+display, func() bool {
		out, _ := xcmd(display, "xprop", "-root", "_NET_SUPPORTING_WM_CHECK").Output()
		return strings.Contains(string(out), "window id")
	})
	startAs(t, u, env, "xterm "+u.name, "xterm", "-T", title)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "xdotool", "search", "--sync", "--name", title)
	cmd.Env = append(os.Environ(), "DISPLAY="+display)
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("xterm of %s not found: %v", u.name, err)
	}
	win = strings.Fields(string(out))[0]
	if err := xcmd(display, "xdotool", "windowactivate", "--sync", win).Run(); err != nil {
		t.Fatal(err)
	}
	return display, win
}

// xcmd runs an X client as root (Xvfb -ac admits it) on display.
func xcmd(display, name string, args ...string) *exec.Cmd {
	cmd := exec.Command(name, args...)
	cmd.Env = append(os.Environ(), "DISPLAY="+display)
	return cmd
}

func setTitleOn(t *testing.T, display, win, title string) {
	t.Helper()
	if out, err := xcmd(display, "xdotool", "set_window", "--name", title, win).CombinedOutput(); err != nil {
		t.Fatalf("xdotool: %v %s", err, out)
	}
}

// autostartArgs is the helper's command line from the shipped XDG
// autostart entry, with the installed binary's path replaced by the one
// built for the test.
func autostartArgs(t *testing.T) []string {
	t.Helper()
	b, err := os.ReadFile("../installer/linux/vigil-session.desktop")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if exe, ok := strings.CutPrefix(line, "Exec="); ok {
			f := strings.Fields(exe)
			if f[0] != "/usr/bin/vigil-agent" {
				t.Fatalf("autostart Exec runs %s", f[0])
			}
			return f[1:]
		}
	}
	t.Fatal("no Exec= in the autostart entry")
	return nil
}

type userFinding struct {
	Check   string         `json:"check"`
	RuleID  string         `json:"rule_id"`
	User    string         `json:"user"`
	Details map[string]any `json:"details"`
}

func screenFindingsWithUser(t *testing.T, c *collector, device string) []userFinding {
	t.Helper()
	out := mustRun(t, "vigil-collector", "findings", "list", "--data", c.data, "--device", device, "--json")
	var fs []userFinding
	for _, line := range strings.Split(out, "\n") {
		if strings.TrimSpace(line) == "" {
			continue
		}
		var f userFinding
		if err := json.Unmarshal([]byte(line), &f); err != nil {
			t.Fatalf("finding %q: %v", line, err)
		}
		if f.Check == "screen" {
			fs = append(fs, f)
		}
	}
	return fs
}

// TestSessionHelperAsRealUser: the session helper started as an
// unprivileged user with the shipped autostart entry's command line (no
// flags, so the default endpoint) attaches to the service, and a keyword
// title on that user's desktop reaches the collector attributed to that
// user. A second user's helper pointed at the first user's display is
// refused (and says so), a forged report naming the first user is
// refused, and the second user's helper on their own desktop is
// attributed to the second user. The state dir stays owner-only.
func TestSessionHelperAsRealUser(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates users and runs processes as them")
	}
	need(t, "useradd", "userdel", "Xvfb", "openbox", "xterm", "xdotool", "xprop", "curl")
	if c, err := net.DialTimeout("unix", defaultSessionSocket, time.Second); err == nil {
		c.Close()
		t.Skipf("%s is served by another agent on this machine", defaultSessionSocket)
	}
	// The built binaries live in a 0700 temp dir: the users must run the
	// agent binary from it.
	if err := os.Chmod(binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	u1 := makeUser(t, "vigiltest1")
	u2 := makeUser(t, "vigiltest2")
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	a.start("--session-socket", defaultSessionSocket)
	agentLog := a.p.log

	// Modes: the runtime dir is traversable, the socket connectable, the
	// state dir still owner-only.
	for path, want := range map[string]os.FileMode{filepath.Dir(defaultSessionSocket): 0o755, a.state: 0o700} {
		fi, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != want {
			t.Errorf("%s mode %v, want %v", path, fi.Mode().Perm(), want)
		}
	}
	if fi, err := os.Stat(defaultSessionSocket); err != nil || fi.Mode().Perm() != 0o666 || fi.Mode()&os.ModeSocket == 0 {
		t.Errorf("session socket: %v %v, want a 0666 socket", fi, err)
	}

	d1, w1 := userDesktop(t, u1, "Homework - Notes")
	helper1 := startAs(t, u1, []string{"DISPLAY=" + d1}, "helper vigiltest1", filepath.Join(binDir, "vigil-agent"), autostartArgs(t)...)
	waitFor(t, 60*time.Second, "vigiltest1's helper attached", func() bool {
		return strings.Contains(helper1.log.String(), "attached to the agent service") &&
			strings.Contains(agentLog.String(), `msg="session helper attached" user=vigiltest1`)
	})
	if strings.Contains(helper1.log.String(), "permission denied") {
		t.Errorf("helper as vigiltest1 got permission denied:\n%s", helper1.log.String())
	}

	setTitleOn(t, d1, w1, "how to kill myself - Google Search")
	var first userFinding
	waitFor(t, 60*time.Second, "vigiltest1's screen finding at the collector", func() bool {
		for _, f := range screenFindingsWithUser(t, c, a.id) {
			if f.Details["term"] == "kill myself" {
				first = f
				return true
			}
		}
		return false
	})
	if first.User != "vigiltest1" {
		t.Errorf("finding attributed to %q, want vigiltest1: %+v", first.User, first)
	}

	// vigiltest1's helper goes; vigiltest2 points a helper at vigiltest1's
	// display (Xvfb -ac lets it read that screen).
	helper1.kill()
	waitFor(t, 30*time.Second, "vigiltest1's helper detached", func() bool {
		return strings.Contains(agentLog.String(), `msg="session helper detached" user=vigiltest1`)
	})
	intruder := startAs(t, u2, []string{"DISPLAY=" + d1}, "helper vigiltest2 on "+d1, filepath.Join(binDir, "vigil-agent"), autostartArgs(t)...)
	waitFor(t, 60*time.Second, "the intruding helper refused", func() bool {
		return strings.Contains(intruder.log.String(), "refused this session helper") &&
			strings.Contains(agentLog.String(), "is the graphical session of user vigiltest1, not of vigiltest2")
	})
	if strings.Contains(agentLog.String(), `msg="session helper attached" user=vigiltest2`) {
		t.Errorf("vigiltest2's helper was admitted for vigiltest1's display")
	}
	setTitleOn(t, d1, w1, "how to end my life - attack")

	// A report written by hand, naming vigiltest1, is refused: the process
	// never attached, and no field of a report names a user anyway.
	cmd := u2.command(nil, "curl", "-sS", "-o", "/dev/null", "-w", "%{http_code}", "--unix-socket", defaultSessionSocket,
		"-X", "POST", "-d", `{"title":"how to end my life - forged","user":"vigiltest1","uid":`+strconv.Itoa(u1.uid)+`}`,
		"http://vigil-agent/v1/session/observe")
	out, err := cmd.Output()
	if err != nil || string(out) != "403" {
		t.Errorf("forged observation as vigiltest2: %q %v, want 403", out, err)
	}

	// vigiltest2's own desktop and helper: attributed to vigiltest2.
	d2, w2 := userDesktop(t, u2, "Revision - Notes")
	helper2 := startAs(t, u2, []string{"DISPLAY=" + d2}, "helper vigiltest2", filepath.Join(binDir, "vigil-agent"), autostartArgs(t)...)
	waitFor(t, 60*time.Second, "vigiltest2's helper attached", func() bool {
		return strings.Contains(helper2.log.String(), "attached to the agent service")
	})
	setTitleOn(t, d2, w2, "how to end my life - own desktop")
	waitFor(t, 60*time.Second, "vigiltest2's screen finding", func() bool {
		for _, f := range screenFindingsWithUser(t, c, a.id) {
			if f.Details["term"] == "end my life" {
				return true
			}
		}
		return false
	})
	for _, f := range screenFindingsWithUser(t, c, a.id) {
		title, _ := f.Details["title"].(string)
		switch {
		case strings.HasSuffix(title, "attack") || strings.HasSuffix(title, "forged"):
			t.Errorf("a refused helper's report was recorded: %+v", f)
		case strings.HasSuffix(title, "own desktop") && f.User != "vigiltest2":
			t.Errorf("vigiltest2's finding attributed to %q", f.User)
		}
	}
	if n := strings.Count(intruder.log.String(), "refused this session helper"); n != 1 {
		t.Errorf("the refused helper logged its refusal %d times, want once", n)
	}
}

// TestSessionHelperMissing: a user's graphical session with no helper
// attached is reported (check session, rule session-helper-missing,
// status fail, that user) once the grace period has passed, and passes
// again when the user's helper attaches.
func TestSessionHelperMissing(t *testing.T) {
	if os.Geteuid() != 0 {
		t.Skip("needs root: creates a user and runs processes as them")
	}
	need(t, "useradd", "userdel", "Xvfb", "openbox", "xterm", "xdotool", "xprop")
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
	u := makeUser(t, "vigiltest3")
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	a.start("--rules", rulesDir)
	d, _ := userDesktop(t, u, "Homework - Notes")
	status := func(want string) func() bool {
		return func() bool {
			out := mustRun(t, "vigil-collector", "findings", "list", "--data", c.data, "--device", a.id, "--json")
			for _, line := range strings.Split(out, "\n") {
				var f struct {
					Check, Status, User string
					RuleID              string `json:"rule_id"`
				}
				if json.Unmarshal([]byte(line), &f) == nil && f.Check == "session" && f.RuleID == "session-helper-missing" &&
					f.Status == want && f.User == u.name {
					return true
				}
			}
			return false
		}
	}
	waitFor(t, 60*time.Second, "session-helper-missing fail for "+u.name, status("fail"))
	// The harness's socket is under the test's 0700 temp dirs: open the
	// path to the user (the service makes the socket's own dir 0755).
	for dir := filepath.Dir(filepath.Dir(a.sock)); dir != os.TempDir() && dir != "/"; dir = filepath.Dir(dir) {
		if err := os.Chmod(dir, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	args := append(autostartArgs(t), "--session-socket", a.sock)
	startAs(t, u, []string{"DISPLAY=" + d}, "helper "+u.name, filepath.Join(binDir, "vigil-agent"), args...)
	waitFor(t, 60*time.Second, "session-helper-missing pass for "+u.name, status("pass"))
}
