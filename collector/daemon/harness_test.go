package daemon_test

import (
	"bufio"
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/exec"
	"os/signal"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/cli"
	"github.com/vigil-safeguarding/vigil/collector/daemon"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	"github.com/vigil-safeguarding/vigil/internal/testutil"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// collector is a real daemon.Serve in this process: real listeners on
// loopback, the admin socket, Badger in a temp dir.
type collector struct {
	dir, grpcAddr, httpAddr string
	caFP                    string
	logs                    *testutil.SyncBuffer
	done                    chan error
}

func startCollector(t *testing.T, cfg daemon.Config) *collector {
	t.Helper()
	c := &collector{dir: t.TempDir(), logs: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	cfg.DataDir, cfg.GRPCListen, cfg.HTTPListen = c.dir, "127.0.0.1:0", "127.0.0.1:0"
	cfg.Logger = slog.New(slog.NewTextHandler(c.logs, &slog.HandlerOptions{Level: slog.LevelInfo}))
	ready := make(chan [2]string, 1)
	cfg.Ready = func(g, h string) { ready <- [2]string{g, h} }
	ctx, cancel := context.WithCancel(context.Background())
	go func() { c.done <- daemon.Serve(ctx, cfg) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-c.done:
			if err != nil {
				t.Errorf("collector ended with %v", err)
			}
		case <-time.After(60 * time.Second):
			t.Error("collector did not stop within 60s")
		}
		if t.Failed() {
			t.Logf("collector log:\n%s", c.logs.String())
		}
	})
	select {
	case a := <-ready:
		c.grpcAddr, c.httpAddr = a[0], a[1]
	case err := <-c.done:
		t.Fatalf("collector did not start: %v", err)
	case <-time.After(60 * time.Second):
		t.Fatal("collector did not start within 60s")
	}
	c.caFP = c.fingerprint(t)
	return c
}

// fingerprint reads the CA fingerprint out of a token the admin API mints.
func (c *collector) fingerprint(t *testing.T) string {
	tok, err := identity.ParseToken(c.token(t, "probe"))
	if err != nil {
		t.Fatal(err)
	}
	return tok.CAFingerprint
}

// cli runs a vigil-collector command against this collector.
func (c *collector) cli(t *testing.T, args ...string) (string, error) {
	t.Helper()
	var out, errOut bytes.Buffer
	args = append(args[:len(args):len(args)], "--data", c.dir)
	if code := cli.Main(args, &out, &errOut); code != 0 {
		return out.String(), fmt.Errorf("vigil-collector %s: exit %d: %s", strings.Join(args, " "), code, errOut.String())
	}
	return out.String(), nil
}

// cliWithin is cli bounded in time: an admin socket nobody accepts on
// would otherwise hang the command.
func (c *collector) cliWithin(t *testing.T, d time.Duration, args ...string) error {
	t.Helper()
	errc := make(chan error, 1)
	go func() { _, err := c.cli(t, args...); errc <- err }()
	select {
	case err := <-errc:
		return err
	case <-time.After(d):
		return fmt.Errorf("vigil-collector %s: no answer within %s", strings.Join(args, " "), d)
	}
}

func (c *collector) token(t *testing.T, group string) string {
	t.Helper()
	out, err := c.cli(t, "token", "create", "--group", group)
	if err != nil {
		t.Fatal(err)
	}
	return strings.TrimSpace(out)
}

func (c *collector) get(path string, timeout time.Duration, header ...string) (int, string, error) {
	req, err := http.NewRequest("GET", "https://"+c.httpAddr+path, nil)
	if err != nil {
		return 0, "", err
	}
	for i := 0; i+1 < len(header); i += 2 {
		req.Header.Set(header[i], header[i+1])
	}
	tlsCfg, err := c.consoleTLS()
	if err != nil {
		return 0, "", err
	}
	cl := &http.Client{Timeout: timeout, Transport: &http.Transport{DisableKeepAlives: true, TLSClientConfig: tlsCfg}}
	resp, err := cl.Do(req)
	if err != nil {
		return 0, "", err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), err
}

