package server

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// rpcTimeout bounds every single client operation in these tests; the
// server is on loopback, so anything near it is a hang.
const rpcTimeout = 5 * time.Second

var quietLog = slog.New(slog.DiscardHandler)

// testEnv is one real collector: its own CA and Badger store in temp dirs,
// the real grpc.Server from GRPCServer served on 127.0.0.1:0.
type testEnv struct {
	ca   *pki.Authority
	st   *store.Store
	srv  *Server
	g    *grpc.Server
	addr string
}

// newEnv starts a collector. cfg.Store, cfg.CA and cfg.Logger are filled in.
func newEnv(tb testing.TB, cfg Config, sopts store.Options) *testEnv {
	tb.Helper()
	dir := tb.TempDir()
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	sopts.Logger = quietLog
	st, err := store.Open(filepath.Join(dir, "badger"), sopts)
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		if err := st.Close(); err != nil {
			tb.Errorf("close store: %v", err)
		}
	})
	if cfg.Logger == nil {
		cfg.Logger = quietLog
	}
	cfg.Store, cfg.CA = st, ca
	srv := New(cfg)
	g := srv.GRPCServer(grpc.WaitForHandlers(true))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); g.Serve(lis) }()
	// Cleanups run last-in first-out: the gRPC server (and every handler)
	// is gone before the store closes.
	tb.Cleanup(func() { g.Stop(); <-served })
	return &testEnv{ca: ca, st: st, srv: srv, g: g, addr: lis.Addr().String()}
}

// tokenSpec is what `vigil-collector token create` would be asked for.
type tokenSpec struct {
	group string
	ttl   time.Duration // default 1h; negative makes an expired token
	uses  int           // default 1
	caFP  string        // fingerprint put in the token string; default the env's CA
}

// mintToken mirrors collector/admin createToken: random id and secret, the
// secret's hash stored, the token string returned.
func (e *testEnv) mintToken(tb testing.TB, spec tokenSpec) (identity.Token, string) {
	tb.Helper()
	if spec.group == "" {
		spec.group = "pupils"
	}
	if spec.ttl == 0 {
		spec.ttl = time.Hour
	}
	if spec.uses == 0 {
		spec.uses = 1
	}
	if spec.caFP == "" {
		spec.caFP = e.ca.Fingerprint()
	}
	now := time.Now()
	idb, secret := make([]byte, 8), make([]byte, 24)
	rand.Read(idb)
	rand.Read(secret)
	tok := identity.Token{ID: hex.EncodeToString(idb), Secret: secret, CAFingerprint: spec.caFP}
	rec := store.Token{ID: tok.ID, SecretHash: identity.SecretHash(secret), Group: spec.group,
		CreatedAt: now, ExpiresAt: now.Add(spec.ttl), MaxUses: spec.uses}
	if err := e.st.PutToken(rec); err != nil {
		tb.Fatal(err)
	}
	return tok, tok.String()
}

// pinnedTLS is the client TLS config agents use: the collector verified only
// by the pinned CA fingerprint, optionally with a client certificate.
func pinnedTLS(caFP string, cert *tls.Certificate) *tls.Config {
	c := &tls.Config{
		MinVersion:            tls.VersionTLS13,
		InsecureSkipVerify:    true, // verified by the pin
		VerifyPeerCertificate: identity.PinnedVerifier(caFP),
	}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

func dial(tb testing.TB, addr string, cfg *tls.Config) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(cfg)))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// device is an enrolled test agent.
type device struct {
	id     string
	group  string
	hostFP string
	key    *ecdsa.PrivateKey
	cert   tls.Certificate
	env    *testEnv // the collector it enrolled with
}

// enrollReq makes a fresh P-256 key and the EnrollRequest for it.
func enrollReq(tb testing.TB, token, hostFP string) (*ecdsa.PrivateKey, *vigilv1.EnrollRequest) {
	tb.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		tb.Fatal(err)
	}
	return key, enrollReqFor(tb, key, token, hostFP)
}

func enrollReqFor(tb testing.TB, key *ecdsa.PrivateKey, token, hostFP string) *vigilv1.EnrollRequest {
	tb.Helper()
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "vigil-agent"}}, key)
	if err != nil {
		tb.Fatal(err)
	}
	return &vigilv1.EnrollRequest{Token: token, CsrDer: csr, Hostname: "pc-" + hostFP, Os: "linux", Arch: "amd64",
		HostFingerprint: hostFP, AgentVersion: "test"}
}

