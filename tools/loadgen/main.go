// Command loadgen holds many simulated agents against a real collector, so
// the collector's cost per agent can be measured and re-measured by anyone.
//
// Each simulated agent is a real protocol client: it enrolls through the
// Enroll RPC with its own ECDSA key and the token's CA pin, then holds one
// mTLS Stream of its own (its own TCP connection), says Hello, sends
// heartbeats and, now and then, a batch with one finding whose ack it times.
// Enrolled identities are kept in -identities, so a rerun reconnects the same
// devices instead of enrolling new ones.
//
// A process can hold only as many connections as its descriptor limit, so
// for large counts the parent re-executes itself: -per-proc agents a child.
// The parent samples the collector's RSS (-collector-pid) and prints one
// JSON summary.
//
//	vigil-collector token create --data DIR --group load --uses 20000
//	go run ./tools/loadgen -addr 127.0.0.1:7443 -token TOKEN -agents 1000 \
//	    -identities /tmp/ids -collector-pid $(pidof vigil-collector)
package main

import (
	"bufio"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"os/signal"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"
)

type options struct {
	addr, enrollAddr, token, identities string
	failover                            []string // where an agent goes when its stream ends (the agent's --stream-collectors)
	agents, perProc, first              int
	heartbeat, findingEvery             time.Duration
	hold, rampTimeout                   time.Duration
	rate                                int
	collectorPID                        int
	child                               bool
}

// Summary is what one run reports (a child reports its part, the parent
// the whole).
type Summary struct {
	Agents        int     `json:"agents"`
	Connected     int     `json:"connected"`
	ConnectFailed int     `json:"connect_failed"`
	StreamErrors  int     `json:"stream_errors"`
	Retries       int     `json:"connect_retries"`
	Heartbeats    int     `json:"heartbeats"`
	Acks          int     `json:"acks"`
	AckP50ms      float64 `json:"ack_p50_ms"`
	AckP99ms      float64 `json:"ack_p99_ms"`
	// Reconnects after a stream ended during the hold (-failover): how
	// many, and the time from the stream's end to the next Welcome.
	Reconnects       int       `json:"reconnects,omitempty"`
	ReconnectFailed  int       `json:"reconnects_failed,omitempty"`
	ReconnectP50ms   float64   `json:"reconnect_p50_ms,omitempty"`
	ReconnectP99ms   float64   `json:"reconnect_p99_ms,omitempty"`
	ReconnectMaxms   float64   `json:"reconnect_max_ms,omitempty"`
	ReconnectSamples []float64 `json:"reconnect_samples_ms,omitempty"`
	RampSeconds      float64   `json:"ramp_seconds"`
	// Collector memory, sampled by the parent: before any agent connected,
	// and the mean and peak while all were held.
	CollectorRSSBefore int64     `json:"collector_rss_before_bytes,omitempty"`
	CollectorRSSHeld   int64     `json:"collector_rss_held_mean_bytes,omitempty"`
	CollectorRSSPeak   int64     `json:"collector_rss_held_peak_bytes,omitempty"`
	RSSPerAgentKB      float64   `json:"collector_rss_per_agent_kb,omitempty"`
	CollectorCPUPct    float64   `json:"collector_cpu_percent_while_held,omitempty"`
	AckSamplesMs       []float64 `json:"ack_samples_ms,omitempty"`
}

