// Package e2e holds the end-to-end tests: they build the real binaries and
// run collector and agents as separate processes on loopback, killing and
// restarting them as a school's machines would be.
package e2e

import (
	"bufio"
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/internal/testutil"
)

var binDir string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "vigil-e2e-bin")
	if err != nil {
		panic(err)
	}
	for _, b := range []string{"agent", "collector"} {
		cmd := exec.Command("go", "build", "-race", "-o", filepath.Join(dir, "vigil-"+b), "../"+b+"/cmd/vigil-"+b)
		cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
		if err := cmd.Run(); err != nil {
			fmt.Fprintln(os.Stderr, "build", b, err)
			os.Exit(1)
		}
	}
	binDir = dir
	// The race runtime sleeps a second at every exit by default, which
	// would dominate the many short CLI runs here.
	os.Setenv("GORACE", "atexit_sleep_ms=0")
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

func freePort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// proc is a running binary with its combined log kept for failures.
type proc struct {
	t    *testing.T
	name string
	cmd  *exec.Cmd
	log  *syncBuf
	done chan struct{}
	err  error
}

type syncBuf = testutil.SyncBuffer

func start(t *testing.T, name string, args ...string) *proc {
	t.Helper()
	p := &proc{t: t, name: name, log: &syncBuf{}, done: make(chan struct{})}
	p.cmd = exec.Command(filepath.Join(binDir, name), args...)
	p.cmd.Stdout, p.cmd.Stderr = p.log, p.log
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("start %s: %v", name, err)
	}
	go func() { p.err = p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.kill()
		if strings.Contains(p.log.String(), "WARNING: DATA RACE") {
			t.Errorf("%s reported a data race", name)
		}
		if t.Failed() {
			t.Logf("--- %s log ---\n%s", name, tail(p.log.String(), 4000))
		}
	})
	return p
}

func tail(s string, n int) string {
	if len(s) > n {
		return "…" + s[len(s)-n:]
	}
	return s
}

func (p *proc) kill() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGKILL)
	<-p.done
}

// stop sends SIGTERM and waits for a clean exit.
func (p *proc) stop() error {
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
		return p.err
	case <-time.After(30 * time.Second):
		p.kill()
		return fmt.Errorf("%s did not stop within 30s", p.name)
	}
}

// run runs a CLI command to completion.
func run(t *testing.T, name string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, filepath.Join(binDir, name), args...)
	var o, e bytes.Buffer
	cmd.Stdout, cmd.Stderr = &o, &e
	err := cmd.Run()
	if strings.Contains(e.String(), "WARNING: DATA RACE") {
		t.Errorf("%s %v reported a data race:\n%s", name, args, e.String())
	}
	code = 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatalf("%s %v: %v", name, args, err)
	}
	return o.String(), e.String(), code
}

func mustRun(t *testing.T, name string, args ...string) string {
	t.Helper()
	out, errOut, code := run(t, name, args...)
	if code != 0 {
		t.Fatalf("%s %s: exit %d: %s", name, strings.Join(args, " "), code, errOut)
	}
	return out
}

// collector is a collector process with a fixed data dir and ports, so it
// can be killed and restarted in place.
type collector struct {
	t         *testing.T
	data      string
	grpc, web string
	// args are added to every `serve` of this collector.
	args []string
	p    *proc
}

func newCollector(t *testing.T, serveArgs ...string) *collector {
	c := &collector{t: t, data: filepath.Join(t.TempDir(), "collector"), grpc: freePort(t), web: freePort(t), args: serveArgs}
	c.start()
	return c
}

func (c *collector) start() {
	c.t.Helper()
	args := append([]string{"serve", "--data", c.data, "--grpc-listen", c.grpc, "--http-listen", c.web, "--heartbeat", "2s"}, c.args...)
	c.p = start(c.t, "vigil-collector", args...)
	waitFor(c.t, 60*time.Second, "collector admin socket", func() bool {
		_, _, code := run(c.t, "vigil-collector", "devices", "list", "--data", c.data, "--json")
		return code == 0
	})
}

