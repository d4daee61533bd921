package e2e

import (
	"bufio"
	"encoding/json"
	"fmt"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// Screen monitoring benchmarks: a real Xvfb + openbox + xterm desktop, a
// real collector, an enrolled agent service run with a rules folder holding
// the default screen rule (repeat_after lowered to 1ms so that every change
// back to a term title is a new finding) and its keyword libraries, and the
// session helper on the display. Binaries are built without -race, as in
// BenchmarkAgentIdle. Titles are set from Go over the X protocol
// (ChangeProperty of _NET_WM_NAME and WM_NAME on the xterm window), which is
// cheaper and more precise than starting xdotool per change.
//
// Each measurement is made once per call whatever b.N is; run them with
// -benchtime=1x:
//
//	go test -run='^$' -bench='BenchmarkTitleToFinding|BenchmarkScreenMonitoringCost' -benchtime=1x ./e2e/
//	VIGIL_SCREEN_SECONDS=300 go test -run='^$' -bench=BenchmarkScreenMonitoringCost -benchtime=1x ./e2e/

const (
	sbChanges = 100                    // term title changes in BenchmarkTitleToFinding
	sbSpacing = 300 * time.Millisecond // between term changes (a benign title half way)
)

// BenchmarkTitleToFinding measures the latency from a window title change
// (t0 just before the X request) to the finding's observed_at, which the
// agent service sets when it records the finding in its spool: after the
// screenshot has arrived on the "screenshot" path, straight after the match
// on the "no_screenshot" path (the rule's screenshot: false).
func BenchmarkTitleToFinding(b *testing.B) {
	sbSkip(b)
	b.StopTimer()
	bins := sbBuild(b, false)
	for _, shot := range []bool{true, false} {
		name := "screenshot"
		if !shot {
			name = "no_screenshot"
		}
		b.Run(name, func(b *testing.B) {
			b.StopTimer()
			env := sbSetup(b, bins, shot)
			var r sbLatency
			b.StartTimer()
			for i := 0; i < b.N; i++ {
				if i == 0 {
					r = sbMeasureLatency(b, env, shot)
				}
			}
			b.StopTimer()
			b.ReportMetric(0, "ns/op")
			b.ReportMetric(r.p50, "p50_ms")
			b.ReportMetric(r.p99, "p99_ms")
			b.ReportMetric(r.max, "max_ms")
			b.ReportMetric(float64(r.found), "findings")
			b.Logf("%s: %d/%d term title changes gave a finding (%d with a screenshot); title → finding p50 %.1f ms p99 %.1f ms min %.1f ms max %.1f ms",
				name, r.found, sbChanges, r.shots, r.p50, r.p99, r.min, r.max)
		})
	}
}

type sbLatency struct {
	found, shots       int
	p50, p99, min, max float64 // ms
}

func sbMeasureLatency(b *testing.B, env *sbEnv, shot bool) sbLatency {
	b.Helper()
	t0 := make(map[string]time.Time, sbChanges)
	start := time.Now().Add(100 * time.Millisecond)
	for i := 0; i < sbChanges; i++ {
		slot := start.Add(time.Duration(i) * sbSpacing)
		time.Sleep(time.Until(slot))
		env.desk.setTitle(b, fmt.Sprintf("maths homework %d - Google Docs", i))
		time.Sleep(time.Until(slot.Add(sbSpacing / 2)))
		title := fmt.Sprintf("how to kill myself %d - Google Search", i)
		t0[title] = env.desk.setTitle(b, title)
	}
	// Back to a benign title; then wait for the findings to reach the
	// collector (a screenshot that never comes costs EvidenceWait, 3 s).
	time.Sleep(sbSpacing / 2)
	env.desk.setTitle(b, "maths homework done - Google Docs")
	var fs []sbFinding
	deadline := time.Now().Add(30 * time.Second)
	for {
		fs = env.screenFindings(b)
		n := 0
		for _, f := range fs {
			if _, ok := t0[f.title()]; ok {
				n++
			}
		}
		if n >= sbChanges || time.Now().After(deadline) {
			break
		}
		time.Sleep(500 * time.Millisecond)
	}
	// Let stragglers (duplicates, benign matches) arrive too.
	time.Sleep(time.Second)
	fs = env.screenFindings(b)

	var r sbLatency
	var lat []float64
	seen := map[string]int{}
	for _, f := range fs {
		title := f.title()
		seen[title]++
		began, ok := t0[title]
		if !ok {
			if !strings.HasPrefix(title, "warm-up") {
				b.Errorf("finding for a title that was not a term change: %q", title)
			}
			continue
		}
		if seen[title] > 1 {
			b.Errorf("%d findings for %q", seen[title], title)
			continue
		}
		at, err := time.Parse(time.RFC3339Nano, f.Time)
		if err != nil {
			b.Fatalf("finding time %q: %v", f.Time, err)
		}
		lat = append(lat, float64(at.Sub(began).Microseconds())/1000)
		r.found++
		if len(f.Evidence) > 0 {
			r.shots++
		} else if shot {
			b.Logf("no screenshot with %q: %v", title, f.Details["evidence"])
		}
	}
	if r.found != sbChanges {
		var missed []string
		for title := range t0 {
			if seen[title] == 0 {
				missed = append(missed, title)
			}
		}
		sort.Strings(missed)
		b.Errorf("%d of %d term title changes gave a finding; missed: %s", r.found, sbChanges, strings.Join(missed, "; "))
	}
	if shot && r.shots != r.found {
		b.Errorf("%d of %d findings came without the screenshot the rule asks for", r.found-r.shots, r.found)
	}
	if len(lat) > 0 {
		sort.Float64s(lat)
		r.p50, r.p99 = sbPercentile(lat, 50), sbPercentile(lat, 99)
		r.min, r.max = lat[0], lat[len(lat)-1]
	}
	return r
}

// sbPercentile is the nearest-rank percentile of sorted values.
func sbPercentile(sorted []float64, p float64) float64 {
	i := int(math.Ceil(p/100*float64(len(sorted)))) - 1
	return sorted[max(0, min(i, len(sorted)-1))]
}

// BenchmarkScreenMonitoringCost measures what the agent service and the
// session helper cost (RSS sampled every second, utime+stime over the
// window) while the active window's title changes once a second, every
// tenth change to a term title (a finding with a screenshot, since the rule
// repeats after 1ms), next to a do-nothing Go process measured the same way.
// The window is VIGIL_SCREEN_SECONDS (default 120).
func BenchmarkScreenMonitoringCost(b *testing.B) {
	sbSkip(b)
	b.StopTimer()
	window := 120 * time.Second
	if v := os.Getenv("VIGIL_SCREEN_SECONDS"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n <= 0 {
			b.Fatalf("VIGIL_SCREEN_SECONDS=%q: want a positive number of seconds", v)
		}
		window = time.Duration(n) * time.Second
	}
	bins := sbBuild(b, true)
	env := sbSetup(b, bins, true)
	base := idleStart(b, bins.base)
	tck := clockTicks()
	time.Sleep(5 * time.Second) // settle

	var r sbCost
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		if i == 0 {
			r = sbMeasureCost(b, env, base, window, tck)
		}
	}
	b.StopTimer()

	// Every term title must have become a finding, or the helper and agent
	// were not doing their job.
	var got int
	idlePoll(b, 30*time.Second, fmt.Sprintf("%d screen findings at the collector", r.terms), func() bool {
		got = 0
		for _, f := range env.screenFindings(b) {
			if strings.HasPrefix(f.title(), "how to kill myself") {
				got++
			}
		}
		return got >= r.terms
	})

	b.ReportMetric(0, "ns/op")
	b.ReportMetric(r.rss[0], "agent_rss_MB")
	b.ReportMetric(r.cpu[0], "agent_cpu_pct")
	b.ReportMetric(r.rss[1], "helper_rss_MB")
	b.ReportMetric(r.cpu[1], "helper_cpu_pct")
	b.ReportMetric(r.rss[2], "base_rss_MB")
	b.ReportMetric(r.cpu[2], "base_cpu_pct")
	b.Logf("screen monitoring %v (%d samples, %d title changes, %d term titles → %d findings, CLK_TCK %d): "+
		"agent rss mean %.1f MB peak %.1f MB cpu %.3f%% | helper rss mean %.1f MB peak %.1f MB cpu %.3f%% | baseline rss %.1f MB cpu %.3f%%",
		r.elapsed.Round(time.Second), r.samples, r.changes, r.terms, got, tck,
		r.rss[0], r.peak[0], r.cpu[0], r.rss[1], r.peak[1], r.cpu[1], r.rss[2], r.cpu[2])
}