func main() {
	var o options
	flag.StringVar(&o.addr, "addr", "127.0.0.1:7443", "collector agent address")
	flag.StringVar(&o.enrollAddr, "enroll-addr", "", "enroll at this address instead of -addr (a stream front-end refuses enrolment: give the store-owning collector)")
	flag.StringVar(&o.token, "token", "", "enrollment token (enough uses for -agents)")
	flag.StringVar(&o.identities, "identities", "", "folder keeping enrolled identities between runs (required)")
	flag.IntVar(&o.agents, "agents", 100, "simulated agents")
	flag.IntVar(&o.perProc, "per-proc", 8000, "agents per process (each needs a descriptor)")
	flag.IntVar(&o.first, "first", 0, "index of the first agent (children)")
	flag.DurationVar(&o.heartbeat, "heartbeat", 30*time.Second, "heartbeat interval")
	flag.DurationVar(&o.findingEvery, "finding-every", 30*time.Second, "each agent sends a one-finding batch this often (0: none)")
	flag.DurationVar(&o.hold, "hold", 60*time.Second, "how long every agent is held once all are connected")
	flag.DurationVar(&o.rampTimeout, "ramp-timeout", 10*time.Minute, "give up connecting after this")
	flag.IntVar(&o.rate, "rate", 300, "new connections per second (per process)")
	flag.IntVar(&o.collectorPID, "collector-pid", 0, "collector process to sample RSS and CPU of")
	flag.BoolVar(&o.child, "child", false, "internal: run as a child of a parent loadgen")
	failover := flag.String("failover", "", "comma-separated addresses an agent reconnects to when its stream ends during the hold (the reconnect time is measured); empty: it does not")
	flag.Parse()
	for _, a := range strings.Split(*failover, ",") {
		if a = strings.TrimSpace(a); a != "" {
			o.failover = append(o.failover, a)
		}
	}
	if o.identities == "" || (o.token == "" && !o.child) {
		fmt.Fprintln(os.Stderr, "loadgen: -identities and -token are required")
		os.Exit(2)
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	raiseFileLimit()
	var (
		sum Summary
		err error
	)
	if o.child || o.agents <= o.perProc {
		sum, err = runAgents(ctx, o, log)
	} else {
		sum, err = runParent(ctx, o, log)
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "loadgen:", err)
		os.Exit(1)
	}
	if !o.child {
		sum.AckSamplesMs = nil
	}
	enc := json.NewEncoder(os.Stdout)
	if !o.child {
		enc.SetIndent("", "  ")
	}
	_ = enc.Encode(sum)
}