// https is a client for the console (HTTPS) that trusts the collector's CA
// (DATA/pki/ca.pem) and nothing else, as a technician's browser would.
func (c *collector) https() *http.Client {
	c.t.Helper()
	pem, err := os.ReadFile(filepath.Join(c.data, "pki", "ca.pem"))
	if err != nil {
		c.t.Fatalf("read the collector CA: %v", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		c.t.Fatal("no certificate in pki/ca.pem")
	}
	return &http.Client{Timeout: 30 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
}

// url is the console URL of path.
func (c *collector) url(path string) string { return "https://" + c.web + path }

func (c *collector) token(group string, extra ...string) string {
	c.t.Helper()
	args := append([]string{"token", "create", "--data", c.data, "--group", group}, extra...)
	return strings.TrimSpace(mustRun(c.t, "vigil-collector", args...))
}

type finding struct {
	DeviceID string         `json:"device_id"`
	Seq      uint64         `json:"seq"`
	Time     string         `json:"time"`
	Check    string         `json:"check"`
	RuleID   string         `json:"rule_id"`
	Severity string         `json:"severity"`
	Status   string         `json:"status"`
	Message  string         `json:"message"`
	Details  map[string]any `json:"details"`
	// ScreenMatch is the typed match of a safeguarding alert.
	ScreenMatch map[string]any `json:"screen_match"`
}

func (c *collector) findings(device string) []finding {
	c.t.Helper()
	args := []string{"findings", "list", "--data", c.data, "--json"}
	if device != "" {
		args = append(args, "--device", device)
	}
	out := mustRun(c.t, "vigil-collector", args...)
	var fs []finding
	sc := bufio.NewScanner(strings.NewReader(out))
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		var f finding
		if err := json.Unmarshal(sc.Bytes(), &f); err != nil {
			c.t.Fatalf("findings list line %q: %v", sc.Text(), err)
		}
		fs = append(fs, f)
	}
	return fs
}

type device struct {
	DeviceID     string    `json:"device_id"`
	Group        string    `json:"group"`
	LastSeen     time.Time `json:"last_seen"`
	AgentVersion string    `json:"agent_version"`
	RulesHash    string    `json:"rules_hash"`
	Connected    bool      `json:"connected"`
	SpoolDepth   int64     `json:"spool_depth"`
	School       string    `json:"school"`
}

func (c *collector) devices() []device {
	c.t.Helper()
	out := mustRun(c.t, "vigil-collector", "devices", "list", "--data", c.data, "--json")
	var ds []device
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line == "" {
			continue
		}
		var d device
		if err := json.Unmarshal([]byte(line), &d); err != nil {
			c.t.Fatalf("devices list line %q: %v", line, err)
		}
		ds = append(ds, d)
	}
	return ds
}

// agent is an enrolled agent's state dir plus, while running, its process.
type agent struct {
	t     *testing.T
	state string
	// sock: this agent's session socket (each agent its own, so agents
	// of parallel tests never share the default path).
	sock string
	id   string
	args []string
	p    *proc
}

func enrollAgent(t *testing.T, c *collector, group string) *agent {
	t.Helper()
	return enrollWithToken(t, c, c.token(group))
}

// enrollWithToken enrolls an agent with a token made by the caller (one
// of another school, say).
func enrollWithToken(t *testing.T, c *collector, token string) *agent {
	t.Helper()
	a := &agent{t: t, state: filepath.Join(t.TempDir(), "agent"), sock: filepath.Join(t.TempDir(), "run", "session.sock")}
	out := mustRun(t, "vigil-agent", "enroll", "--collector", c.grpc, "--token", token, "--state", a.state)
	// "enrolled: device ID in group G"
	fields := strings.Fields(out)
	if len(fields) < 3 {
		t.Fatalf("enroll output %q", out)
	}
	a.id = fields[2]
	return a
}