type sbCost struct {
	elapsed                 time.Duration
	samples, changes, terms int
	rss, peak, cpu          [3]float64 // agent, helper, baseline: MB (MiB), % of one core
}

func sbMeasureCost(b *testing.B, env *sbEnv, base *idleProc, window time.Duration, tck int64) sbCost {
	b.Helper()
	pids := [3]int{env.agent.cmd.Process.Pid, env.helper.cmd.Process.Pid, base.cmd.Process.Pid}
	var r sbCost
	var cpu0 [3]int64
	var rssSum [3]float64
	for i, pid := range pids {
		cpu0[i] = procTicks(b, pid)
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for time.Since(start) < window {
		<-tick.C
		for i, pid := range pids {
			rssSum[i] += procStatusKB(b, pid, "VmRSS") / 1024
		}
		r.samples++
		// Sampled first, then the change, so that no sample lands in the
		// middle of a screenshot more often than chance.
		if r.changes%10 == 9 {
			env.desk.setTitle(b, fmt.Sprintf("how to kill myself %d - Google Search", r.changes))
			r.terms++
		} else {
			env.desk.setTitle(b, fmt.Sprintf("maths homework %d - Google Docs", r.changes))
		}
		r.changes++
	}
	r.elapsed = time.Since(start)
	for i, pid := range pids {
		ticks := procTicks(b, pid) - cpu0[i]
		r.cpu[i] = float64(ticks) / float64(tck) / r.elapsed.Seconds() * 100
		r.rss[i] = rssSum[i] / float64(r.samples)
		r.peak[i] = procStatusKB(b, pid, "VmHWM") / 1024
	}
	return r
}

func sbSkip(b *testing.B) {
	b.Helper()
	if runtime.GOOS != "linux" {
		b.Skip("needs Xvfb and /proc; Linux only")
	}
	for _, bin := range []string{"Xvfb", "openbox", "xterm", "xdotool"} {
		if _, err := exec.LookPath(bin); err != nil {
			b.Skipf("%s not installed", bin)
		}
	}
}

type sbBins struct{ agent, coll, base string }

// sbBuild builds release-style agent and collector (and the baseline).
func sbBuild(b *testing.B, baseline bool) sbBins {
	b.Helper()
	dir := b.TempDir()
	bins := sbBins{agent: filepath.Join(dir, "vigil-agent"), coll: filepath.Join(dir, "vigil-collector")}
	idleBuild(b, "..", bins.agent, "./agent/cmd/vigil-agent")
	idleBuild(b, "..", bins.coll, "./collector/cmd/vigil-collector")
	if baseline {
		src := b.TempDir()
		if err := os.WriteFile(filepath.Join(src, "go.mod"), []byte("module idlebaseline\n\ngo 1.26\n"), 0o600); err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(src, "main.go"), []byte(idleBaselineMain), 0o600); err != nil {
			b.Fatal(err)
		}
		bins.base = filepath.Join(dir, "idle-baseline")
		idleBuild(b, src, bins.base, ".")
	}
	return bins
}

