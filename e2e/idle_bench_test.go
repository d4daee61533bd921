package e2e

import (
	"bytes"
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

// idleSeconds sets BenchmarkAgentIdle's measurement window; it wins over
// VIGIL_IDLE_SECONDS, and both default to 180.
var idleSeconds = flag.Int("idle-seconds", 0, "BenchmarkAgentIdle measurement window in seconds (default $VIGIL_IDLE_SECONDS, else 180)")

// Goals for an idle agent with the full default rule pack (issue 8).
const (
	idleGoalRSSMB  = 20.0
	idleGoalCPUPct = 0.1
	// The window opens after start-up work: the first process and
	// software scan (+10 s), the first polls of every check and the
	// memory trims (+10 s, +60 s). Periodic work slower than the window
	// (the executables rescan every 10 min) is in it only when the window
	// is that long: VIGIL_IDLE_SECONDS=600 measures it amortized.
	idleSettle  = 75 * time.Second
	idleTrigger = 30 * time.Second
)

// idleBaselineMain is the baseline: a Go process that does nothing but
// wait for a signal (a bare select{} would die as a deadlock).
const idleBaselineMain = `package main

import (
	"os"
	"os/signal"
	"syscall"
)

func main() {
	c := make(chan os.Signal, 1)
	signal.Notify(c, syscall.SIGTERM, os.Interrupt)
	<-c
}
`

// BenchmarkAgentIdle measures what an enrolled, connected agent costs while
// idle with the full default rule pack (selftest, antivirus, Bluetooth,
// executables, removable media, screen keywords), next to a do-nothing Go process
// measured the same way in the same run. The harness's binaries are built
// with -race, which inflates CPU and RSS several times over, so this builds
// its own release-style copies.
//
// One measurement takes minutes, so it is made once per call whatever b.N
// is; run it with -benchtime=1x:
//
//	VIGIL_IDLE_SECONDS=180 go test -run='^$' -bench=BenchmarkAgentIdle -benchtime=1x ./e2e/
func BenchmarkAgentIdle(b *testing.B) {
	if runtime.GOOS != "linux" {
		b.Skip("reads /proc; Linux only")
	}
	b.StopTimer()
	window := idleWindow(b)

	isolate := idleCanIsolate()
	bin := b.TempDir()
	if isolate {
		bin = idleDirOutsideTmp(b)
	}
	idleBuild(b, "..", filepath.Join(bin, "vigil-agent"), "./agent/cmd/vigil-agent")
	idleBuild(b, "..", filepath.Join(bin, "vigil-collector"), "./collector/cmd/vigil-collector")
	baseSrc := b.TempDir()
	if err := os.WriteFile(filepath.Join(baseSrc, "go.mod"), []byte("module idlebaseline\n\ngo 1.26\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(baseSrc, "main.go"), []byte(idleBaselineMain), 0o600); err != nil {
		b.Fatal(err)
	}
	idleBuild(b, baseSrc, filepath.Join(bin, "idle-baseline"), ".")
	agentBin, collBin := filepath.Join(bin, "vigil-agent"), filepath.Join(bin, "vigil-collector")
	tck := clockTicks()

	// Collector, enrolment, agent: as in the harness, without -race.
	data, state := filepath.Join(b.TempDir(), "collector"), filepath.Join(b.TempDir(), "agent")
	if isolate {
		state = filepath.Join(idleDirOutsideTmp(b), "agent")
	}
	grpcAddr := idleFreePort(b)
	coll := idleStart(b, collBin, "serve", "--data", data, "--grpc-listen", grpcAddr,
		"--http-listen", idleFreePort(b), "--heartbeat", "30s")
	idlePoll(b, 30*time.Second, "collector admin socket", func() bool {
		_, err := idleRun(collBin, "devices", "list", "--data", data, "--json")
		return err == nil
	})
	tok, err := idleRun(collBin, "token", "create", "--data", data, "--group", "pupils")
	if err != nil {
		b.Fatal(err)
	}
	if _, err := idleRun(agentBin, "enroll", "--collector", grpcAddr, "--token", strings.TrimSpace(tok), "--state", state); err != nil {
		b.Fatal(err)
	}
	var agent *idleProc
	if isolate {
		// The default pack watches /tmp, /var/tmp and /dev/shm for
		// executables and the mount table for removable media. On a shared
		// build machine other processes create thousands of files there
		// and mount file systems all the time; a school laptop at rest
		// does not. So the agent gets a mount namespace of its own with
		// empty temp dirs: what it does then is its idle cost. (unshare
		// execs in place: the PID sampled is the agent's.)
		agent = idleStart(b, "unshare", "--mount", "--propagation", "private", "--", "sh", "-c",
			`mount -t tmpfs tmpfs /tmp && mount -t tmpfs tmpfs /var/tmp && mount -t tmpfs tmpfs /dev/shm && exec "$0" "$@"`,
			agentBin, "run", "--state", state, "--session-socket", filepath.Join(filepath.Dir(state), "run", "session.sock"))
	} else {
		b.Log("not root or no unshare: the agent sees this machine's temp-file and mount activity")
		agent = idleStart(b, agentBin, "run", "--state", state, "--session-socket", filepath.Join(filepath.Dir(state), "run", "session.sock"))
	}
	base := idleStart(b, filepath.Join(bin, "idle-baseline"))
	idlePoll(b, 30*time.Second, "agent connected to the collector", func() bool {
		out, err := idleRun(agentBin, "status", "--state", state)
		return err == nil && strings.Contains(out, `"connected": true`)
	})
	b.Cleanup(func() {
		if b.Failed() {
			b.Logf("--- agent log ---\n%s", tail(agent.log.String(), 4000))
			b.Logf("--- collector log ---\n%s", tail(coll.log.String(), 4000))
		}
	})
	time.Sleep(idleSettle)

	var r idleResult
	b.StartTimer()
	for i := 0; i < b.N; i++ {
		if i == 0 { // the window is the measurement; extra iterations add nothing
			r = idleMeasure(b, window, tck, agent, base, agentBin, state)
		}
	}
	b.StopTimer()

	// The findings must have travelled, or the agent was not doing its job.
	idlePoll(b, 30*time.Second, fmt.Sprintf("%d selftest findings at the collector", r.triggers), func() bool {
		out, err := idleRun(collBin, "findings", "list", "--data", data, "--json")
		return err == nil && strings.Count(out, "\n") >= r.triggers
	})

	b.ReportMetric(0, "ns/op") // wall time per op is just the window
	b.ReportMetric(r.agentRSS, "agent_rss_MB")
	b.ReportMetric(r.agentPeak, "agent_rss_peak_MB")
	b.ReportMetric(r.agentCPU, "agent_cpu_pct")
	b.ReportMetric(r.baseRSS, "base_rss_MB")
	b.ReportMetric(r.baseCPU, "base_cpu_pct")
	b.ReportMetric(r.agentRSS/r.baseRSS, "rss_ratio")
	b.Logf("idle %v (%d samples, %d triggers, CLK_TCK %d): agent rss mean %.1f MB peak %.1f MB cpu %.3f%% | baseline rss %.1f MB peak %.1f MB cpu %.3f%% | rss ratio %.2f",
		r.elapsed.Round(time.Second), r.samples, r.triggers, tck, r.agentRSS, r.agentPeak, r.agentCPU,
		r.baseRSS, r.basePeak, r.baseCPU, r.agentRSS/r.baseRSS)
	if r.agentRSS > idleGoalRSSMB {
		b.Errorf("agent idle RSS %.1f MB exceeds the %.0f MB goal", r.agentRSS, idleGoalRSSMB)
	}
	// One clock tick over the window is the measurement's resolution: a
	// short smoke window (5 s: one tick is 0.2 %) cannot resolve a 0.1 %
	// goal, so only CPU beyond the goal by more than one tick fails.
	tickPct := 100 / float64(tck) / r.elapsed.Seconds() * 100
	if r.agentCPU > idleGoalCPUPct+tickPct {
		b.Errorf("agent idle CPU %.3f%% of one core exceeds the %.1f%% goal", r.agentCPU, idleGoalCPUPct)
	}
}

type idleResult struct {
	elapsed                       time.Duration
	samples, triggers             int
	agentRSS, agentPeak, agentCPU float64 // MB (MiB) and % of one core
	baseRSS, basePeak, baseCPU    float64
}

// idleMeasure samples both processes once a second over the window, and
// triggers one selftest finding every 30 s, mid-slot. trigger-test runs as
// its own process, so its cost is not the agent's.
func idleMeasure(b *testing.B, window time.Duration, tck int64, agent, base *idleProc, agentBin, state string) idleResult {
	b.Helper()
	pids := []int{agent.cmd.Process.Pid, base.cmd.Process.Pid}
	var r idleResult
	var cpu0 [2]int64
	var rssSum [2]float64
	for i, pid := range pids {
		cpu0[i] = procTicks(b, pid)
	}
	start := time.Now()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	nextTrigger := start.Add(idleTrigger / 2)
	for time.Since(start) < window {
		now := <-tick.C
		for i, pid := range pids {
			rssSum[i] += procStatusKB(b, pid, "VmRSS") / 1024
		}
		r.samples++
		if !now.Before(nextTrigger) && now.Sub(start) < window {
			if _, err := idleRun(agentBin, "trigger-test", "--state", state, "--count", "1"); err != nil {
				b.Errorf("trigger-test: %v", err)
			}
			r.triggers++
			nextTrigger = nextTrigger.Add(idleTrigger)
		}
	}
	r.elapsed = time.Since(start)
	var cpu [2]float64
	for i, pid := range pids {
		ticks := procTicks(b, pid) - cpu0[i]
		cpu[i] = float64(ticks) / float64(tck) / r.elapsed.Seconds() * 100
	}
	r.agentRSS, r.baseRSS = rssSum[0]/float64(r.samples), rssSum[1]/float64(r.samples)
	r.agentPeak = procStatusKB(b, pids[0], "VmHWM") / 1024
	r.basePeak = procStatusKB(b, pids[1], "VmHWM") / 1024
	r.agentCPU, r.baseCPU = cpu[0], cpu[1]
	return r
}

func idleWindow(b *testing.B) time.Duration {
	secs := *idleSeconds
	if secs <= 0 {
		secs = 180
		if v := os.Getenv("VIGIL_IDLE_SECONDS"); v != "" {
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				b.Fatalf("VIGIL_IDLE_SECONDS=%q: want a positive number of seconds", v)
			}
			secs = n
		}
	}
	return time.Duration(secs) * time.Second
}

// idleCanIsolate: a private mount namespace needs root and unshare(1).
func idleCanIsolate() bool {
	if os.Geteuid() != 0 {
		return false
	}
	_, err := exec.LookPath("unshare")
	return err == nil
}

// idleDirOutsideTmp is a temp dir the isolated agent can still see: not
// under /tmp, which its namespace replaces.
func idleDirOutsideTmp(b *testing.B) string {
	b.Helper()
	base, err := os.UserCacheDir()
	if err != nil {
		b.Fatal(err)
	}
	if err := os.MkdirAll(base, 0o700); err != nil {
		b.Fatal(err)
	}
	dir, err := os.MkdirTemp(base, "vigil-idle-bench-*")
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(func() { os.RemoveAll(dir) })
	return dir
}

// idleBuild builds a release-style binary (no -race, stripped).
func idleBuild(b *testing.B, dir, out, pkg string) {
	b.Helper()
	cmd := exec.Command("go", "build", "-trimpath", "-ldflags", "-s -w", "-o", out, pkg)
	cmd.Dir = dir
	if o, err := cmd.CombinedOutput(); err != nil {
		b.Fatalf("go build %s: %v\n%s", pkg, err, o)
	}
}

// clockTicks is CLK_TCK from getconf, else Linux's usual 100.
func clockTicks() int64 {
	out, err := exec.Command("getconf", "CLK_TCK").Output()
	if n, perr := strconv.ParseInt(strings.TrimSpace(string(out)), 10, 64); err == nil && perr == nil && n > 0 {
		return n
	}
	return 100
}

// procTicks is utime+stime (fields 14 and 15 of /proc/PID/stat), the
// process's own CPU, not its children's.
func procTicks(b *testing.B, pid int) int64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		b.Fatal(err)
	}
	// comm (field 2) may hold spaces; fields resume after its last ')'
	// with field 3, so field N is at index N-3.
	f := strings.Fields(string(raw[bytes.LastIndexByte(raw, ')')+1:]))
	if len(f) < 13 {
		b.Fatalf("/proc/%d/stat: %q", pid, raw)
	}
	ut, err1 := strconv.ParseInt(f[14-3], 10, 64)
	st, err2 := strconv.ParseInt(f[15-3], 10, 64)
	if err := errors.Join(err1, err2); err != nil {
		b.Fatalf("/proc/%d/stat: %v", pid, err)
	}
	return ut + st
}