// enrollConn is a server-only TLS connection pinned to this collector's CA,
// as agent/enroll makes.
func (e *testEnv) enrollConn(tb testing.TB) *grpc.ClientConn {
	return dial(tb, e.addr, pinnedTLS(e.ca.Fingerprint(), nil))
}

// callEnroll sends req over conn and turns a success into a device.
func (e *testEnv) callEnroll(conn *grpc.ClientConn, key *ecdsa.PrivateKey, req *vigilv1.EnrollRequest) (*device, *vigilv1.EnrollResponse, error) {
	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	resp, err := vigilv1.NewEnrollmentClient(conn).Enroll(ctx, req)
	if err != nil {
		return nil, nil, err
	}
	leaf, err := x509.ParseCertificate(resp.ClientCertDer)
	if err != nil {
		return nil, resp, fmt.Errorf("parse client certificate: %w", err)
	}
	d := &device{id: resp.DeviceId, group: resp.Group, hostFP: req.HostFingerprint, key: key, env: e,
		cert: tls.Certificate{Certificate: [][]byte{resp.ClientCertDer}, PrivateKey: key, Leaf: leaf}}
	return d, resp, nil
}

var hostSeq struct {
	sync.Mutex
	n int
}

func nextHostFP() string {
	hostSeq.Lock()
	defer hostSeq.Unlock()
	hostSeq.n++
	return fmt.Sprintf("machine-%04d", hostSeq.n)
}

// enrollDevice mints a token and enrolls a new device with it.
func (e *testEnv) enrollDevice(tb testing.TB) *device {
	tb.Helper()
	_, tok := e.mintToken(tb, tokenSpec{})
	key, req := enrollReq(tb, tok, nextHostFP())
	d, _, err := e.callEnroll(e.enrollConn(tb), key, req)
	if err != nil {
		tb.Fatalf("enroll: %v", err)
	}
	return d
}

// conn opens the device's own mTLS connection to the collector it enrolled
// with.
func (d *device) conn(tb testing.TB) *grpc.ClientConn {
	return d.connTo(tb, d.env)
}

func (d *device) connTo(tb testing.TB, e *testEnv) *grpc.ClientConn {
	return dial(tb, e.addr, pinnedTLS(e.ca.Fingerprint(), &d.cert))
}

// agentStream is one Collector.Stream from the agent's side.
type agentStream struct {
	s      vigilv1.Collector_StreamClient
	cancel context.CancelFunc
}

func (d *device) hello(instance string) *vigilv1.Hello {
	return &vigilv1.Hello{AgentVersion: "test", RulesHash: "r0", HostFingerprint: d.hostFP,
		Hostname: "pc-" + d.hostFP, Os: "linux", Arch: "amd64", InstanceId: instance}
}

// openStream opens Stream on conn, sends hello and returns the welcome. The
// stream lives until the test ends (or close is called).
func openStream(tb testing.TB, conn *grpc.ClientConn, hello *vigilv1.Hello) (*agentStream, *vigilv1.Welcome, error) {
	tb.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	tb.Cleanup(cancel)
	s, err := vigilv1.NewCollectorClient(conn).Stream(ctx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	as := &agentStream{s: s, cancel: cancel}
	if err := as.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: hello}}); err != nil {
		// A refused stream reports why on Recv.
		_, rerr := as.recv()
		cancel()
		if rerr != nil {
			return nil, nil, rerr
		}
		return nil, nil, err
	}
	m, err := as.recv()
	if err != nil {
		cancel()
		return nil, nil, err
	}
	w := m.GetWelcome()
	if w == nil {
		cancel()
		return nil, nil, fmt.Errorf("first collector message is %T, want welcome", m.Msg)
	}
	return as, w, nil
}

// mustStream opens a stream for d on a new connection and checks the welcome.
func (d *device) mustStream(tb testing.TB, instance string) *agentStream {
	tb.Helper()
	as, w, err := openStream(tb, d.conn(tb), d.hello(instance))
	if err != nil {
		tb.Fatalf("open stream for %s: %v", d.id, err)
	}
	if w.DeviceId != d.id || w.Group != d.group {
		tb.Fatalf("welcome for %s/%s, want %s/%s", w.DeviceId, w.Group, d.id, d.group)
	}
	return as
}

func (as *agentStream) send(m *vigilv1.AgentMessage) error { return as.s.Send(m) }