// sbEnv is a desktop with a collector, an enrolled agent service watching
// the screen rules and a session helper on the desktop's display.
type sbEnv struct {
	desk                *sbDesk
	bins                sbBins
	data, state, device string
	coll, agent, helper *idleProc
}

func sbSetup(b *testing.B, bins sbBins, screenshot bool) *sbEnv {
	b.Helper()
	e := &sbEnv{bins: bins, desk: sbStartDesk(b)}
	rulesDir := sbRulesDir(b, screenshot)
	e.data, e.state = filepath.Join(b.TempDir(), "collector"), filepath.Join(b.TempDir(), "agent")
	grpcAddr := idleFreePort(b)
	e.coll = idleStart(b, bins.coll, "serve", "--data", e.data, "--grpc-listen", grpcAddr,
		"--http-listen", idleFreePort(b), "--heartbeat", "30s")
	idlePoll(b, 30*time.Second, "collector admin socket", func() bool {
		_, err := idleRun(bins.coll, "devices", "list", "--data", e.data, "--json")
		return err == nil
	})
	tok, err := idleRun(bins.coll, "token", "create", "--data", e.data, "--group", "pupils")
	if err != nil {
		b.Fatal(err)
	}
	out, err := idleRun(bins.agent, "enroll", "--collector", grpcAddr, "--token", strings.TrimSpace(tok), "--state", e.state)
	if err != nil {
		b.Fatal(err)
	}
	// "enrolled: device ID in group G"
	if f := strings.Fields(out); len(f) >= 3 {
		e.device = f[2]
	} else {
		b.Fatalf("enroll output %q", out)
	}
	sock := filepath.Join(filepath.Dir(e.state), "run", "session.sock")
	e.agent = idleStart(b, bins.agent, "run", "--state", e.state, "--session-socket", sock, "--rules", rulesDir)
	// Connected means the collector's Welcome, with the evidence recipient
	// that screenshots are encrypted to, has arrived.
	idlePoll(b, 30*time.Second, "agent connected to the collector", func() bool {
		out, err := idleRun(bins.agent, "status", "--state", e.state)
		return err == nil && strings.Contains(out, `"connected": true`)
	})
	e.helper = sbStart(b, e.desk.env, bins.agent, "session", "--session-socket", sock, "--display", e.desk.display)
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("--- session helper log ---\n%s", tail(e.helper.log.String(), 4000))
			b.Logf("--- agent log ---\n%s", tail(e.agent.log.String(), 4000))
			b.Logf("--- collector log ---\n%s", tail(e.coll.log.String(), 2000))
		}
	})
	idlePoll(b, 20*time.Second, "session helper watching the screen", func() bool {
		return strings.Contains(e.helper.log.String(), "watching the screen")
	})
	// One finding end to end before measuring: rules compiled, helper
	// connected, screenshot path warm.
	e.desk.setTitle(b, "warm-up: how to kill myself - Google Search")
	var warm sbFinding
	idlePoll(b, 30*time.Second, "warm-up screen finding at the collector", func() bool {
		for _, f := range e.screenFindings(b) {
			if strings.HasPrefix(f.title(), "warm-up") {
				warm = f
				return true
			}
		}
		return false
	})
	if screenshot && len(warm.Evidence) == 0 {
		b.Fatalf("warm-up finding has no screenshot: %v", warm.Details["evidence"])
	}
	e.desk.setTitle(b, "Homework - Notes")
	time.Sleep(500 * time.Millisecond)
	return e
}

