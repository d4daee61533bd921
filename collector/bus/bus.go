// Package bus carries agents' findings from the collector's front-end (the
// gRPC stream an agent holds) to the store through NATS JetStream, so that
// front-ends need not own the store: a batch is published, the agent is
// acknowledged once JetStream has durably stored it (file storage, fsync on
// every write), and a Storer consumes it into Badger, acknowledging the
// JetStream message only after the Badger commit.
//
// The single-server default embeds nats-server in the collector process with
// no client listener (an in-process connection); Cluster joins three such
// embedded servers by routes for an R3 stream. No replication here is our
// own: it is JetStream's Raft.
package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

// Names of the findings stream and its subjects: vigil.findings.SCHOOL.DEVICE,
// so that a storer can take one school's subjects (vigil.findings.SCHOOL.>).
const (
	StreamName     = "VIGIL_FINDINGS"
	SubjectPrefix  = "vigil.findings"
	DefaultSchool  = "default"
	storeSubdir    = "jetstream"
	defaultMaxSize = 8 << 30
)

// Cluster joins this embedded server to others by routes. Without
// Config.TLS, Listen and every route must be loopback addresses: routes
// would carry findings in clear and unauthenticated. With it, they may be
// anywhere: every route is mutual TLS with bus certificates.
type Cluster struct {
	Name   string   // cluster name, the same on every node
	Listen string   // host:port of this node's route listener
	Routes []string // host:port of every node's route listener (this one's may be included)
}

// Config for Start.
type Config struct {
	// Dir is the collector's data dir; JetStream's file store goes in
	// Dir/jetstream.
	Dir string
	// ServerName names this node (unique in a cluster; default "vigil").
	ServerName string
	// ClientListen, when set, opens a NATS client listener there (loopback
	// only, so other front-ends on this machine can publish); empty keeps
	// the server reachable only in-process.
	ClientListen string
	// Cluster, when set, makes this node one of a JetStream cluster.
	Cluster *Cluster
	// Replicas of the findings stream (default 1; 3 in a 3-node cluster).
	Replicas int
	// MaxBytes bounds the stream on disk (default 8 GiB). When it is full
	// a publish is refused and the agent keeps the batch in its spool.
	MaxBytes int64
	// DupeWindow is how long JetStream remembers a Nats-Msg-Id (default
	// 2m). Past it a resent batch is stored twice in the stream and the
	// store's (device_id, seq) idempotency drops the second.
	DupeWindow time.Duration
	// TLS, when set, makes every listener, route and connection of this
	// member mutual TLS with bus certificates (LoadTLS), and lifts the
	// loopback-only rule.
	TLS    *TLS
	Logger *slog.Logger
}

// Bus is a running embedded server with a connection to it.
type Bus struct {
	cfg Config
	log *slog.Logger
	ns  *server.Server
	nc  *nats.Conn
	js  jetstream.JetStream
}

// Node is a running nats-server with JetStream, embedded in this process:
// the collector's own (Start) or a cluster node run as its own process
// (`vigil-collector nats-node`).
type Node struct {
	ns *server.Server
}

// StartNode runs a nats-server with cfg's options (SyncAlways file store in
// cfg.Dir/jetstream) and waits until it accepts connections. It creates no
// stream: that is done by whoever connects to publish or store.
func StartNode(cfg Config) (*Node, error) {
	if cfg.Dir == "" {
		return nil, errors.New("bus: no data dir")
	}
	if cfg.ServerName == "" {
		cfg.ServerName = "vigil"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	opts, err := serverOptions(cfg)
	if err != nil {
		return nil, err
	}
	ns, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("bus: configure nats-server: %w", err)
	}
	ns.SetLoggerV2(&slogAdapter{log: cfg.Logger.With("part", "nats")}, false, false, false)
	go ns.Start()
	if !ns.ReadyForConnections(30 * time.Second) {
		ns.Shutdown()
		return nil, errors.New("bus: nats-server not ready within 30s")
	}
	return &Node{ns: ns}, nil
}

// ClientURL is where a NATS client reaches this node.
func (n *Node) ClientURL() string { return n.ns.ClientURL() }

// Close shuts the server down and waits for it.
func (n *Node) Close() {
	n.ns.Shutdown()
	n.ns.WaitForShutdown()
}