// consoleTLS trusts the collector's CA (DATA/pki/ca.pem) and nothing else,
// as a technician's browser would once told to.
func (c *collector) consoleTLS() (*tls.Config, error) {
	pem, err := os.ReadFile(filepath.Join(c.dir, "pki", "ca.pem"))
	if err != nil {
		return nil, err
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(pem) {
		return nil, errors.New("no CA in pki/ca.pem")
	}
	return &tls.Config{RootCAs: pool, ServerName: "127.0.0.1", MinVersion: tls.VersionTLS12}, nil
}

// agent is a device enrolled over the real Enrollment service, holding its
// key, certificate and the values the collector recorded.
type agent struct {
	id, group, hostFP string
	key               *ecdsa.PrivateKey
	cert              tls.Certificate
	c                 *collector
}

func pinned(caFP string, cert *tls.Certificate) *tls.Config {
	cfg := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, VerifyPeerCertificate: identity.PinnedVerifier(caFP)}
	if cert != nil {
		cfg.Certificates = []tls.Certificate{*cert}
	}
	return cfg
}

func (c *collector) dial(t *testing.T, cert *tls.Certificate) *grpc.ClientConn {
	t.Helper()
	conn, err := grpc.NewClient(c.grpcAddr, grpc.WithTransportCredentials(credentials.NewTLS(pinned(c.caFP, cert))))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return conn
}

func newKey(t *testing.T) *ecdsa.PrivateKey {
	t.Helper()
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return k
}

// enroll sends an EnrollRequest for key with token.
func (c *collector) enroll(t *testing.T, key *ecdsa.PrivateKey, token, hostFP string) (*agent, error) {
	t.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "vigil-agent"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	conn := c.dial(t, nil)
	defer conn.Close() // as agent/enroll does: the enrollment connection ends with it
	resp, err := vigilv1.NewEnrollmentClient(conn).Enroll(ctx, &vigilv1.EnrollRequest{
		Token: token, CsrDer: csr, Hostname: "pc-" + hostFP, Os: "linux", Arch: "amd64", HostFingerprint: hostFP, AgentVersion: "test"})
	if err != nil {
		return nil, err
	}
	leaf, err := x509.ParseCertificate(resp.ClientCertDer)
	if err != nil {
		t.Fatal(err)
	}
	return &agent{id: resp.DeviceId, group: resp.Group, hostFP: hostFP, key: key, c: c,
		cert: tls.Certificate{Certificate: [][]byte{resp.ClientCertDer}, PrivateKey: key, Leaf: leaf}}, nil
}

func (c *collector) mustEnroll(t *testing.T, group, hostFP string) *agent {
	t.Helper()
	a, err := c.enroll(t, newKey(t), c.token(t, group), hostFP)
	if err != nil {
		t.Fatalf("enroll: %v", err)
	}
	return a
}

// stream is one agent stream, after hello and welcome.
type stream struct {
	s      vigilv1.Collector_StreamClient
	cancel context.CancelFunc
}

func (a *agent) openStream(t *testing.T, instance string) (*stream, error) {
	t.Helper()
	return a.openStreamOn(t, a.c.dial(t, &a.cert), instance)
}

func (a *agent) openStreamOn(t *testing.T, conn *grpc.ClientConn, instance string) (*stream, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := vigilv1.NewCollectorClient(conn).Stream(ctx)
	if err != nil {
		cancel()
		return nil, err
	}
	st := &stream{s: s, cancel: cancel}
	hello := &vigilv1.Hello{AgentVersion: "test", RulesHash: "r0", HostFingerprint: a.hostFP, Hostname: "pc-" + a.hostFP, InstanceId: instance}
	if err := s.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: hello}}); err != nil {
		// io.EOF means the server already ended the stream (a refusal
		// before reading hello); its status comes from Recv.
		if errors.Is(err, io.EOF) {
			_, err = s.Recv()
		}
		cancel()
		return nil, err
	}
	for {
		m, err := st.recv(20 * time.Second)
		if err != nil {
			cancel()
			return nil, err
		}
		if m.GetWelcome() != nil {
			return st, nil
		}
	}
}

func (s *stream) recv(d time.Duration) (*vigilv1.CollectorMessage, error) {
	type res struct {
		m   *vigilv1.CollectorMessage
		err error
	}
	ch := make(chan res, 1)
	go func() { m, err := s.s.Recv(); ch <- res{m, err} }()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-time.After(d):
		s.cancel()
		return nil, fmt.Errorf("no collector message within %s", d)
	}
}

// batch sends findings and waits for their ack.
func (s *stream) batch(id uint64, fs []*vigilv1.Finding) (*vigilv1.Ack, error) {
	if err := s.s.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Findings{Findings: &vigilv1.FindingBatch{BatchId: id, Findings: fs}}}); err != nil {
		return nil, err
	}
	for {
		m, err := s.recv(30 * time.Second)
		if err != nil {
			return nil, err
		}
		if a := m.GetAck(); a != nil {
			return a, nil
		}
	}
}

