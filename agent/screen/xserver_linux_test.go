//go:build linux

package screen

// Test helper: a real X server (Xvfb) with a real window manager (openbox),
// real clients (xterm) and xdotool to drive them. See /work/shared/TESTING.md.

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// liveness bounds every wait on the X session: Xvfb, openbox, xterm and
// xdotool are real processes, and on a busy 2-core CI machine each can take
// seconds to start or react. The bound only says "it happened at all";
// latencies are logged (and measured in benchmarks), never asserted.
const liveness = 30 * time.Second

// xEnv is one private X session: Xvfb :N, openbox, and the clients a test
// starts. Everything is stopped by the test's cleanup.
type xEnv struct {
	Display string
	dir     string
	env     []string
	xvfb    *exec.Cmd
	xvfbEnd chan struct{}
}

// requireTools skips the test when a tool is missing on a developer machine,
// and fails it in CI (CI=true), where .ci/run must have installed it.
func requireTools(tb testing.TB, tools ...string) {
	tb.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			if os.Getenv("CI") == "" {
				tb.Skipf("%s not installed (apt-get install xvfb xauth xdotool x11-utils xterm openbox): %v", tool, err)
			}
			tb.Fatalf("%s not installed but CI is set: %v", tool, err)
		}
	}
}

// startX starts Xvfb on a free display in :90..:120 and openbox on it, and
// waits until the window manager has set _NET_SUPPORTING_WM_CHECK.
func startX(tb testing.TB) *xEnv {
	tb.Helper()
	requireTools(tb, "Xvfb", "openbox", "xterm", "xdotool")
	// Open refuses Wayland sessions; the test session is X11.
	tb.Setenv("WAYLAND_DISPLAY", "")
	tb.Setenv("XDG_SESSION_TYPE", "")

	dir := tb.TempDir()
	for _, d := range []string{"home", "tmp", "config", "cache", "data", "runtime"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o700); err != nil {
			tb.Fatal(err)
		}
	}
	x := &xEnv{dir: dir}
	base := []string{
		"PATH=" + os.Getenv("PATH"),
		"HOME=" + filepath.Join(dir, "home"),
		"TMPDIR=" + filepath.Join(dir, "tmp"),
		"XDG_CONFIG_HOME=" + filepath.Join(dir, "config"),
		"XDG_CACHE_HOME=" + filepath.Join(dir, "cache"),
		"XDG_DATA_HOME=" + filepath.Join(dir, "data"),
		"XDG_RUNTIME_DIR=" + filepath.Join(dir, "runtime"),
		"LANG=C.UTF-8",
	}

	for n := 90; n <= 120 && x.Display == ""; n++ {
		if fileExists(fmt.Sprintf("/tmp/.X11-unix/X%d", n)) || fileExists(fmt.Sprintf("/tmp/.X%d-lock", n)) {
			continue
		}
		disp := ":" + strconv.Itoa(n)
		logf, err := os.Create(filepath.Join(dir, "xvfb"+strconv.Itoa(n)+".log"))
		if err != nil {
			tb.Fatal(err)
		}
		cmd := exec.Command("Xvfb", disp, "-screen", "0", "1280x800x24", "-nolisten", "tcp")
		cmd.Env = base
		cmd.Stdout, cmd.Stderr = logf, logf
		cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
		if err := cmd.Start(); err != nil {
			logf.Close()
			tb.Fatalf("start Xvfb: %v", err)
		}
		end := make(chan struct{})
		go func() { cmd.Wait(); logf.Close(); close(end) }()
		if waitServer(n, cmd.Process.Pid, end, liveness) {
			x.Display, x.xvfb, x.xvfbEnd = disp, cmd, end
			break
		}
		// Lost a race for this display number, or Xvfb failed: try the next.
		stopCmd(cmd, end)
	}
	if x.Display == "" {
		tb.Fatal("no free X display in :90..:120")
	}
	tb.Cleanup(func() {
		stopCmd(x.xvfb, x.xvfbEnd)
		x.removeStaleLock()
	})
	x.env = append(base, "DISPLAY="+x.Display, "XAUTHORITY="+filepath.Join(dir, "home", ".Xauthority"))

	// The server accepts connections once the socket exists; retry briefly.
	var c *xgb.Conn
	deadline := time.Now().Add(liveness)
	for {
		var err error
		if c, err = xgb.NewConnDisplay(x.Display); err == nil {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("connect to Xvfb %s: %v", x.Display, err)
		}
		time.Sleep(20 * time.Millisecond)
	}
	defer c.Close()

	x.start(tb, "openbox", "--sm-disable")
	check := internAtom(tb, c, "_NET_SUPPORTING_WM_CHECK")
	root := xproto.Setup(c).DefaultScreen(c).Root
	deadline = time.Now().Add(liveness)
	for {
		r, err := xproto.GetProperty(c, false, root, check, xproto.AtomWindow, 0, 1).Reply()
		if err == nil && r.ValueLen > 0 {
			break
		}
		if time.Now().After(deadline) {
			tb.Fatalf("openbox did not set _NET_SUPPORTING_WM_CHECK within %v", liveness)
		}
		time.Sleep(20 * time.Millisecond)
	}
	return x
}