type sbFinding struct {
	Time     string         `json:"time"`
	Check    string         `json:"check"`
	Details  map[string]any `json:"details"`
	Evidence []struct {
		ID string `json:"id"`
	} `json:"evidence"`
}

func (f sbFinding) title() string {
	s, _ := f.Details["title"].(string)
	return s
}

// screenFindings lists the device's screen findings at the collector.
func (e *sbEnv) screenFindings(b *testing.B) []sbFinding {
	b.Helper()
	out, err := idleRun(e.bins.coll, "findings", "list", "--data", e.data, "--device", e.device, "--json")
	if err != nil {
		b.Fatal(err)
	}
	var fs []sbFinding
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var f sbFinding
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			b.Fatalf("findings list line %q: %v", sc.Text(), err)
		}
		if f.Check == "screen" {
			fs = append(fs, f)
		}
	}
	return fs
}

// sbRulesDir is a rules folder with the default screen rule, repeating
// after 1ms (and without screenshots if asked), and the keyword libraries.
func sbRulesDir(b *testing.B, screenshot bool) string {
	b.Helper()
	raw, err := os.ReadFile(filepath.Join("..", "rules", "default", "screen.yaml"))
	if err != nil {
		b.Fatal(err)
	}
	y := sbReplace(b, string(raw), "repeat_after: 10m", "repeat_after: 1ms")
	if !screenshot {
		y = sbReplace(b, y, "screenshot: true", "screenshot: false")
	}
	dir := b.TempDir()
	if err := os.MkdirAll(filepath.Join(dir, "keywords"), 0o755); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "screen.yaml"), []byte(y), 0o644); err != nil {
		b.Fatal(err)
	}
	libs, _ := filepath.Glob(filepath.Join("..", "rules", "keywords", "*.txt"))
	if len(libs) == 0 {
		b.Fatal("no keyword libraries under rules/keywords")
	}
	for _, p := range libs {
		data, err := os.ReadFile(p)
		if err != nil {
			b.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, "keywords", filepath.Base(p)), data, 0o644); err != nil {
			b.Fatal(err)
		}
	}
	return dir
}