// runParent splits the agents over children and samples the collector
// while they hold. Children print "connected" on stderr-free stdout lines
// ("READY n") when their agents are up, then their summary at the end.
func runParent(ctx context.Context, o options, log *slog.Logger) (Summary, error) {
	self, err := os.Executable()
	if err != nil {
		return Summary{}, err
	}
	before := rss(o.collectorPID)
	type child struct {
		cmd   *exec.Cmd
		stdin io.Closer // closing it tells the child to finish
		ready chan int
		done  chan Summary
	}
	var kids []child
	start := time.Now()
	for first := 0; first < o.agents; first += o.perProc {
		n := min(o.perProc, o.agents-first)
		args := []string{"-child", "-addr", o.addr, "-enroll-addr", o.enrollAddr, "-token", o.token, "-identities", o.identities,
			"-agents", strconv.Itoa(n), "-first", strconv.Itoa(first), "-heartbeat", o.heartbeat.String(),
			"-finding-every", o.findingEvery.String(), "-hold", "0s", "-rate", strconv.Itoa(o.rate),
			"-ramp-timeout", o.rampTimeout.String(), "-failover", strings.Join(o.failover, ",")}
		cmd := exec.CommandContext(ctx, self, args...)
		cmd.Stderr = os.Stderr
		stdin, err := cmd.StdinPipe()
		if err != nil {
			return Summary{}, err
		}
		out, err := cmd.StdoutPipe()
		if err != nil {
			return Summary{}, err
		}
		if err := cmd.Start(); err != nil {
			return Summary{}, fmt.Errorf("start child: %w", err)
		}
		k := child{cmd: cmd, stdin: stdin, ready: make(chan int, 1), done: make(chan Summary, 1)}
		go func() {
			sc := bufio.NewScanner(out)
			sc.Buffer(make([]byte, 1<<20), 64<<20)
			for sc.Scan() {
				line := sc.Text()
				if n, ok := strings.CutPrefix(line, "READY "); ok {
					v, _ := strconv.Atoi(n)
					k.ready <- v
					continue
				}
				var s Summary
				if json.Unmarshal([]byte(line), &s) == nil {
					k.done <- s
				}
			}
			close(k.done)
		}()
		kids = append(kids, k)
	}
	connected := 0
	for i, k := range kids {
		select {
		case n := <-k.ready:
			connected += n
		case _, ok := <-k.done:
			if !ok {
				return Summary{}, fmt.Errorf("child %d ended before its agents were connected (see its log above)", i)
			}
		case <-ctx.Done():
			return Summary{}, ctx.Err()
		}
	}
	ramp := time.Since(start)
	log.Info("all children ready", "connected", connected, "ramp", ramp.Round(time.Millisecond))
	h := sampleWhile(ctx, o.collectorPID, o.hold)
	for _, k := range kids {
		k.stdin.Close()
	}
	total := Summary{Agents: o.agents, RampSeconds: ramp.Seconds(), CollectorRSSBefore: before,
		CollectorRSSHeld: h.mean, CollectorRSSPeak: h.peak, CollectorCPUPct: h.cpuPct}
	var samples, reconnects []float64
	for _, k := range kids {
		s, ok := <-k.done
		_ = k.cmd.Wait()
		if !ok {
			return Summary{}, fmt.Errorf("a child ended without a summary")
		}
		total.Connected += s.Connected
		total.ConnectFailed += s.ConnectFailed
		total.StreamErrors += s.StreamErrors
		total.Heartbeats += s.Heartbeats
		total.Retries += s.Retries
		total.Acks += s.Acks
		samples = append(samples, s.AckSamplesMs...)
		total.ReconnectFailed += s.ReconnectFailed
		reconnects = append(reconnects, s.ReconnectSamples...)
	}
	total.AckP50ms, total.AckP99ms = quantile(samples, 0.5), quantile(samples, 0.99)
	total.Reconnects = len(reconnects)
	total.ReconnectP50ms, total.ReconnectP99ms, total.ReconnectMaxms = quantile(reconnects, 0.5), quantile(reconnects, 0.99), quantile(reconnects, 1)
	if total.Connected > 0 && h.mean > 0 && before > 0 {
		total.RSSPerAgentKB = float64(h.mean-before) / float64(total.Connected) / 1024
	}
	return total, nil
}