func fileExists(p string) bool {
	_, err := os.Lstat(p)
	return err == nil
}

// waitServer waits until our Xvfb (pid) owns display n: its lock file names
// pid and the socket exists. Another Xvfb that won a race for the same number
// also creates the socket, so the socket alone proves nothing.
func waitServer(n, pid int, end <-chan struct{}, timeout time.Duration) bool {
	deadline := time.Now().Add(timeout)
	for time.Now().Before(deadline) {
		select {
		case <-end:
			return false
		default:
		}
		if lockPID(n) == pid && fileExists(fmt.Sprintf("/tmp/.X11-unix/X%d", n)) {
			return true
		}
		time.Sleep(10 * time.Millisecond)
	}
	return false
}

// lockPID returns the PID in /tmp/.Xn-lock, or 0.
func lockPID(n int) int {
	b, err := os.ReadFile(fmt.Sprintf("/tmp/.X%d-lock", n))
	if err != nil {
		return 0
	}
	pid, _ := strconv.Atoi(strings.TrimSpace(string(b)))
	return pid
}

// stopCmd terminates a process group started with Setpgid and waits (bounded).
func stopCmd(cmd *exec.Cmd, end <-chan struct{}) {
	select {
	case <-end:
		return
	default:
	}
	syscall.Kill(-cmd.Process.Pid, syscall.SIGTERM)
	select {
	case <-end:
	case <-time.After(3 * time.Second):
		syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		select {
		case <-end:
		case <-time.After(3 * time.Second):
		}
	}
}

// start runs a long-lived client in the session; it is stopped at cleanup.
func (x *xEnv) start(tb testing.TB, name string, args ...string) *exec.Cmd {
	tb.Helper()
	logf, err := os.CreateTemp(x.dir, name+"-*.log")
	if err != nil {
		tb.Fatal(err)
	}
	cmd := exec.Command(name, args...)
	cmd.Env = x.env
	cmd.Dir = filepath.Join(x.dir, "home")
	cmd.Stdout, cmd.Stderr = logf, logf
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := cmd.Start(); err != nil {
		logf.Close()
		tb.Fatalf("start %s: %v", name, err)
	}
	end := make(chan struct{})
	go func() { cmd.Wait(); logf.Close(); close(end) }()
	tb.Cleanup(func() { stopCmd(cmd, end) })
	return cmd
}

// run runs a short command (xdotool) with a time bound and returns its output.
func (x *xEnv) run(tb testing.TB, name string, args ...string) string {
	tb.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), liveness)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Env = x.env
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		tb.Fatalf("%s %s: %v: %s", name, strings.Join(args, " "), err, stderr.String())
	}
	return string(out)
}

type xterm struct {
	id  uint32
	pid int
}

func (w xterm) String() string { return strconv.FormatUint(uint64(w.id), 10) }