func sbReplace(b *testing.B, s, old, new string) string {
	b.Helper()
	if strings.Count(s, old) != 1 {
		b.Fatalf("rules/default/screen.yaml: want exactly one %q", old)
	}
	return strings.Replace(s, old, new, 1)
}

// sbDesk is an Xvfb display with openbox and one active xterm, and an X
// connection of our own that sets the xterm's title.
type sbDesk struct {
	display         string
	env             []string // for processes on this display
	win             xproto.Window
	x               *xgb.Conn
	netWMName, utf8 xproto.Atom
}

func sbStartDesk(b *testing.B) *sbDesk {
	b.Helper()
	d := &sbDesk{}
	// Xvfb picks a free display number itself and writes it to fd 3, so
	// concurrent runs cannot collide.
	rd, wr, err := os.Pipe()
	if err != nil {
		b.Fatal(err)
	}
	xvfb := exec.Command("Xvfb", "-displayfd", "3", "-screen", "0", "1280x800x24", "-nolisten", "tcp")
	xvfb.ExtraFiles = []*os.File{wr}
	sbRun(b, xvfb)
	wr.Close()
	num := make(chan string, 1)
	go func() {
		s, _ := bufio.NewReader(rd).ReadString('\n')
		rd.Close()
		num <- strings.TrimSpace(s)
	}()
	select {
	case n := <-num:
		if _, err := strconv.Atoi(n); err != nil {
			b.Fatalf("Xvfb -displayfd gave %q", n)
		}
		d.display = ":" + n
	case <-time.After(20 * time.Second):
		b.Fatal("Xvfb did not report a display within 20s")
	}

	home := b.TempDir()
	for _, kv := range os.Environ() {
		k, _, _ := strings.Cut(kv, "=")
		switch k {
		case "DISPLAY", "WAYLAND_DISPLAY", "XDG_SESSION_TYPE", "HOME", "XDG_CONFIG_HOME", "XDG_CACHE_HOME", "XDG_DATA_HOME", "XDG_RUNTIME_DIR":
			continue
		}
		d.env = append(d.env, kv)
	}
	d.env = append(d.env, "DISPLAY="+d.display, "HOME="+home, "XDG_CONFIG_HOME="+home,
		"XDG_CACHE_HOME="+home, "XDG_DATA_HOME="+home, "XDG_RUNTIME_DIR="+home)

	d.x, err = xgb.NewConnDisplay(d.display)
	if err != nil {
		b.Fatalf("connect to %s: %v", d.display, err)
	}
	b.Cleanup(d.x.Close)
	d.netWMName, d.utf8 = d.atom(b, "_NET_WM_NAME"), d.atom(b, "UTF8_STRING")
	check := d.atom(b, "_NET_SUPPORTING_WM_CHECK")
	root := xproto.Setup(d.x).DefaultScreen(d.x).Root

	wm := exec.Command("openbox")
	wm.Env = d.env
	sbRun(b, wm)
	idlePoll(b, 20*time.Second, "window manager", func() bool {
		r, err := xproto.GetProperty(d.x, false, root, check, xproto.AtomWindow, 0, 1).Reply()
		return err == nil && r != nil && r.ValueLen > 0
	})
	// cat: no shell that could set the title from its prompt.
	term := exec.Command("xterm", "-T", "Homework - Notes", "-bg", "navy", "-e", "cat")
	term.Env = d.env
	sbRun(b, term)
	search := exec.Command("xdotool", "search", "--sync", "--name", "^Homework - Notes$")
	search.Env = d.env
	out, err := search.Output()
	if err != nil {
		b.Fatalf("xdotool search: %v", err)
	}
	id, err := strconv.ParseUint(strings.Fields(string(out))[0], 10, 32)
	if err != nil {
		b.Fatalf("xdotool search: %q: %v", out, err)
	}
	d.win = xproto.Window(id)
	act := exec.Command("xdotool", "windowactivate", "--sync", fmt.Sprint(id))
	act.Env = d.env
	if out, err := act.CombinedOutput(); err != nil {
		b.Fatalf("xdotool windowactivate: %v %s", err, out)
	}
	return d
}

