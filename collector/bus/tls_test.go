package bus

import (
	"bufio"
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/vigil-safeguarding/vigil/collector/pki"
)

func busMember(t *testing.T, pkiDir, name string) *TLS {
	t.Helper()
	dir := filepath.Join(t.TempDir(), name)
	if err := pki.IssueBusMember(pkiDir, name, []string{"127.0.0.1"}, dir); err != nil {
		t.Fatal(err)
	}
	m, err := LoadTLS(dir)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// logSink keeps what a node logs, for a test to wait on.
type logSink struct {
	mu    sync.Mutex
	lines []string
}

func (l *logSink) Enabled(context.Context, slog.Level) bool { return true }
func (l *logSink) Handle(_ context.Context, r slog.Record) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.lines = append(l.lines, r.Message)
	return nil
}
func (l *logSink) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *logSink) WithGroup(string) slog.Handler      { return l }
func (l *logSink) has(sub string) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, s := range l.lines {
		if strings.Contains(s, sub) {
			return true
		}
	}
	return false
}

// TestClusterOverMutualTLS: three nodes whose routes and client listeners
// are mutual TLS with bus certificates form an R3 stream, and a member's
// connection publishes and is acknowledged; a client with no certificate,
// or with one of another CA, is refused, and so is a node of another bus
// CA trying to join by routes.
func TestClusterOverMutualTLS(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test starts three servers")
	}
	pkiDir := t.TempDir()
	routes := []string{freeLoopbackPort(t), freeLoopbackPort(t), freeLoopbackPort(t)}
	clients := []string{freeLoopbackPort(t), freeLoopbackPort(t), freeLoopbackPort(t)}
	nodes := make([]*Node, 3)
	for i := range nodes {
		n, err := StartNode(Config{Dir: t.TempDir(), ServerName: fmt.Sprintf("n%d", i+1), ClientListen: clients[i],
			Cluster: &Cluster{Name: "vigil-tls", Listen: routes[i], Routes: routes}, TLS: busMember(t, pkiDir, fmt.Sprintf("n%d", i+1)), Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(n.Close)
		nodes[i] = n
	}
	urls := make([]string, 3)
	for i, c := range clients {
		urls[i] = "nats://" + c
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	b, err := Connect(ctx, urls, Config{ServerName: "fe", Replicas: 3, TLS: busMember(t, pkiDir, "fe"), Logger: testLogger()})
	if err != nil {
		t.Fatalf("a member connects over TLS: %v", err)
	}
	defer b.Close()
	if _, err := b.JetStream().Publish(ctx, SubjectPrefix+".default.dev1", []byte("batch")); err != nil {
		t.Fatalf("publish over TLS: %v", err)
	}
	stream, err := b.JetStream().Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil || info.Cluster == nil || len(info.Cluster.Replicas) != 2 || info.State.Msgs != 1 {
		t.Fatalf("stream over TLS routes: %+v, %v", info, err)
	}
	// The client listener announces TLS as required before anything else;
	// the route listener says nothing in clear at all (routes start with
	// the handshake) and drops a peer that does not begin one.
	for addr, want := range map[string]string{clients[0]: `"tls_required":true`, routes[0]: ""} {
		conn, err := net.DialTimeout("tcp", addr, 10*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		conn.SetReadDeadline(time.Now().Add(60 * time.Second))
		line, err := bufio.NewReader(conn).ReadString('\n')
		conn.Close()
		if want == "" && (line != "" || err == nil) || want != "" && !strings.Contains(line, want) {
			t.Errorf("%s says %q in clear (%v), want %q", addr, line, err, want)
		}
	}

	// A client without a certificate, or with another CA's.
	other := busMember(t, t.TempDir(), "other")
	for name, opt := range map[string]nats.Option{
		"no TLS":             func(*nats.Options) error { return nil },
		"no certificate":     nats.Secure(&tls.Config{RootCAs: b.cfg.TLS.pool, MinVersion: tls.VersionTLS13}),
		"another CA's cert":  nats.Secure(&tls.Config{RootCAs: b.cfg.TLS.pool, Certificates: other.client().Certificates, MinVersion: tls.VersionTLS13}),
		"another CA's roots": nats.Secure(other.client()),
	} {
		nc, err := nats.Connect(urls[0], opt, nats.NoReconnect(), nats.Timeout(10*time.Second))
		if err == nil {
			// TLS 1.3 reports a refused client certificate on first use.
			err = nc.Flush()
			if err == nil && nc.IsConnected() {
				_, err = nc.Request("$JS.API.INFO", nil, 5*time.Second)
			}
			nc.Close()
		}
		if err == nil {
			t.Errorf("%s: connected and used the bus", name)
		}
	}

	// A node of another bus CA dialling the routes is refused: its
	// handshake fails and the cluster does not grow.
	before := nodes[0].ns.NumRoutes()
	sink := &logSink{}
	rogue, err := StartNode(Config{Dir: t.TempDir(), ServerName: "rogue", ClientListen: freeLoopbackPort(t),
		Cluster: &Cluster{Name: "vigil-tls", Listen: freeLoopbackPort(t), Routes: routes}, TLS: other, Logger: slog.New(sink)})
	if err != nil {
		t.Fatal(err)
	}
	defer rogue.Close()
	deadline := time.Now().Add(90 * time.Second)
	for !sink.has("TLS") && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if !sink.has("TLS") {
		t.Errorf("the rogue node logged no TLS refusal: %v", sink.lines)
	}
	if rogue.ns.NumRoutes() != 0 || nodes[0].ns.NumRoutes() != before {
		t.Errorf("routes: rogue %d, n1 %d (was %d)", rogue.ns.NumRoutes(), nodes[0].ns.NumRoutes(), before)
	}
}

// TestBusAddressesNeedTLS: without bus TLS every listener, route and URL
// must be on loopback; with it they may be anywhere.
func TestBusAddressesNeedTLS(t *testing.T) {
	m := busMember(t, t.TempDir(), "n1")
	for _, cfg := range []Config{
		{Dir: t.TempDir(), ClientListen: "10.1.2.3:4222"},
		{Dir: t.TempDir(), ClientListen: "127.0.0.1:4222", Cluster: &Cluster{Name: "c", Listen: "0.0.0.0:6222"}},
		{Dir: t.TempDir(), ClientListen: "127.0.0.1:4222", Cluster: &Cluster{Name: "c", Listen: "127.0.0.1:6222", Routes: []string{"nats2.school.example:6222"}}},
	} {
		if _, err := serverOptions(cfg); !errors.Is(err, errNoTLS) {
			t.Errorf("%+v without TLS: %v", cfg, err)
		}
		cfg.TLS = m
		opts, err := serverOptions(cfg)
		if err != nil {
			t.Errorf("%+v with TLS: %v", cfg, err)
			continue
		}
		if opts.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert || !opts.TLSVerify ||
			(cfg.Cluster != nil && opts.Cluster.TLSConfig.ClientAuth != tls.RequireAndVerifyClientCert) {
			t.Errorf("%+v: listeners do not require a bus certificate", cfg)
		}
	}
	if _, err := Connect(context.Background(), []string{"nats://10.1.2.3:4222"}, Config{}); !errors.Is(err, errNoTLS) {
		t.Errorf("a remote URL without TLS: %v", err)
	}
}