// xterm starts an xterm titled title (running sleep, so no shell rewrites
// the title) and returns its top-level window.
func (x *xEnv) xterm(tb testing.TB, title string, extra ...string) xterm {
	tb.Helper()
	args := append([]string{"-T", title}, extra...)
	args = append(args, "-e", "sleep", "600")
	cmd := x.start(tb, "xterm", args...)
	out := x.run(tb, "xdotool", "search", "--sync", "--limit", "1", "--name", "^"+title+"$")
	id, err := strconv.ParseUint(strings.TrimSpace(strings.SplitN(out, "\n", 2)[0]), 10, 32)
	if err != nil {
		tb.Fatalf("xdotool search %q: %q: %v", title, out, err)
	}
	return xterm{id: uint32(id), pid: cmd.Process.Pid}
}

// activate makes w the active window and waits until the WM has done so.
func (x *xEnv) activate(tb testing.TB, w xterm) {
	tb.Helper()
	x.run(tb, "xdotool", "windowactivate", "--sync", w.String())
}

// removeStaleLock removes the lock file and socket a killed Xvfb leaves
// behind, only if the lock names our (now dead) Xvfb.
func (x *xEnv) removeStaleLock() {
	n, err := strconv.Atoi(strings.TrimPrefix(x.Display, ":"))
	if err != nil || lockPID(n) != x.xvfb.Process.Pid {
		return
	}
	os.Remove(fmt.Sprintf("/tmp/.X11-unix/X%d", n))
	os.Remove(fmt.Sprintf("/tmp/.X%d-lock", n))
}

// killServer kills Xvfb, to test connection loss.
func (x *xEnv) killServer() {
	syscall.Kill(-x.xvfb.Process.Pid, syscall.SIGKILL)
	select {
	case <-x.xvfbEnd:
	case <-time.After(liveness):
	}
}

// conn opens a second X connection for the test itself.
func (x *xEnv) conn(tb testing.TB) *xgb.Conn {
	tb.Helper()
	c, err := xgb.NewConnDisplay(x.Display)
	if err != nil {
		tb.Fatal(err)
	}
	return c
}

func internAtom(tb testing.TB, c *xgb.Conn, name string) xproto.Atom {
	tb.Helper()
	r, err := xproto.InternAtom(c, false, uint16(len(name)), name).Reply()
	if err != nil {
		tb.Fatal(err)
	}
	return r.Atom
}

// recorder collects what Watch reports, with arrival times.
type recorder struct {
	ch    chan struct{}
	mu    sync.Mutex
	ev    []watchEvent
	ended error // set when Watch returned
}

// end records that Watch returned err (nil means it returned nil).
func (r *recorder) end(err error) {
	r.mu.Lock()
	r.ended = fmt.Errorf("Watch returned: %v", err)
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

type watchEvent struct {
	w  Window
	at time.Time
}

func newRecorder() *recorder {
	return &recorder{ch: make(chan struct{}, 1)}
}

func (r *recorder) fn(w Window) {
	r.mu.Lock()
	r.ev = append(r.ev, watchEvent{w, time.Now()})
	r.mu.Unlock()
	select {
	case r.ch <- struct{}{}:
	default:
	}
}

// mark returns the number of reports so far, for waitFor's from.
func (r *recorder) mark() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return len(r.ev)
}

func (r *recorder) since(from int) []watchEvent {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]watchEvent(nil), r.ev[from:]...)
}

var errNotSeen = errors.New("not reported")

// waitFor returns the first report at index >= from that matches, waiting at
// most timeout.
func (r *recorder) waitFor(from int, timeout time.Duration, match func(Window) bool) (watchEvent, error) {
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		for _, e := range r.since(from) {
			if match(e.w) {
				return e, nil
			}
		}
		r.mu.Lock()
		ended := r.ended
		r.mu.Unlock()
		if ended != nil {
			return watchEvent{}, fmt.Errorf("%w: %v", errNotSeen, ended)
		}
		select {
		case <-r.ch:
		case <-deadline.C:
			return watchEvent{}, errNotSeen
		}
	}
}