func (d *sbDesk) atom(b *testing.B, name string) xproto.Atom {
	b.Helper()
	r, err := xproto.InternAtom(d.x, false, uint16(len(name)), name).Reply()
	if err != nil {
		b.Fatalf("intern %s: %v", name, err)
	}
	return r.Atom
}

// setTitle sets the xterm's _NET_WM_NAME (UTF-8; what the helper reads
// first) and WM_NAME, and returns the time just before the first request.
func (d *sbDesk) setTitle(b *testing.B, title string) time.Time {
	b.Helper()
	t0 := time.Now()
	c1 := xproto.ChangePropertyChecked(d.x, xproto.PropModeReplace, d.win, d.netWMName, d.utf8, 8, uint32(len(title)), []byte(title))
	c2 := xproto.ChangePropertyChecked(d.x, xproto.PropModeReplace, d.win, xproto.AtomWmName, xproto.AtomString, 8, uint32(len(title)), []byte(title))
	if err := c1.Check(); err != nil {
		b.Fatalf("set _NET_WM_NAME: %v", err)
	}
	if err := c2.Check(); err != nil {
		b.Fatalf("set WM_NAME: %v", err)
	}
	return t0
}

// sbRun starts a desktop process, killed when the benchmark ends.
func sbRun(b *testing.B, cmd *exec.Cmd) {
	b.Helper()
	if err := cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", cmd.Path, err)
	}
	b.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
	})
}

// sbStart is idleStart with an environment.
func sbStart(b *testing.B, env []string, bin string, args ...string) *idleProc {
	b.Helper()
	p := &idleProc{cmd: exec.Command(bin, args...), log: &syncBuf{}, done: make(chan struct{})}
	p.cmd.Env = env
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		b.Fatalf("start %s: %v", bin, err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	b.Cleanup(func() {
		p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Signal(syscall.SIGKILL)
			<-p.done
		}
	})
	return p
}
