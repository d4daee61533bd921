package e2e

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"os/user"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// startWine runs a Windows program under w's prefix with extra env, killed
// at cleanup (before newWine's wineserver -k, which t.Cleanup's LIFO order
// gives).
func startWine(t *testing.T, w *wineEnv, env []string, label string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: label, log: &syncBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command("wine", args...)
	p.cmd.Env = append(append([]string{}, w.env...), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", label, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", label, tail(p.log.String(), 4000))
		}
	})
	return p
}

// wineXvfb starts an Xvfb for Wine's windows; Xvfb picks a free display
// itself (-displayfd), so parallel runs cannot collide.
func wineXvfb(t *testing.T) string {
	t.Helper()
	rd, wr, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	x := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "1280x800x24", "-nolisten", "tcp")
	x.ExtraFiles = []*os.File{wr}
	if err := x.Start(); err != nil {
		t.Fatalf("start Xvfb: %v", err)
	}
	wr.Close()
	t.Cleanup(func() { x.Process.Kill(); x.Wait() })
	num := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(rd).ReadString('\n')
		rd.Close()
		num <- strings.TrimSpace(s)
	}()
	select {
	case n := <-num:
		if _, err := strconv.Atoi(n); err != nil {
			t.Fatalf("Xvfb -displayfd gave %q", n)
		}
		return ":" + n
	case <-time.After(60 * time.Second):
		t.Fatal("Xvfb did not report a display within 60 s")
	}
	return ""
}

// buildWindows cross-builds a Windows program of this module.
func buildWindows(t *testing.T, pkg, name string) string {
	t.Helper()
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-o", out, pkg)
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS=windows", "GOARCH=amd64")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build %s for Windows: %v\n%s", pkg, err, b)
	}
	return out
}

// TestWindowsAgentUnderWine: the Windows build of the agent, run under
// Wine as it is deployed (vigil-agent.exe enroll with a token, then run,
// the service's process, in the foreground), against the Linux collector
// on loopback. It enrolls, is seen connected with its version, its
// scheduled selftest is stored, and a selftest requested by the collector
// goes down the control stream and comes back through the agent's spool;
// `vigil-agent.exe status` reaches it over its control pipe. Then, in a
// subtest, the per-user session helper (vigil-agent.exe session) on its
// own Xvfb reaches the service's named pipe; the rest of the screen path
// (a keyword title of another Windows process's window, its screen
// finding attributed to the Wine user) runs where the service admits the
// helper, which Wine 8 prevents (see windowsSessionUnderWine).
func TestWindowsAgentUnderWine(t *testing.T) {
	w := newWine(t) // skips when wine or mingw (for the stub DLL) is missing
	c := newPkgCollector(t)
	exe := buildAgent(t, "windows", "1.0.0")
	b := make([]byte, 6)
	rand.Read(b)
	// A pipe name of this run's own: the default one would be shared with
	// any other agent in the same wineserver.
	pipe := `\\.\pipe\vigil-e2e-` + hex.EncodeToString(b)
	const state = `C:\vigil-e2e\agent`

	out, err := w.run(exe, "enroll", "--collector", c.grpc, "--token", c.token("pupils"), "--state", state)
	// "enrolled: device ID in group G"
	fields := strings.Fields(out)
	if err != nil || len(fields) < 3 || fields[0] != "enrolled:" {
		t.Fatalf("enroll under Wine: %v\n%s", err, out)
	}
	device := fields[2]
	if _, err := os.Stat(w.drive("vigil-e2e/agent/config.json")); err != nil {
		t.Errorf("enrollment wrote no device identity in C:\\vigil-e2e\\agent: %v", err)
	}

	// The service's process and the helper draw nothing, but the helper's
	// screen source and the keyword window need an X display.
	need(t, "Xvfb")
	display := wineXvfb(t)
	env := []string{"DISPLAY=" + display}
	agent := startWine(t, w, env, "vigil-agent.exe run", exe, "run", "--state", state, "--session-socket", pipe, "--backoff-max", "2s", "--log-level", "debug")
	waitFor(t, 180*time.Second, "the Windows agent connected at the collector", func() bool {
		for _, d := range c.devices() {
			if d.DeviceID == device && d.Connected && d.AgentVersion == "1.0.0" && d.RulesHash != "" {
				return true
			}
		}
		return false
	})
	// The local CLI reaches the running agent over its control pipe.
	waitFor(t, 120*time.Second, "vigil-agent.exe status to say connected", func() bool {
		out, err := w.run(exe, "status", "--state", state)
		i := strings.Index(out, "{")
		var st agentStatus
		return err == nil && i >= 0 && json.Unmarshal([]byte(out[i:]), &st) == nil && st.Uplink.Connected
	})
	waitFor(t, 120*time.Second, "the Windows agent's scheduled selftest stored", func() bool {
		for _, f := range c.findings(device) {
			if f.Check == "selftest" {
				return true
			}
		}
		return false
	})
	// A selftest asked for by the collector: down the control stream,
	// through the engine and the spool under Wine, back to the store.
	if out, errOut, code := run(t, "vigil-collector", "agent", "request", "--data", c.data, "--device", device, "--kind", "selftest", "--timeout", "2m"); code != 0 {
		t.Fatalf("agent request selftest: exit %d: %s %s", code, out, errOut)
	}
	waitFor(t, 120*time.Second, "the collector-requested selftest stored", func() bool {
		for _, f := range c.findings(device) {
			if f.Check == "selftest" && f.Details["trigger"] == "collector" {
				return true
			}
		}
		return false
	})

	t.Run("session helper through the named pipe", func(t *testing.T) {
		windowsSessionUnderWine(t, w, c, exe, device, env, agent, pipe)
	})
}