// recv waits at most rpcTimeout for the next collector message.
func (as *agentStream) recv() (*vigilv1.CollectorMessage, error) {
	type res struct {
		m   *vigilv1.CollectorMessage
		err error
	}
	ch := make(chan res, 1)
	go func() { m, err := as.s.Recv(); ch <- res{m, err} }()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-time.After(rpcTimeout):
		as.cancel()
		return nil, errors.New("timed out waiting for a collector message")
	}
}

// recvAck skips rules pushes and returns the next ack or the stream error.
func (as *agentStream) recvAck() (*vigilv1.Ack, error) {
	for {
		m, err := as.recv()
		if err != nil {
			return nil, err
		}
		if a := m.GetAck(); a != nil {
			return a, nil
		}
		if m.GetRules() == nil {
			return nil, fmt.Errorf("unexpected collector message %T while waiting for an ack", m.Msg)
		}
	}
}

// sendBatch sends one batch and waits for its ack.
func (as *agentStream) sendBatch(id uint64, fs []*vigilv1.Finding) (*vigilv1.Ack, error) {
	if err := as.send(batchMsg(id, fs)); err != nil {
		// The server already ended the stream; Recv says why.
		if _, rerr := as.recv(); rerr != nil {
			return nil, rerr
		}
		return nil, err
	}
	a, err := as.recvAck()
	if err != nil {
		return nil, err
	}
	if a.BatchId != id {
		return a, fmt.Errorf("ack for batch %d, want %d", a.BatchId, id)
	}
	return a, nil
}

// expectEnd waits for the stream to end and returns its status.
func (as *agentStream) expectEnd() error {
	for i := 0; i < 100; i++ {
		m, err := as.recv()
		if err != nil {
			return err
		}
		if m.GetAck() != nil {
			return fmt.Errorf("got ack %v, want the stream to end", m.GetAck())
		}
	}
	return errors.New("stream did not end")
}

func batchMsg(id uint64, fs []*vigilv1.Finding) *vigilv1.AgentMessage {
	return &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Findings{Findings: &vigilv1.FindingBatch{BatchId: id, Findings: fs}}}
}

var baseTime = time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)

// mkFinding builds a realistic finding of about 300 bytes.
func mkFinding(seq uint64) *vigilv1.Finding {
	details, _ := structpb.NewStruct(map[string]any{
		"process": "chrome.exe",
		"url":     "https://search.example.com/search?q=how+to+get+around+the+school+filter",
		"window":  "How to get around the school filter - Search",
		"matched": "school filter",
	})
	return &vigilv1.Finding{
		Seq:         seq,
		ObservedAt:  timestamppb.New(baseTime.Add(time.Duration(seq) * time.Millisecond)),
		User:        "pupil.2031",
		Check:       "browser-history",
		RuleId:      "filter-evasion",
		RuleVersion: 3,
		Severity:    vigilv1.Severity_SEVERITY_MEDIUM,
		Category:    "evasion",
		Message:     "Search for ways around the web filter",
		Details:     details,
		RulesHash:   "3f1c9a7e5b2d4f60",
	}
}

// seqRange makes findings for seqs from..to inclusive.
func seqRange(from, to uint64) []*vigilv1.Finding {
	var out []*vigilv1.Finding
	for s := from; s <= to; s++ {
		out = append(out, mkFinding(s))
	}
	return out
}

// storedFindings lists what the store holds for a device, by seq.
func storedFindings(tb testing.TB, st *store.Store, dev string) map[uint64]*vigilv1.Finding {
	tb.Helper()
	out := map[uint64]*vigilv1.Finding{}
	err := st.ListFindings(context.Background(), store.Query{Device: dev}, func(f *vigilv1.Finding) bool {
		out[f.Seq] = f
		return true
	})
	if err != nil {
		tb.Fatal(err)
	}
	return out
}

func codeOf(err error) codes.Code { return status.Code(err) }

// wantCode fails unless err is a gRPC status with code c and, when
// contains is given, a message containing it.
func wantCode(tb testing.TB, what string, err error, c codes.Code, contains string) {
	tb.Helper()
	if err == nil {
		tb.Errorf("%s: succeeded, want %v", what, c)
		return
	}
	st, _ := status.FromError(err)
	if st.Code() != c {
		tb.Errorf("%s: %v, want code %v", what, err, c)
		return
	}
	if contains != "" && !containsFold(st.Message(), contains) {
		tb.Errorf("%s: message %q does not contain %q", what, st.Message(), contains)
	}
}

func containsFold(s, sub string) bool {
	return strings.Contains(strings.ToLower(s), strings.ToLower(sub))
}

func errAck(a *vigilv1.Ack) error {
	return fmt.Errorf("ack %v does not cover the whole batch", a)
}
