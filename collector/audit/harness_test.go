package audit

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/hex"
	"fmt"
	badger "github.com/dgraph-io/badger/v4"
	"log/slog"
	"net"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/server"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

var quiet = slog.New(slog.DiscardHandler)

// fleet is a real collector (CA, Badger store, gRPC server with the audit
// service wired as the daemon wires it) on 127.0.0.1, and simulated agents
// that speak the real Enroll and Stream RPCs over mTLS.
type fleet struct {
	ca   *pki.Authority
	st   *store.Store
	dir  string // the store's folder
	srv  *server.Server
	svc  *Service
	addr string
	now  atomic.Pointer[time.Time] // nil: the real clock
}

func newFleet(tb testing.TB) *fleet {
	tb.Helper()
	dir := tb.TempDir()
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	if err != nil {
		tb.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "badger"), store.Options{Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	f := &fleet{ca: ca, st: st, dir: filepath.Join(dir, "badger")}
	tb.Cleanup(func() { st.Close(); f.st.Close() })
	f.svc = &Service{Store: st, Logger: quiet, Now: f.clock}
	f.srv = server.New(server.Config{Store: st, CA: ca, Logger: quiet, MaxStreams: 5000, OnConnect: f.svc.DeviceConnected})
	f.svc.Agents = f.srv
	g := f.srv.GRPCServer(grpc.WaitForHandlers(true))
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); g.Serve(lis) }()
	tb.Cleanup(func() { g.Stop(); <-served })
	f.addr = lis.Addr().String()
	return f
}

func (f *fleet) clock() time.Time {
	if t := f.now.Load(); t != nil {
		return *t
	}
	return time.Now()
}

// simAgent is an enrolled device whose stream answers audit requests with
// inv (or, when failWith is set, with that error, as an old agent would).
type simAgent struct {
	f        *fleet
	id       string
	hostFP   string
	cert     tls.Certificate
	mu       sync.Mutex
	inv      *vigilv1.Inventory
	failWith string
	silent   bool // receives requests and never answers (a stream about to drop)
	cancel   context.CancelFunc
	done     chan struct{}
	sent     atomic.Int64 // bytes of audit answers sent
	asked    atomic.Int64
}

// enroll enrolls n devices in group with one multi-use token, as a
// technician's package would.
func (f *fleet) enroll(tb testing.TB, n int, group string, inv func(i int) *vigilv1.Inventory) []*simAgent {
	tb.Helper()
	idb, secret := make([]byte, 8), make([]byte, 24)
	rand.Read(idb)
	rand.Read(secret)
	tok := identity.Token{ID: hex.EncodeToString(idb), Secret: secret, CAFingerprint: f.ca.Fingerprint()}
	now := time.Now()
	if err := f.st.PutToken(store.Token{ID: tok.ID, SecretHash: identity.SecretHash(secret), Group: group, CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: n}); err != nil {
		tb.Fatal(err)
	}
	conn, err := grpc.NewClient(f.addr, grpc.WithTransportCredentials(credentials.NewTLS(pinned(f.ca.Fingerprint(), nil))))
	if err != nil {
		tb.Fatal(err)
	}
	defer conn.Close()
	out := make([]*simAgent, n)
	errs := make(chan error, n)
	var wg sync.WaitGroup
	sem := make(chan struct{}, 16)
	for i := range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem <- struct{}{}
			defer func() { <-sem }()
			key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
			csr, _ := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "vigil-agent"}}, key)
			fp := fmt.Sprintf("%s-%s-%04d", group, tok.ID[:4], i)
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			resp, err := vigilv1.NewEnrollmentClient(conn).Enroll(ctx, &vigilv1.EnrollRequest{Token: tok.String(), CsrDer: csr,
				Hostname: "pc-" + fp, Os: "linux", Arch: "amd64", HostFingerprint: fp, AgentVersion: "test"})
			if err != nil {
				errs <- err
				return
			}
			leaf, _ := x509.ParseCertificate(resp.ClientCertDer)
			a := &simAgent{f: f, id: resp.DeviceId, hostFP: fp, cert: tls.Certificate{Certificate: [][]byte{resp.ClientCertDer}, PrivateKey: key, Leaf: leaf}}
			if inv != nil {
				a.inv = inv(i)
			}
			out[i] = a
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		tb.Fatalf("enroll: %v", err)
	}
	return out
}