func (cfg *Config) defaults() {
	if cfg.ServerName == "" {
		cfg.ServerName = "vigil"
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 1
	}
	if cfg.MaxBytes <= 0 {
		cfg.MaxBytes = defaultMaxSize
	}
	if cfg.DupeWindow <= 0 {
		cfg.DupeWindow = 2 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
}

// Start runs the embedded server, connects to it and makes sure the findings
// stream exists with cfg's settings.
func Start(ctx context.Context, cfg Config) (*Bus, error) {
	cfg.defaults()
	node, err := StartNode(cfg)
	if err != nil {
		return nil, err
	}
	ns := node.ns
	b := &Bus{cfg: cfg, log: cfg.Logger, ns: ns}
	// Reconnects are for a clustered node whose peers come and go; the
	// in-process connection itself only ends with the server.
	b.nc, err = nats.Connect("", nats.InProcessServer(ns), nats.Name(cfg.ServerName), nats.MaxReconnects(-1))
	if err != nil {
		ns.Shutdown()
		return nil, fmt.Errorf("bus: connect in-process: %w", err)
	}
	return b, b.open(ctx)
}

// Connect joins an external JetStream cluster (nats-node processes) at
// urls as a client and makes sure the findings stream exists with cfg's
// settings (cfg.Dir, Cluster and ClientListen are unused). The client
// reconnects to any node in urls for as long as the process runs, so a lost
// node costs only the publishes in flight to it, which the agents resend.
func Connect(ctx context.Context, urls []string, cfg Config) (*Bus, error) {
	cfg.defaults()
	if len(urls) == 0 {
		return nil, errors.New("bus: no NATS URLs")
	}
	for _, u := range urls {
		pu, err := url.Parse(u)
		if err != nil || pu.Host == "" {
			return nil, fmt.Errorf("bus: NATS URL %q: want nats://HOST:PORT", u)
		}
		if _, _, err := hostPort("NATS URL", pu.Host, cfg.TLS != nil); err != nil {
			return nil, err
		}
	}
	b := &Bus{cfg: cfg, log: cfg.Logger}
	var err error
	opts := []nats.Option{nats.Name(cfg.ServerName), nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond), nats.RetryOnFailedConnect(true),
		nats.DisconnectErrHandler(func(_ *nats.Conn, err error) {
			cfg.Logger.Warn("nats: disconnected", "err", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) { cfg.Logger.Info("nats: reconnected", "url", nc.ConnectedUrlRedacted()) })}
	if cfg.TLS != nil {
		opts = append(opts, nats.Secure(cfg.TLS.client()))
	}
	b.nc, err = nats.Connect(strings.Join(urls, ","), opts...)
	if err != nil {
		return nil, fmt.Errorf("bus: connect to %s: %w", strings.Join(urls, ","), err)
	}
	return b, b.open(ctx)
}

// open makes the JetStream context and the stream; on error b is closed.
func (b *Bus) open(ctx context.Context) error {
	var err error
	if b.js, err = jetstream.New(b.nc); err != nil {
		b.Close()
		return fmt.Errorf("bus: jetstream: %w", err)
	}
	if err := b.ensureStream(ctx); err != nil {
		b.Close()
		return err
	}
	return nil
}

// Conn is the bus's NATS connection (per-device control subjects use it).
func (b *Bus) Conn() *nats.Conn { return b.nc }

func serverOptions(cfg Config) (*server.Options, error) {
	dir := filepath.Join(cfg.Dir, storeSubdir)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("bus: create %s: %w", dir, err)
	}
	opts := &server.Options{
		ServerName: cfg.ServerName,
		JetStream:  true,
		StoreDir:   dir,
		// fsync on every write: JetStream's default flushes on an interval
		// and loses acknowledged messages on power loss, and an agent
		// deletes what the collector acknowledged.
		SyncAlways: true,
		NoSigs:     true,
		// A batch is at most the server's MaxBatchBytes (4 MiB by
		// default) plus its framing; NATS's default payload limit is 1 MiB.
		MaxPayload: 8 << 20,
	}
	if cfg.ClientListen == "" {
		opts.DontListen = true
	} else {
		host, port, err := hostPort("client listen", cfg.ClientListen, cfg.TLS != nil)
		if err != nil {
			return nil, err
		}
		opts.Host, opts.Port = host, port
	}
	if cfg.TLS != nil {
		opts.TLSConfig, opts.TLSVerify, opts.TLSTimeout = cfg.TLS.server(), true, 5
	}
	if c := cfg.Cluster; c != nil {
		host, port, err := hostPort("cluster listen", c.Listen, cfg.TLS != nil)
		if err != nil {
			return nil, err
		}
		if c.Name == "" {
			return nil, errors.New("bus: a cluster needs a name")
		}
		opts.Cluster.Name, opts.Cluster.Host, opts.Cluster.Port = c.Name, host, port
		for _, r := range c.Routes {
			if _, _, err := hostPort("route", r, cfg.TLS != nil); err != nil {
				return nil, err
			}
			opts.Routes = append(opts.Routes, &url.URL{Scheme: "nats", Host: r})
		}
		if cfg.TLS != nil {
			opts.Cluster.TLSConfig, opts.Cluster.TLSTimeout = cfg.TLS.cluster(), 5
		}
	}
	return opts, nil
}