// procStatusKB reads a "Key:   N kB" line of /proc/PID/status.
func procStatusKB(b *testing.B, pid int, key string) float64 {
	b.Helper()
	raw, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(raw), "\n") {
		if rest, ok := strings.CutPrefix(line, key+":"); ok {
			n, err := strconv.ParseFloat(strings.TrimSuffix(strings.TrimSpace(rest), " kB"), 64)
			if err != nil {
				b.Fatalf("/proc/%d/status %s: %v", pid, key, err)
			}
			return n
		}
	}
	b.Fatalf("/proc/%d/status has no %s", pid, key)
	return 0
}

func idleFreePort(b *testing.B) string {
	b.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// idleProc is a long-running process started by the benchmark; it is
// stopped with SIGTERM, then SIGKILL, when the benchmark ends.
type idleProc struct {
	cmd  *exec.Cmd
	log  *syncBuf
	done chan struct{}
}

func idleStart(b *testing.B, bin string, args ...string) *idleProc {
	b.Helper()
	return sbStart(b, nil, bin, args...) // nil env: inherit this process's
}

// idleRun runs a CLI command to completion and returns its stdout.
func idleRun(bin string, args ...string) (string, error) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	var o, e bytes.Buffer
	cmd := exec.CommandContext(ctx, bin, args...)
	cmd.Stdout, cmd.Stderr = &o, &e
	if err := cmd.Run(); err != nil {
		return o.String(), fmt.Errorf("%s %s: %v: %s", filepath.Base(bin), strings.Join(args, " "), err, strings.TrimSpace(e.String()))
	}
	return o.String(), nil
}

func idlePoll(b *testing.B, d time.Duration, what string, cond func() bool) {
	b.Helper()
	for deadline := time.Now().Add(d); !cond(); time.Sleep(200 * time.Millisecond) {
		if time.Now().After(deadline) {
			b.Fatalf("timed out after %v waiting for %s", d, what)
		}
	}
}