// noWTSSessions is the service's refusal when its WTS probe lists no
// interactive session for the helper's user.
const noWTSSessions = "has no graphical session on this machine"

// windowsSessionUnderWine: the session helper, as the per-user autostart
// entry runs it, reaches the service's named pipe and is identified from
// its process token; then a keyword window title becomes a screen finding
// at the collector. Wine 8 stops the second half: its
// WTSEnumerateSessionsW is a stub that lists no sessions at all (real
// Windows always lists at least session 0), so the service's WTS probe
// finds no interactive session for the user and refuses the helper, as
// Windows would with nobody logged on. That refusal is checked (it names
// the user read from the pipe client's token) and the rest is skipped.
func windowsSessionUnderWine(t *testing.T, w *wineEnv, c *collector, exe, device string, env []string, agent *proc, pipe string) {
	waitFor(t, 120*time.Second, "the Windows agent's session pipe", func() bool {
		return strings.Contains(agent.log.String(), "session endpoint ready")
	})
	me, err := user.Current()
	if err != nil {
		t.Fatal(err)
	}
	// Wine's account is the Unix user's name, reported as DOMAIN\name.
	isMe := func(name string) bool {
		name = strings.ToLower(name)
		return name == strings.ToLower(me.Username) || strings.HasSuffix(name, `\`+strings.ToLower(me.Username))
	}
	helper := startWine(t, w, env, "vigil-agent.exe session", exe, "session", "--session-socket", pipe, "--log-level", "debug")
	attached := func() bool {
		return strings.Contains(helper.log.String(), "attached to the agent service") &&
			strings.Contains(agent.log.String(), `msg="session helper attached"`)
	}
	refused := func() bool {
		return strings.Contains(helper.log.String(), "refused this session helper") &&
			strings.Contains(agent.log.String(), noWTSSessions)
	}
	waitFor(t, 180*time.Second, "the helper attached through the pipe (or refused)", func() bool { return attached() || refused() })
	if !attached() {
		// The refusal came over the pipe, from the service, about the
		// identity it read from the helper process's token.
		var who string
		for _, line := range strings.Split(agent.log.String(), "\n") {
			if strings.Contains(line, `msg="session helper refused"`) && strings.Contains(line, noWTSSessions) {
				if i := strings.Index(line, " user="); i >= 0 {
					who = strings.Fields(line[i+len(" user="):])[0]
				}
				break
			}
		}
		if !isMe(who) {
			t.Fatalf("the service identified the helper as %q, want the Wine user (%s)", who, me.Username)
		}
		t.Skipf("Wine 8's WTSEnumerateSessionsW lists no sessions, so the service (identifying the helper as %s over the pipe) "+
			"refused it with %q: the keyword window and its screen finding cannot be tested under Wine", who, noWTSSessions)
	}

	// The keyword window: another Windows process, so the source (which
	// skips its own process's events) reports it as it would a browser's.
	// It opens with a benign title and is retitled once the helper runs,
	// as a pupil's browser would be on a search.
	win := startWinwindow(t, w, env, buildWindows(t, "../internal/testutil/winwindow/cmd/winwindow", "winwindow.exe"), "Homework - Notes")
	const title = "how to kill myself - Google Search"
	win.command(t, "title "+title)
	var got userFinding
	waitFor(t, 180*time.Second, "the keyword title's screen finding at the collector", func() bool {
		for _, f := range screenFindingsWithUser(t, c, device) {
			if f.Details["term"] == "kill myself" {
				got = f
				return true
			}
		}
		return false
	})
	if !isMe(got.User) {
		t.Errorf("finding attributed to %q, want the Wine user (%s): %+v", got.User, me.Username, got)
	}
	if s, _ := got.Details["title"].(string); s != title {
		t.Errorf("finding title %q, want %q", s, title)
	}
	for _, f := range screenFindingsWithUser(t, c, device) {
		if s, _ := f.Details["title"].(string); s == "Homework - Notes" {
			t.Errorf("the benign title made a finding: %+v", f)
		}
	}
	t.Logf("finding: user %q, details %v", got.User, got.Details)
}

// winwindowProc is winwindow.exe under Wine, driven over its stdin (EOF
// closes its window).
type winwindowProc struct {
	p     *proc
	in    io.WriteCloser
	lines chan string
}

func startWinwindow(t *testing.T, w *wineEnv, env []string, exe, title string) *winwindowProc {
	t.Helper()
	p := &proc{t: t, name: "winwindow.exe", log: &syncBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command("wine", exe, title)
	p.cmd.Env = append(append([]string{}, w.env...), env...)
	p.cmd.Stderr = p.log
	in, err := p.cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start winwindow.exe: %v", err)
	}
	ww := &winwindowProc{p: p, in: in, lines: make(chan string, 16)}
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := strings.TrimRight(sc.Text(), "\r")
			p.log.Write([]byte(line + "\n"))
			ww.lines <- line
		}
		close(ww.lines)
	}()
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		in.Close()
		p.kill()
		if t.Failed() {
			t.Logf("--- winwindow.exe log ---\n%s", tail(p.log.String(), 4000))
		}
	})
	ww.expect(t, "ready ")
	return ww
}

// expect waits for the next line of the window's output, which must start
// with prefix.
func (ww *winwindowProc) expect(t *testing.T, prefix string) {
	t.Helper()
	select {
	case line, ok := <-ww.lines:
		if !ok {
			t.Fatalf("winwindow.exe exited (%v) before %q", ww.p.err, prefix)
		}
		if !strings.HasPrefix(line, prefix) {
			t.Fatalf("winwindow.exe said %q, want %q", line, prefix)
		}
	case <-time.After(3 * minWait):
		t.Fatalf("winwindow.exe did not say %q within %v", prefix, 3*minWait)
	}
}

func (ww *winwindowProc) command(t *testing.T, cmd string) {
	t.Helper()
	if _, err := io.WriteString(ww.in, cmd+"\n"); err != nil {
		t.Fatalf("winwindow.exe %q: %v", cmd, err)
	}
	ww.expect(t, "ok")
}