// hostPort splits addr; without TLS it refuses an address off this
// machine (see Cluster).
func hostPort(what, addr string, tlsOn bool) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, fmt.Errorf("bus: %s %q: %w", what, addr, err)
	}
	ip := net.ParseIP(host)
	if !tlsOn && host != "localhost" && (ip == nil || !ip.IsLoopback()) {
		return "", 0, fmt.Errorf("bus: %s %q is not a loopback address: %w", what, addr, errNoTLS)
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, fmt.Errorf("bus: %s %q: bad port", what, addr)
	}
	return host, port, nil
}

// ensureStream creates or updates the findings stream. In a cluster the
// meta leader may not be elected yet when a node starts, so this retries
// until ctx ends.
func (b *Bus) ensureStream(ctx context.Context) error {
	sc := jetstream.StreamConfig{
		Name:     StreamName,
		Subjects: []string{SubjectPrefix + ".>"},
		Storage:  jetstream.FileStorage,
		Replicas: b.cfg.Replicas,
		// The store, not the stream, is the record: a message goes once
		// the storer has committed it.
		Retention:  jetstream.WorkQueuePolicy,
		Discard:    jetstream.DiscardNew,
		MaxBytes:   b.cfg.MaxBytes,
		Duplicates: b.cfg.DupeWindow,
	}
	var last error
	for {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := b.js.CreateOrUpdateStream(attempt, sc)
		cancel()
		if err == nil {
			return nil
		}
		last = err
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: create stream %s: %w", StreamName, last)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// JetStream is the bus's JetStream context (publishers and storers use it).
func (b *Bus) JetStream() jetstream.JetStream { return b.js }

// ClientURL is where a NATS client on this machine reaches this node ("" when
// it is in-process only).
func (b *Bus) ClientURL() string {
	if b.cfg.ClientListen == "" || b.ns == nil {
		return ""
	}
	return b.ns.ClientURL()
}

// Close drains the connection and shuts the server down, waiting for it.
func (b *Bus) Close() {
	if b.nc != nil {
		b.nc.Close()
	}
	if b.ns != nil {
		b.ns.Shutdown()
		b.ns.WaitForShutdown()
	}
}

// Subject is the subject a device's findings are published on. A token of a
// subject may not hold '.', '*', '>' or white space; device ids and school
// names are plain, but anything else is replaced rather than trusted.
func Subject(school, device string) string {
	if school == "" {
		school = DefaultSchool
	}
	return SubjectPrefix + "." + subjectToken(school) + "." + subjectToken(device)
}

// SchoolSubjects is the filter a storer of one school consumes.
func SchoolSubjects(school string) string {
	if school == "" {
		school = DefaultSchool
	}
	return SubjectPrefix + "." + subjectToken(school) + ".>"
}

func subjectToken(s string) string {
	if s == "" {
		return "_"
	}
	return strings.Map(func(r rune) rune {
		switch {
		case r == '.' || r == '*' || r == '>' || r <= ' ' || r == 0x7f:
			return '_'
		}
		return r
	}, s)
}

// slogAdapter sends nats-server's log to the collector's.
type slogAdapter struct{ log *slog.Logger }

func (a *slogAdapter) Noticef(format string, v ...any) { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Warnf(format string, v ...any)   { a.log.Warn(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Fatalf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Errorf(format string, v ...any)  { a.log.Error(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Debugf(format string, v ...any)  { a.log.Debug(fmt.Sprintf(format, v...)) }
func (a *slogAdapter) Tracef(format string, v ...any)  {}