func pinned(caFP string, cert *tls.Certificate) *tls.Config {
	c := &tls.Config{MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, VerifyPeerCertificate: identity.PinnedVerifier(caFP)}
	if cert != nil {
		c.Certificates = []tls.Certificate{*cert}
	}
	return c
}

func (a *simAgent) setInventory(inv *vigilv1.Inventory) {
	a.mu.Lock()
	a.inv = inv
	a.mu.Unlock()
}

// connect opens the agent's stream and answers requests until disconnect.
func (a *simAgent) connect(tb testing.TB) {
	tb.Helper()
	conn, err := grpc.NewClient(a.f.addr, grpc.WithTransportCredentials(credentials.NewTLS(pinned(a.f.ca.Fingerprint(), &a.cert))))
	if err != nil {
		tb.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := vigilv1.NewCollectorClient(conn).Stream(ctx)
	if err != nil {
		cancel()
		tb.Fatal(err)
	}
	if err := s.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: &vigilv1.Hello{AgentVersion: "test", HostFingerprint: a.hostFP, Hostname: "pc-" + a.hostFP, InstanceId: a.hostFP}}}); err != nil {
		cancel()
		tb.Fatal(err)
	}
	if m, err := s.Recv(); err != nil || m.GetWelcome() == nil {
		cancel()
		tb.Fatalf("welcome: %v %v", m, err)
	}
	a.cancel = cancel
	a.done = make(chan struct{})
	var sendMu sync.Mutex
	go func() {
		defer close(a.done)
		defer conn.Close()
		for {
			m, err := s.Recv()
			if err != nil {
				return
			}
			req := m.GetRequest()
			if req == nil {
				continue
			}
			a.asked.Add(1)
			res := &vigilv1.RequestResult{RequestId: req.RequestId}
			a.mu.Lock()
			if a.silent {
				a.mu.Unlock()
				continue
			}
			switch {
			case req.Kind != RequestKind:
				res.Error = "unknown request kind " + req.Kind
			case a.failWith != "":
				res.Error = a.failWith
			default:
				res.Ok, res.Inventory = true, a.inv
			}
			a.mu.Unlock()
			msg := &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Result{Result: res}}
			if req.Kind == RequestKind {
				a.sent.Add(int64(proto.Size(msg)))
			}
			sendMu.Lock()
			s.Send(msg)
			sendMu.Unlock()
		}
	}()
	tb.Cleanup(a.disconnect)
}

func (a *simAgent) disconnect() {
	if a.cancel != nil {
		a.cancel()
		<-a.done
		a.cancel = nil
	}
}

// waitFor polls cond up to 60 s (a busy 2-core machine).
func waitFor(tb testing.TB, what string, cond func() bool) {
	tb.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			tb.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func smallInventory(sw map[string]string, compliance map[string]string) *vigilv1.Inventory {
	inv := &vigilv1.Inventory{Hardware: &vigilv1.Hardware{Model: "T480", CpuCores: 4}, Os: &vigilv1.OperatingSystem{Name: "debian"}}
	for n, v := range sw {
		inv.Software = append(inv.Software, &vigilv1.SoftwareItem{Name: n, Version: v, Source: "dpkg"})
	}
	for r, st := range compliance {
		inv.Compliance = append(inv.Compliance, &vigilv1.ComplianceState{RuleId: r, Check: r, Status: st})
	}
	return inv
}

// tamper changes one stored key behind the store's back, as someone with
// the disk would: the store is closed, the key rewritten with Badger
// directly, and the store opened again for the audit service.
func (f *fleet) tamper(tb testing.TB, key, value []byte) {
	tb.Helper()
	f.st.Close()
	db, err := badger.Open(badger.DefaultOptions(f.dir).WithLogger(nil))
	if err != nil {
		tb.Fatal(err)
	}
	if err := db.Update(func(txn *badger.Txn) error { return txn.Set(key, value) }); err != nil {
		tb.Fatal(err)
	}
	if err := db.Close(); err != nil {
		tb.Fatal(err)
	}
	st, err := store.Open(f.dir, store.Options{Logger: quiet})
	if err != nil {
		tb.Fatal(err)
	}
	f.st, f.svc.Store = st, st
}