// runAgents runs this process's agents. A child holds them until its stdin
// closes; a lone process holds them for -hold while sampling the collector.
func runAgents(ctx context.Context, o options, log *slog.Logger) (Summary, error) {
	ids, err := loadOrEnroll(ctx, o, log)
	if err != nil {
		return Summary{}, err
	}
	before := int64(0)
	if !o.child {
		before = rss(o.collectorPID)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st := &stats{}
	var wg sync.WaitGroup
	up := make(chan bool, len(ids))
	start := time.Now()
	tick := time.NewTicker(time.Second / time.Duration(max(1, o.rate)))
	defer tick.Stop()
	for _, id := range ids {
		select {
		case <-tick.C:
		case <-ctx.Done():
			return Summary{}, ctx.Err()
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			runAgent(ctx, o, id, st, up)
		}()
	}
	connected, failed := 0, 0
	deadline := time.After(o.rampTimeout)
	for connected+failed < len(ids) {
		select {
		case ok := <-up:
			if ok {
				connected++
			} else {
				failed++
			}
		case <-deadline:
			failed = len(ids) - connected
		case <-ctx.Done():
			return Summary{}, ctx.Err()
		}
	}
	ramp := time.Since(start)
	log.Info("agents connected", "connected", connected, "failed", failed, "ramp", ramp.Round(time.Millisecond))
	sum := Summary{Agents: len(ids), Connected: connected, ConnectFailed: failed, RampSeconds: ramp.Seconds()}
	st.reset()
	if o.child {
		fmt.Printf("READY %d\n", connected)
		_, _ = bufio.NewReader(os.Stdin).ReadString('\n') // EOF when the parent is done
	} else {
		sum.CollectorRSSBefore = before
		h := sampleWhile(ctx, o.collectorPID, o.hold)
		sum.CollectorRSSHeld, sum.CollectorRSSPeak, sum.CollectorCPUPct = h.mean, h.peak, h.cpuPct
		if connected > 0 && before > 0 && sum.CollectorRSSHeld > 0 {
			sum.RSSPerAgentKB = float64(sum.CollectorRSSHeld-before) / float64(connected) / 1024
		}
	}
	cancel()
	wg.Wait()
	st.mu.Lock()
	defer st.mu.Unlock()
	sum.StreamErrors, sum.Heartbeats, sum.Acks, sum.Retries = st.streamErrors, st.heartbeats, len(st.acks), st.retries
	sum.AckP50ms, sum.AckP99ms = quantile(st.acks, 0.5), quantile(st.acks, 0.99)
	sum.Reconnects, sum.ReconnectFailed = len(st.reconnects), st.reconnectFailed
	sum.ReconnectP50ms, sum.ReconnectP99ms, sum.ReconnectMaxms = quantile(st.reconnects, 0.5), quantile(st.reconnects, 0.99), quantile(st.reconnects, 1)
	if o.child {
		sum.AckSamplesMs, sum.ReconnectSamples = st.acks, st.reconnects
	}
	return sum, nil
}

type stats struct {
	mu                                sync.Mutex
	acks                              []float64
	heartbeats, streamErrors, retries int
	reconnects                        []float64 // ms from a stream's end to the next Welcome
	reconnectFailed                   int
}

// reset starts the measured window: what happened during the ramp (TLS
// handshakes competing for the CPU) is not steady state.
func (s *stats) reset() {
	s.mu.Lock()
	s.acks, s.heartbeats = nil, 0
	s.mu.Unlock()
}

func quantile(v []float64, q float64) float64 {
	if len(v) == 0 {
		return 0
	}
	s := append([]float64(nil), v...)
	sort.Float64s(s)
	return s[min(len(s)-1, int(q*float64(len(s))))]
}

// rss is a process's resident set in bytes from /proc, or 0.
func rss(pid int) int64 {
	if pid <= 0 {
		return 0
	}
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmRSS:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
}

// cpuTicks is utime+stime of a process in clock ticks.
func cpuTicks(pid int) int64 {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		return 0
	}
	s := string(b)
	f := strings.Fields(s[strings.LastIndexByte(s, ')')+2:])
	if len(f) < 13 {
		return 0
	}
	u, _ := strconv.ParseInt(f[11], 10, 64)
	k, _ := strconv.ParseInt(f[12], 10, 64)
	return u + k
}

// held is the collector sampled while every agent is held.
type held struct {
	mean, peak int64
	cpuPct     float64 // % of one core
}

// sampleWhile holds for d, sampling the collector's RSS every 500 ms. The
// mean is the figure per agent (the peak adds GC headroom that comes and
// goes with the finding rate).
func sampleWhile(ctx context.Context, pid int, d time.Duration) held {
	if pid <= 0 {
		select {
		case <-time.After(d):
		case <-ctx.Done():
		}
		return held{}
	}
	t0, c0 := time.Now(), cpuTicks(pid)
	var sum, n int64
	var h held
	c1, t1 := c0, t0
	// A process that died during the hold (a front-end killed on
	// purpose) is measured while it lived.
	sample := func() {
		if r := rss(pid); r > 0 {
			sum, n, h.peak = sum+r, n+1, max(h.peak, r)
			c1, t1 = cpuTicks(pid), time.Now()
		}
	}
	sample()
	tk := time.NewTicker(500 * time.Millisecond)
	defer tk.Stop()
	end := time.After(d)
	for {
		select {
		case <-tk.C:
			sample()
		case <-end:
			sample()
			if n > 0 {
				h.mean = sum / n
			}
			if t1.After(t0) {
				h.cpuPct = float64(c1-c0) / 100 / t1.Sub(t0).Seconds() * 100 // USER_HZ is 100 on Linux
			}
			return h
		case <-ctx.Done():
			if n > 0 {
				h.mean = sum / n
			}
			return h
		}
	}
}