func (a *agent) start(extra ...string) {
	a.t.Helper()
	args := append([]string{"run", "--state", a.state, "--session-socket", a.sock, "--backoff-max", "2s", "--log-level", "debug"}, extra...)
	a.args = extra
	a.p = start(a.t, "vigil-agent", args...)
	waitFor(a.t, 60*time.Second, "agent control socket", func() bool {
		_, _, code := run(a.t, "vigil-agent", "status", "--state", a.state)
		return code == 0
	})
}

type triggerResult struct {
	Count    int    `json:"count"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Nonce    string `json:"nonce"`
}

func (a *agent) trigger(n int, rule string) (triggerResult, error) {
	args := []string{"trigger-test", "--state", a.state, "--count", fmt.Sprint(n)}
	if rule != "" {
		args = append(args, "--rule", rule)
	}
	out, errOut, code := run(a.t, "vigil-agent", args...)
	var r triggerResult
	if code != 0 {
		return r, fmt.Errorf("trigger-test exit %d: %s", code, errOut)
	}
	return r, json.Unmarshal([]byte(out), &r)
}

type agentStatus struct {
	RulesHash string `json:"rules_hash"`
	Spool     struct {
		Count        int
		Bytes        int64
		NextSeq      uint64
		DroppedTotal uint64
	} `json:"spool"`
	Uplink struct {
		Connected  bool   `json:"connected"`
		LastError  string `json:"last_error"`
		AckedTotal uint64 `json:"acked_total"`
	} `json:"uplink"`
}

func (a *agent) status() agentStatus {
	a.t.Helper()
	out := mustRun(a.t, "vigil-agent", "status", "--state", a.state)
	// The first line is the service manager's view; the JSON follows.
	if i := strings.Index(out, "{"); i >= 0 {
		out = out[i:]
	}
	var s agentStatus
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		a.t.Fatalf("status %q: %v", out, err)
	}
	return s
}

// minWait is the least any waitFor waits before failing. The suite runs
// beside other work on 2-core CI machines, where starting a collector or an
// agent can take many seconds; a bound is a liveness check ("it happened
// at all"), never a latency figure (those are benchmarks), so a short d is
// raised to this. A passing wait returns as soon as cond holds.
const minWait = 60 * time.Second

func waitFor(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	d = max(d, minWait)
	deadline := time.Now().Add(d)
	for {
		if cond() {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

// storedExactly waits (within) until the collector holds a's findings and
// a's spool is drained, then requires exactly the emitted set, seqs
// 1..emitted: none stored twice, none lost, nothing more; every finding of
// an acknowledged trigger carries its nonce. It returns them by seq.
func storedExactly(t *testing.T, c *collector, a *agent, emitted uint64, acked []triggerResult, within time.Duration) map[uint64]finding {
	t.Helper()
	waitFor(t, within, "collector holds every emitted finding of "+a.id, func() bool {
		return uint64(len(c.findings(a.id))) >= emitted && a.status().Spool.Count == 0
	})
	got := c.findings(a.id)
	seen := make(map[uint64]finding, len(got))
	for _, f := range got {
		if _, dup := seen[f.Seq]; dup {
			t.Fatalf("agent %s: seq %d stored twice", a.id, f.Seq)
		}
		seen[f.Seq] = f
	}
	for s := uint64(1); s <= emitted; s++ {
		if _, ok := seen[s]; !ok {
			t.Fatalf("agent %s: seq %d lost", a.id, s)
		}
	}
	if uint64(len(seen)) != emitted {
		t.Fatalf("agent %s: collector holds %d findings, agent emitted %d", a.id, len(seen), emitted)
	}
	for _, r := range acked {
		for s := r.FirstSeq; s <= r.LastSeq; s++ {
			if seen[s].Details["nonce"] != r.Nonce {
				t.Fatalf("agent %s: seq %d: nonce %v, want %s", a.id, s, seen[s].Details["nonce"], r.Nonce)
			}
		}
	}
	return seen
}