var t0 = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

func findings(from, to uint64) []*vigilv1.Finding {
	var out []*vigilv1.Finding
	for s := from; s <= to; s++ {
		out = append(out, &vigilv1.Finding{Seq: s, ObservedAt: timestamppb.New(t0.Add(time.Duration(s) * time.Second)),
			User: "pupil.2031", Check: "browser-history", RuleId: "filter-evasion", RuleVersion: 1,
			Severity: vigilv1.Severity_SEVERITY_MEDIUM, Category: "evasion", Message: "Search for ways around the web filter"})
	}
	return out
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %s waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// accessLog reads the access log through the CLI.
func (c *collector) accessLog(t *testing.T) []map[string]any {
	t.Helper()
	out, err := c.cli(t, "access-log", "--json")
	if err != nil {
		t.Fatal(err)
	}
	var entries []map[string]any
	dec := json.NewDecoder(strings.NewReader(out))
	for dec.More() {
		var e map[string]any
		if err := dec.Decode(&e); err != nil {
			t.Fatal(err)
		}
		entries = append(entries, e)
	}
	return entries
}

const collectorProcEnv = "VIGIL_TEST_COLLECTOR_DIR"

// TestCollectorProcess is not a test of its own: it is the collector
// process startCollectorProcess runs, under its own descriptor limit.
func TestCollectorProcess(t *testing.T) {
	dir := os.Getenv(collectorProcEnv)
	if dir == "" {
		t.Skip("helper process of startCollectorProcess")
	}
	limit, _ := strconv.ParseUint(os.Getenv("VIGIL_TEST_FDLIMIT"), 10, 64)
	if err := syscall.Setrlimit(syscall.RLIMIT_NOFILE, &syscall.Rlimit{Cur: limit, Max: limit}); err != nil {
		t.Fatal(err)
	}
	hs, _ := time.ParseDuration(os.Getenv("VIGIL_TEST_HANDSHAKE"))
	life, _ := time.ParseDuration(os.Getenv("VIGIL_TEST_UNAUTH_LIFETIME"))
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM)
	defer stop()
	err := daemon.Serve(ctx, daemon.Config{DataDir: dir, GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		HandshakeTimeout: hs, UnauthLifetime: life,
		Logger: slog.New(slog.NewTextHandler(os.Stderr, nil)),
		Ready:  func(g, h string) { fmt.Printf("READY %s %s\n", g, h) }})
	if err != nil {
		t.Fatal(err)
	}
}

// startCollectorProcess runs the collector in a child process (this test
// binary, as TestCollectorProcess) whose descriptor limit is fdLimit, so a
// test can exhaust descriptors from outside it, as an attacker would.
func startCollectorProcess(t *testing.T, fdLimit int, handshake, unauthLifetime time.Duration) *collector {
	t.Helper()
	c := &collector{dir: t.TempDir(), logs: &testutil.SyncBuffer{}, done: make(chan error, 1)}
	cmd := exec.Command(os.Args[0], "-test.run=^TestCollectorProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), collectorProcEnv+"="+c.dir, fmt.Sprintf("VIGIL_TEST_FDLIMIT=%d", fdLimit),
		"VIGIL_TEST_HANDSHAKE="+handshake.String(), "VIGIL_TEST_UNAUTH_LIFETIME="+unauthLifetime.String())
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stderr = c.logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	ready := make(chan [2]string, 1)
	go func() {
		sc := bufio.NewScanner(out)
		for sc.Scan() {
			if f := strings.Fields(sc.Text()); len(f) == 3 && f[0] == "READY" {
				ready <- [2]string{f[1], f[2]}
			}
		}
	}()
	go func() { c.done <- cmd.Wait() }()
	t.Cleanup(func() {
		cmd.Process.Signal(syscall.SIGTERM)
		select {
		case err := <-c.done:
			if err != nil {
				t.Errorf("collector process: %v", err)
			}
		case <-time.After(60 * time.Second):
			cmd.Process.Kill()
			t.Error("collector process did not stop within 60s of SIGTERM")
		}
		if t.Failed() {
			t.Logf("collector log:\n%s", c.logs.String())
		}
	})
	select {
	case a := <-ready:
		c.grpcAddr, c.httpAddr = a[0], a[1]
	case err := <-c.done:
		t.Fatalf("collector process ended: %v\n%s", err, c.logs.String())
	case <-time.After(90 * time.Second):
		t.Fatalf("collector process not ready within 90s\n%s", c.logs.String())
	}
	c.caFP = c.fingerprint(t)
	return c
}
