package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"path/filepath"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/bus"
	"github.com/vigil-safeguarding/vigil/collector/netlimit"
	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/server"
)

// FrontendConfig for ServeFrontend.
type FrontendConfig struct {
	// DataDir holds pki/ (ca.pem, server.pem and server.key copied from
	// the store-owning collector's data dir: agents pin that CA; not the
	// CA key, which only the enrolling collector needs). No store is
	// opened, and no rules folder: bundles come over the bus.
	DataDir    string
	GRPCListen string
	// NATS are the JetStream cluster's client URLs; Replicas the stream's
	// and devices bucket's replication (default 3).
	NATS     []string
	Replicas int
	// NATSTLS: mutual TLS to the nodes with a bus certificate (bus.LoadTLS).
	NATSTLS   *bus.TLS
	Heartbeat time.Duration
	Transport *server.Transport
	// Name identifies this front-end to NATS (default "vigil-frontend").
	Name   string
	Logger *slog.Logger
	// Ready, if set, is called with the bound agent address once serving.
	Ready func(grpcAddr string)
}

// ServeFrontend runs a stateless stream front-end until ctx ends: it
// terminates agents' mTLS streams with the same gRPC server as serve, but
// holds no store. A batch is acknowledged once JetStream has it; device
// records come from the devices bucket the store-owning collector (serve
// --ingest jetstream --nats) writes; enrollment is refused (devices enroll
// at the store-owning collector). Killing a front-end loses nothing an
// agent was acknowledged for: its agents reconnect to another.
func ServeFrontend(ctx context.Context, cfg FrontendConfig) error {
	if cfg.DataDir == "" {
		return errors.New("no data dir")
	}
	if len(cfg.NATS) == 0 {
		return errors.New("a front-end needs --nats URL[,URL...]")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Replicas <= 0 {
		cfg.Replicas = 3
	}
	if cfg.Name == "" {
		cfg.Name = "vigil-frontend"
	}
	log := cfg.Logger
	ca, err := pki.LoadServing(filepath.Join(cfg.DataDir, pkiDir))
	if err != nil {
		return fmt.Errorf("front-end needs ca.pem, server.pem and server.key copied from the store-owning collector's %s into %s: %w",
			pkiDir, filepath.Join(cfg.DataDir, pkiDir), err)
	}
	if _, err := raiseFileLimit(); err != nil {
		log.Warn("could not raise the file descriptor limit", "err", err)
	}
	// A fresh cluster elects its meta leader first (a minute on a busy
	// machine) before the stream and bucket can be opened.
	startCtx, cancel := context.WithTimeout(ctx, 3*time.Minute)
	defer cancel()
	b, err := bus.Connect(startCtx, cfg.NATS, bus.Config{ServerName: cfg.Name, Replicas: cfg.Replicas, TLS: cfg.NATSTLS, Logger: log})
	if err != nil {
		return fmt.Errorf("front-end: %w", err)
	}
	defer b.Close()
	kv, err := b.Devices(startCtx)
	if err != nil {
		return fmt.Errorf("front-end: %w", err)
	}
	if err := b.EnsureEvents(startCtx); err != nil {
		return fmt.Errorf("front-end: %w", err)
	}
	// Findings, events and control requests go under the school of the
	// device's own record: the storer of that school refuses anything else.
	fs := &bus.FrontStore{KV: kv}
	rulesKV, err := b.Rules(startCtx)
	if err != nil {
		return fmt.Errorf("front-end: %w", err)
	}
	// Every school's every bundle, composed and validated by the
	// store-owning collector (its packs, the schools' overrides, their
	// generated terms and exclusions), comes over the bus: a front-end
	// keeps no rules folders.
	rulesCache := &bus.RulesCache{}
	// Agent upgrades likewise: the store-owning collector's release
	// policy, manifests and binaries (checked against their SHA-256 here,
	// signed with the release key the agents pinned).
	relKV, err := b.Releases(startCtx)
	if err != nil {
		return fmt.Errorf("front-end: %w", err)
	}
	relObjects, err := b.ReleaseBinaries(startCtx)
	if err != nil {
		return fmt.Errorf("front-end: %w", err)
	}
	// One bound on what waits for NATS, findings and events together: a
	// cluster that falls behind is answered with RESOURCE_EXHAUSTED, not
	// held in this process's memory.
	inflight := &bus.InFlight{}
	fs.Pub = &bus.Publisher{JS: b.JetStream(), SchoolOf: fs.SchoolOf, InFlight: inflight}
	// No front-end holds an evidence key: Welcome names the recipient of
	// the device's school as its record in the bucket does.
	// Agents is set below, before the server accepts a stream.
	ctl := &bus.ControlServer{NC: b.Conn(), SchoolOf: fs.SchoolOf, Logger: log}
	events := &bus.EventPublisher{JS: b.JetStream(), SchoolOf: fs.SchoolOf, InFlight: inflight}
	relCache := &bus.ReleasesCache{Objects: relObjects, Dir: filepath.Join(cfg.DataDir, "release-cache"), Reports: events, Log: log}
	srv := server.New(server.Config{Store: fs, Evidence: fs, CA: ca, Rules: rulesCache, Upgrades: relCache, Logger: log, HeartbeatInterval: cfg.Heartbeat, Transport: cfg.Transport,
		OnConnect: func(id string) {
			ctl.Held(id)
			log.Info("agent stream held", "device", id)
		},
		OnDisconnect: ctl.Released, Events: events})
	ctl.Agents = srv
	gsrv := srv.GRPCServer()
	raw, err := net.Listen("tcp", cfg.GRPCListen)
	if err != nil {
		return fmt.Errorf("listen for gRPC on %s: %w", cfg.GRPCListen, err)
	}
	lis := netlimit.Wrap(raw, netlimit.Config{MaxConns: 20000, MaxUnauth: 2048, MaxUnauthPerSource: 128, UnauthLifetime: 30 * time.Second})
	runCtx, stop := context.WithCancel(ctx)
	defer stop()
	go bus.WatchRevocations(runCtx, kv, srv.Disconnect, log)
	go rulesCache.Run(runCtx, rulesKV, func() { srv.PushRules("") }, log)
	go relCache.Run(runCtx, relKV, func() { srv.PushUpgrades("") }, log)
	served := make(chan error, 1)
	go func() { served <- gsrv.Serve(lis) }()
	log.Info("stream front-end serving", "grpc", lis.Addr().String(), "nats", cfg.NATS)
	if cfg.Ready != nil {
		cfg.Ready(lis.Addr().String())
	}
	select {
	case <-ctx.Done():
	case err = <-served:
		err = fmt.Errorf("serve gRPC: %w", err)
	}
	srv.Shutdown()
	done := make(chan struct{})
	go func() { gsrv.GracefulStop(); close(done) }()
	select {
	case <-done:
	case <-time.After(15 * time.Second):
		gsrv.Stop()
	}
	return err
}
