// Package daemon wires the collector's parts together for `serve`: CA, store,
// rules distribution, the gRPC server, the admin socket and the HTTP
// listener, with an orderly shutdown.
package daemon

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime/debug"
	"strings"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"google.golang.org/grpc"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/bus"
	"github.com/vigil-safeguarding/vigil/collector/console"
	"github.com/vigil-safeguarding/vigil/collector/coverage"
	"github.com/vigil-safeguarding/vigil/collector/dfe"
	"github.com/vigil-safeguarding/vigil/collector/evidencekeys"
	"github.com/vigil-safeguarding/vigil/collector/fleetcheck"
	"github.com/vigil-safeguarding/vigil/collector/metrics"
	"github.com/vigil-safeguarding/vigil/collector/netlimit"
	"github.com/vigil-safeguarding/vigil/collector/notify"
	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/releases"
	"github.com/vigil-safeguarding/vigil/collector/rulesdist"
	"github.com/vigil-safeguarding/vigil/collector/server"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules/exclusions"
)

// Config for Serve.
type Config struct {
	DataDir     string
	GRPCListen  string
	HTTPListen  string
	ServerNames []string // extra names/IPs for the server certificate (first start only)
	// AgentAddress is the HOST:PORT devices reach gRPC at, baked into
	// packages downloaded from the console (default: the first
	// ServerNames entry with the gRPC port; else the console asks).
	AgentAddress string
	// AgentDir holds agent builds as OS-ARCH/vigil-agent[.exe] for console
	// package downloads (default: dist/OS-ARCH next to the collector).
	AgentDir         string
	Encrypt          bool
	Retention        map[string]time.Duration
	DefaultRetention time.Duration
	Heartbeat        time.Duration
	QueueLen         int
	Logger           *slog.Logger
	// Console e-mail notifications (off when SMTP is empty).
	SMTP           string
	SMTPFrom       string
	NotifySeverity string // default high
	EscalateAfter  time.Duration
	// WorkingHours ("mon-fri 08:00-17:00") in Timezone (default
	// Europe/London); outside them new alerts are e-mailed first to the
	// OutOfHoursUsers (off when that is empty).
	WorkingHours    string
	Timezone        string
	OutOfHoursUsers []string
	// ConsoleURL is the console's address in e-mailed links (default
	// http://<http-listen>).
	ConsoleURL string
	// OIDC sign-in to the console (off when OIDCIssuer is empty).
	OIDCIssuer        string
	OIDCClientID      string
	OIDCClientSecret  string // read from --oidc-client-secret-file, never a flag value
	OIDCRedirectURL   string // default <console URL>/api/v1/oidc/callback
	OIDCName          string // the button reads "Sign in with <name>"
	OIDCAllowedDomain string // Google hd or Entra ID tid the token must carry
	// DiskReserve is the free space below which the store refuses findings
	// (0: the store's default); VerifyInterval how often it verifies every
	// table's checksums (0: daily, negative: only at start).
	DiskReserve    int64
	VerifyInterval time.Duration
	// Connection limits on the agent port (zero: derived from the file
	// descriptor limit, see fdlimit.go): MaxConns in all; MaxUnauthConns and
	// MaxUnauthPerSource for connections without a verified client
	// certificate (enrollment, or a TLS handshake still running), each of
	// which is closed UnauthLifetime after it was accepted (default 60s).
	MaxConns           int
	MaxUnauthConns     int
	MaxUnauthPerSource int
	UnauthLifetime     time.Duration
	// HandshakeTimeout (default 10s) bounds a new agent connection's TLS
	// handshake; IdleTimeout (default 2m) closes one with no RPC running.
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	// Transport sizes the agent port's per-connection buffers (nil:
	// server.DefaultTransport).
	Transport *server.Transport
	// HTTP bounds the console listener (zero fields take the defaults).
	HTTP HTTPLimits
	// The console is served over HTTPS with HTTPCertFile/HTTPKeyFile, or
	// when those are empty with a certificate the collector's CA issues
	// for ServerNames, the listen host and loopback (console.pem in the
	// pki dir). HTTPPlain serves plain HTTP instead, only on a loopback
	// listen address (a TLS-terminating proxy on the same host).
	HTTPCertFile, HTTPKeyFile string
	HTTPPlain                 bool
	// TrustedProxies whose X-Forwarded-For/-Proto are believed.
	TrustedProxies console.TrustedProxies
	// MetricsToken, when set, is the bearer token GET /metrics requires.
	MetricsToken string
	// Ready, if set, is called with the bound addresses once serving.
	Ready func(grpcAddr, httpAddr string)
	// Ingest is how agents' findings reach the store: IngestDirect (the
	// default, "") commits each batch into Badger before the ack;
	// IngestJetStream publishes it to an embedded JetStream (file store,
	// fsync on every write, DATA/jetstream), acknowledges after the
	// PubAck, and an embedded storer drains the stream into Badger.
	Ingest string
	// NATS, when set with IngestJetStream, are the client URLs of an
	// external JetStream cluster (vigil-collector nats-node processes)
	// used instead of the embedded server; NATSReplicas is the stream's
	// replication there (default 3). The collector then also mirrors its
	// device records into the bus for stream front-ends (ServeFrontend).
	NATS         []string
	NATSReplicas int
	// NATSTLS, when set, makes the connection to NATS mutual TLS with a
	// bus certificate (bus.LoadTLS); required for nodes off this machine.
	NATSTLS *bus.TLS
}

// Ingest modes (--ingest).
const (
	IngestDirect    = "direct"
	IngestJetStream = "jetstream"
)

// HTTPLimits are the console listener's timeouts and caps. Every slow
// client is cut off by one of them: 100 connections sending a body a byte
// at a time were held for 40 s before these existed.
type HTTPLimits struct {
	ReadHeaderTimeout time.Duration // default 5s
	ReadTimeout       time.Duration // whole request including body, default 30s
	WriteTimeout      time.Duration // default 60s (evidence reveals and CSV exports fit easily)
	IdleTimeout       time.Duration // keep-alive between requests, default 60s
	MaxHeaderBytes    int           // default 64 KiB
	MaxConns          int           // default from the file descriptor limit (at most 1024)
	MaxConnsPerSource int           // default 256
}

func (h HTTPLimits) withDefaults(plan fdPlan) HTTPLimits {
	def := func(d *time.Duration, v time.Duration) {
		if *d <= 0 {
			*d = v
		}
	}
	def(&h.ReadHeaderTimeout, 5*time.Second)
	def(&h.ReadTimeout, 30*time.Second)
	def(&h.WriteTimeout, 60*time.Second)
	def(&h.IdleTimeout, 60*time.Second)
	if h.MaxHeaderBytes <= 0 {
		h.MaxHeaderBytes = 64 << 10
	}
	if h.MaxConns <= 0 {
		h.MaxConns = plan.http
	}
	if h.MaxConnsPerSource <= 0 {
		h.MaxConnsPerSource = min(256, h.MaxConns)
	}
	return h
}

// Layout of the data dir.
const (
	pkiDir    = "pki"
	badgerDir = "badger"
	keyFile   = "keys/store.key"
	// dataKeysDir holds each school's data key (store.DataKeys), beside the
	// store's key and outside the Badger folder a backup copies.
	dataKeysDir = "keys/schools"
	rulesDir    = "rules"
	// quarantineDir keeps copies of damaged store tables for support.
	quarantineDir = "quarantine"
)

// Serve runs the collector until ctx ends, then shuts down in order: stop
// taking streams, let in-flight commits finish and be acknowledged, flush
// device state, close Badger. It checks the configuration before touching
// the data dir (validate), opens and wires every part (build), then runs
// the listeners and background loops (run).
func Serve(ctx context.Context, cfg Config) error {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	set, err := validate(cfg)
	if err != nil {
		return err
	}
	if os.Getenv("GOMEMLIMIT") == "" {
		// A soft heap bound for a school server (Badger's own caches are
		// bounded by store.DefaultMemory); GOMEMLIMIT overrides it.
		debug.SetMemoryLimit(1 << 30)
	}
	c, err := build(cfg, set)
	if err != nil {
		return err
	}
	defer c.close()
	return c.run(ctx)
}

// settings are what validate derives from the flags.
type settings struct {
	notifySev vigilv1.Severity
	hours     *notify.Schedule // nil: no out-of-hours routing
}

// validate checks the parts of cfg that need no data dir or listener, so
// a mistyped flag is reported before anything is opened or created.
func validate(cfg Config) (settings, error) {
	var set settings
	if cfg.DataDir == "" {
		return set, errors.New("no data dir")
	}
	switch cfg.Ingest {
	case "", IngestDirect, IngestJetStream:
	default:
		return set, fmt.Errorf("--ingest %q: want %s or %s", cfg.Ingest, IngestDirect, IngestJetStream)
	}
	minSev := cfg.NotifySeverity
	if minSev == "" {
		minSev = "high"
	}
	var err error
	if set.notifySev, err = notify.ParseSeverity(minSev); err != nil {
		return set, fmt.Errorf("--notify-severity: %w", err)
	}
	if len(cfg.OutOfHoursUsers) > 0 && cfg.WorkingHours == "" {
		return set, errors.New("--out-of-hours-users needs --working-hours")
	}
	if cfg.WorkingHours != "" { // the out-of-hours chain and coverage judging both use them
		tz := cfg.Timezone
		if tz == "" {
			tz = "Europe/London"
		}
		loc, err := time.LoadLocation(tz)
		if err != nil {
			return set, fmt.Errorf("--timezone: %w", err)
		}
		if set.hours, err = notify.ParseSchedule(cfg.WorkingHours, loc); err != nil {
			return set, fmt.Errorf("--working-hours: %w", err)
		}
	}
	return set, nil
}

// collector holds the parts build wired together, for run and close.
type collector struct {
	cfg  Config
	set  settings
	log  *slog.Logger
	plan fdPlan
	lim  agentLimits

	ca   *pki.Authority
	st   *store.Store
	dist *rulesdist.Distributor
	met  *metrics.Metrics
	srv  *server.Server
	cons *console.Server
	// audits delivers audit requests to agents as they connect.
	audits *audit.Service
	rel    *releases.Manager
	// mail sends the alert, coverage and report e-mail; nil without --smtp.
	mail *notify.Notifier
	// cov judges devices' absence and mails alarms.
	cov   *coverage.Watcher
	keys  *evidencekeys.Keyring
	gsrv  *grpc.Server
	glis  *netlimit.Listener
	hlis  *netlimit.Listener
	alis  net.Listener
	asrv  *http.Server
	hsrv  *http.Server
	tls   bool
	url   string
	exclC chan struct{}

	// schoolHours: each school's own working hours (coverage judging, the
	// out-of-hours chain).
	schoolHours *schoolHours

	// storers drain the findings stream into st, one per school (jetstream
	// ingest only): those of the schools there at start are made by
	// startBus, a school added later gets one from runSchoolBus.
	storers map[string]*bus.Storer
	// mirror copies device records into the bus for front-ends (--nats);
	// remote sends requests to agents those front-ends hold.
	mirror *bus.Mirror
	// rulesMirror hands front-ends each school's generated rules files
	// (serve --nats); generated is what rulesdist lays over the folders.
	rulesMirror *bus.RulesMirror
	// releasesMirror hands front-ends the release policy, manifests and
	// binaries (nil without front-ends).
	releasesMirror *bus.ReleasesMirror
	generated      func(school, group string) map[string][]byte
	remote         server.RemoteAgents
	presence       *bus.RemotePresence
	bus            *bus.Bus

	// closers undo what build opened, last first.
	closers []func()
}

func (c *collector) onClose(f func()) { c.closers = append(c.closers, f) }

// close releases what build opened (listeners, then the store), last
// opened first.
func (c *collector) close() {
	for i := len(c.closers) - 1; i >= 0; i-- {
		c.closers[i]()
	}
	c.closers = nil
}

// build opens the CA, the store and the listeners and wires the servers.
// On error everything opened so far is closed again.
func build(cfg Config, set settings) (_ *collector, err error) {
	log := cfg.Logger
	c := &collector{cfg: cfg, set: set, log: log, exclC: make(chan struct{}, 1)}
	defer func() {
		if err != nil {
			c.close()
		}
	}()
	if err := os.MkdirAll(cfg.DataDir, 0o700); err != nil {
		return nil, fmt.Errorf("create data dir: %w", err)
	}
	os.Chmod(cfg.DataDir, 0o700)
	fdLimit, err := raiseFileLimit()
	if err != nil {
		log.Warn("could not read the file descriptor limit; assuming 1024", "err", err)
		fdLimit = 1024
	}
	c.plan = newFDPlan(fdLimit)
	if c.ca, err = pki.LoadOrCreate(filepath.Join(cfg.DataDir, pkiDir), cfg.ServerNames); err != nil {
		return nil, err
	}
	evidenceKey, err := pki.LoadOrCreateEvidenceKey(filepath.Join(cfg.DataDir, pkiDir))
	if err != nil {
		return nil, err
	}
	// One evidence key per school; the installation's is the default
	// school's (collector/evidencekeys).
	if c.keys, err = evidencekeys.Open(filepath.Join(cfg.DataDir, pkiDir), evidenceKey); err != nil {
		return nil, err
	}
	var key []byte
	if cfg.Encrypt {
		if key, err = loadOrCreateKey(filepath.Join(cfg.DataDir, keyFile)); err != nil {
			return nil, err
		}
	}
	dataKeys, err := store.OpenDataKeys(filepath.Join(cfg.DataDir, dataKeysDir))
	if err != nil {
		return nil, err
	}
	c.st, err = store.Open(filepath.Join(cfg.DataDir, badgerDir), store.Options{
		DataKeys:      dataKeys,
		EncryptionKey: key, Retention: cfg.Retention, DefaultRetention: cfg.DefaultRetention,
		QueueLen: cfg.QueueLen, Logger: log,
		SelfDeviceID: c.ca.SelfDeviceID(), QuarantineDir: filepath.Join(cfg.DataDir, quarantineDir),
		DiskReserve: cfg.DiskReserve, VerifyInterval: cfg.VerifyInterval,
	})
	if err != nil {
		return nil, err
	}
	st := c.st
	c.onClose(func() {
		if err := st.Close(); err != nil {
			log.Error("close store", "err", err)
		} else {
			log.Info("store closed cleanly")
		}
	})
	if c.dist, err = rulesdist.New(filepath.Join(cfg.DataDir, rulesDir), log, rulesdist.WithHistory(c.st),
		rulesdist.WithSchools(c.schoolIDs, filepath.Join(cfg.DataDir, rulesdist.SchoolRulesDir))); err != nil {
		return nil, err
	}
	if err := auth.EnsureAdmin(st, cfg.DataDir, log); err != nil {
		return nil, err
	}
	if set.hours != nil && cfg.SMTP != "" && len(cfg.OutOfHoursUsers) > 0 {
		log.Info("console: out-of-hours notifications on", "working_hours", set.hours.String(), "on_call", cfg.OutOfHoursUsers)
	}
	// A school's approved exclusions and the terms in force there (its own
	// and the trust's) travel in every group's rules bundle of the school.
	c.generated = generatedRules(exclusionsExtra(st, log), schoolTermsExtra(st, log))
	c.dist.SetExtra(c.generated)
	c.dist.Refresh()
	rel, err := releases.Open(cfg.DataDir, log)
	if err != nil {
		return nil, err
	}
	c.rel = rel
	c.met = metrics.New(prometheus.NewRegistry())
	c.lim = agentLimitsFor(cfg, c.plan)
	c.audits = &audit.Service{Store: st, Logger: log}
	var findings server.FindingSink // nil: the store
	var agentStore server.Store = st
	if cfg.Ingest == IngestJetStream {
		if findings, err = c.startBus(); err != nil {
			return nil, err
		}
		if c.mirror != nil {
			agentStore = mirroredStore{Store: st, m: c.mirror}
		}
	}
	c.srv = server.New(server.Config{Store: agentStore, Findings: findings, CA: c.ca, Rules: c.dist, Upgrades: rel, Logger: log, HeartbeatInterval: cfg.Heartbeat,
		Evidence: c.keys, Metrics: c.met,
		MaxStreams: c.lim.streams, HandshakeTimeout: cfg.HandshakeTimeout, IdleTimeout: cfg.IdleTimeout,
		Transport: cfg.Transport, OnConnect: c.audits.DeviceConnected, Remote: c.remote})
	c.audits.Agents = c.srv
	c.schoolHours = newSchoolHours(st, log)
	sch := coverageSchedule(cfg, c.set.hours, c.schoolHours)
	checks := &fleetcheck.Service{Store: st, Agents: c.srv, Logger: log, Absence: func(d store.Device, now time.Time) string {
		j := coverage.Classify(d, now, sch)
		return string(j.State) + ": " + j.Why
	}}
	if err := checks.CloseInterrupted(); err != nil {
		return nil, err
	}
	dfeSvc := &dfe.Service{Store: st, Checks: checks}
	c.gsrv = c.srv.GRPCServer()
	if err := c.listen(); err != nil {
		return nil, err
	}
	tlsCfg, err := consoleTLS(cfg, c.ca, c.hlis.Addr(), log)
	if err != nil {
		return nil, err
	}
	c.tls = tlsCfg != nil
	scheme := "https"
	if tlsCfg == nil {
		scheme = "http"
	}
	c.url = cfg.ConsoleURL
	if c.url == "" {
		c.url = scheme + "://" + c.hlis.Addr().String()
	}
	var oidcCfg *console.OIDCConfig
	if cfg.OIDCIssuer != "" {
		redirect := cfg.OIDCRedirectURL
		if redirect == "" {
			redirect = strings.TrimSuffix(c.url, "/") + "/api/v1/oidc/callback"
		}
		oidcCfg = &console.OIDCConfig{Issuer: cfg.OIDCIssuer, ClientID: cfg.OIDCClientID, ClientSecret: cfg.OIDCClientSecret,
			RedirectURL: redirect, Name: cfg.OIDCName, AllowedDomain: cfg.OIDCAllowedDomain}
		log.Info("console: OIDC sign-in on", "issuer", cfg.OIDCIssuer, "redirect_url", redirect)
	}
	toks := &tokens.Service{Store: st, CAFingerprint: c.ca.Fingerprint(), Logger: log}
	deploy := &console.DeployConfig{Tokens: toks, AgentDir: cfg.AgentDir,
		DefaultCollector: agentAddress(cfg.AgentAddress, cfg.ServerNames, c.glis.Addr())}
	c.cons, err = console.New(console.Config{Store: st, EvidenceKeys: c.keys, Logger: log, Connected: c.srv.Connected, OIDC: oidcCfg,
		Proxies: cfg.TrustedProxies, Deploy: deploy, Releases: &console.ReleasesConfig{Service: c.rel, Changed: c.releasesChanged},
		InitialPasswordFile: filepath.Join(cfg.DataDir, auth.InitialPasswordFile),
		Audits:              c.audits, DFE: dfeSvc, FleetChecks: checks,
		ExclusionsChanged: c.rulesChanged, SchoolTermsChanged: c.rulesChanged})
	if err != nil {
		return nil, err
	}
	adm := &admin.Server{Store: st, CA: c.ca, SchoolRulesDir: filepath.Join(cfg.DataDir, rulesdist.SchoolRulesDir),
		SchoolRules: c.dist, RulesChanged: func() { c.rulesFolderChanged(context.Background()) }, Agents: c.srv, Logger: log, EvidenceKey: evidenceKey, Keys: c.keys, Tokens: toks, Evidence: c.cons.Evidence(), Audits: c.audits,
		Releases: &admin.Releases{Manager: c.rel, Push: c.releasesChanged},
		DFE:      &admin.DFE{Service: dfeSvc, Checks: checks, Alerts: c.cons.MonitoringFigures}}
	if c.bus != nil { // a nil *Bus in the interface would be called
		adm.Bus = c.bus
	}
	if cfg.SMTP != "" {
		from := cfg.SMTPFrom
		if from == "" {
			from = "vigil@localhost"
		}
		c.mail = notify.New(notify.Config{Store: st, Routing: c.cons, Schools: &tenancy.Policy{Dir: st}, Logger: log,
			SMTPAddr: cfg.SMTP, From: from, MinSeverity: c.set.notifySev, EscalateAfter: cfg.EscalateAfter, ConsoleURL: c.url,
			WorkingHours: c.set.hours, HoursOf: c.schoolHours.ofDevice, OnCallOf: c.schoolHours.onCallOf, MailOf: c.schoolHours.mailOf, OutOfHours: cfg.OutOfHoursUsers, OnFailure: c.met.NotificationFailed})
	}
	c.cov = newCoverageWatcher(cfg, st, c.mail, c.set.hours, c.schoolHours, log)
	c.cons.SetCoverage(c.cov)
	amux := http.NewServeMux()
	amux.Handle("/v1/coverage", c.cov.Handler())
	amux.Handle("/v1/coverage/", c.cov.Handler())
	amux.Handle("/v1/users", c.cons.AdminHandler())
	amux.Handle("/v1/users/", c.cons.AdminHandler()) // user list|disable|enable|reset
	amux.Handle("/v1/people/", c.cons.AdminHandler())
	amux.Handle("/", adm.Handler())
	c.asrv = &http.Server{Handler: amux, ReadHeaderTimeout: 5 * time.Second, IdleTimeout: 2 * time.Minute}
	httpLimits := cfg.HTTP.withDefaults(c.plan)
	c.hsrv = &http.Server{Handler: cfg.TrustedProxies.HSTS(httpHandler(st, c.cons.Handler(), c.met.Handler(cfg.MetricsToken))),
		TLSConfig:         tlsCfg,
		ReadHeaderTimeout: httpLimits.ReadHeaderTimeout, ReadTimeout: httpLimits.ReadTimeout,
		WriteTimeout: httpLimits.WriteTimeout, IdleTimeout: httpLimits.IdleTimeout, MaxHeaderBytes: httpLimits.MaxHeaderBytes,
		ErrorLog: slog.NewLogLogger(log.Handler(), slog.LevelDebug)}
	if cfg.MetricsToken == "" {
		log.Info("metrics: GET /metrics is open on the HTTP listener (aggregates only, no personal data); --metrics-token-file requires a bearer token")
	}
	return c, nil
}

// listen opens the agent, console and admin listeners with their
// connection limits, and registers the metrics that read them.
func (c *collector) listen() error {
	cfg, lim, met := c.cfg, c.lim, c.met
	rawG, err := net.Listen("tcp", cfg.GRPCListen)
	if err != nil {
		return fmt.Errorf("listen for gRPC on %s: %w", cfg.GRPCListen, err)
	}
	c.glis = netlimit.Wrap(rawG, netlimit.Config{MaxConns: lim.conns, MaxUnauth: lim.unauth, MaxUnauthPerSource: lim.perSource,
		UnauthLifetime: lim.lifetime, OnRefuse: func(reason string) { met.RefusedConnection("grpc", reason) }})
	c.onClose(func() { c.glis.Close() })
	httpLimits := cfg.HTTP.withDefaults(c.plan)
	rawH, err := net.Listen("tcp", cfg.HTTPListen)
	if err != nil {
		return fmt.Errorf("listen for HTTP on %s: %w", cfg.HTTPListen, err)
	}
	// HTTP has no connection-level authentication: every connection counts
	// against the per-source cap, and the server's timeouts end idle ones.
	c.hlis = netlimit.Wrap(rawH, netlimit.Config{MaxConns: httpLimits.MaxConns, MaxUnauthPerSource: httpLimits.MaxConnsPerSource,
		OnRefuse: func(reason string) { met.RefusedConnection("http", reason) }})
	c.onClose(func() { c.hlis.Close() })
	c.log.Info("connection limits", "plan", c.plan.String(), "agent_connections", lim.conns, "streams", lim.streams,
		"unauthenticated", lim.unauth, "unauthenticated_per_source", lim.perSource, "console_connections", httpLimits.MaxConns)
	for _, col := range []prometheus.Collector{
		metrics.NewStoreCollector(c.st.Stats),
		metrics.NewFleetCollector(metrics.FleetSource{Devices: c.st.Devices, ConnectedByGroup: c.srv.ConnectedByGroup, Now: time.Now}),
		metrics.NewConnCollector(
			metrics.ConnSource{Name: "grpc", Stats: c.glis.Stats, Limit: c.glis.MaxConns, OldestUnauthenticated: c.glis.OldestUnauthenticated},
			metrics.ConnSource{Name: "http", Stats: c.hlis.Stats, Limit: c.hlis.MaxConns}),
	} {
		if err := met.Register(col); err != nil {
			return fmt.Errorf("register metrics: %w", err)
		}
	}
	if c.alis, err = admin.Listen(cfg.DataDir); err != nil {
		return err
	}
	c.onClose(func() {
		c.alis.Close()
		os.Remove(filepath.Join(cfg.DataDir, admin.SocketName))
	})
	return nil
}

// Restart pauses of the background loops that are retried after a failure.
var (
	rulesWatchRetry = 30 * time.Second
	notifierRetry   = 30 * time.Second
)

// run serves until ctx ends or a listener fails, then shuts down in order.
// Every background loop runs under a supervisor (loops.go): a listener's
// failure stops the collector; a failed rules watch or notifier is logged
// and restarted, so a DSL's rule change or an e-mail is delayed, never
// silently lost.
func (c *collector) run(ctx context.Context) error {
	log, cfg := c.log, c.cfg
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sup := newSupervisor(ctx, log)
	sup.fatal("gRPC server", func(context.Context) error { return c.gsrv.Serve(c.glis) })
	sup.fatal("admin socket", func(context.Context) error { return ignoreClosed(c.asrv.Serve(c.alis)) })
	sup.fatal("console HTTP server", func(context.Context) error {
		if !c.tls {
			return ignoreClosed(c.hsrv.Serve(c.hlis))
		}
		// ServeTLS (not a tls.Listener under Serve) so HTTP/2 is set up,
		// and the TLS handshake is bounded by the server's timeouts. The
		// netlimit listener below it still counts raw connections.
		return ignoreClosed(c.hsrv.ServeTLS(c.hlis, "", ""))
	})
	restarted := false
	sup.retried("rules folder watch", rulesWatchRetry, func(ctx context.Context) error {
		if restarted {
			// The watch was down: a change made meanwhile was missed.
			if err := c.dist.Reload(); err != nil {
				log.Error("reload rules", "err", err)
			} else {
				c.rulesFolderChanged(ctx)
			}
		}
		restarted = true
		return c.dist.Watch(ctx, func() { c.rulesFolderChanged(ctx) })
	})
	if c.bus != nil {
		sup.loop("jetstream storers", func(ctx context.Context) error {
			bus.EachSchool(ctx, c.schoolIDs, 5*time.Second, c.runSchoolBus, log)
			return nil
		})
		if c.mirror != nil {
			sup.loop("device mirror", c.mirror.Run)
		}
	}
	sup.loop("audit delivery", func(ctx context.Context) error { c.audits.Run(ctx); return nil })
	sup.loop("coverage watcher", func(ctx context.Context) error { c.cov.Run(ctx); return nil })
	if c.lim.dynamic && openFDs() >= 0 {
		sup.loop("connection cap", func(ctx context.Context) error { followStoreFDs(ctx, c.plan, c.glis, c.hlis, log); return nil })
	}
	sup.loop("exclusions refresh", func(ctx context.Context) error {
		// An approval changes the exclusions file at once; an expiry is
		// noticed within a minute (agents also check expiry themselves).
		t := time.NewTicker(time.Minute)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-c.exclC:
			case <-t.C:
			}
			if c.dist.Refresh() {
				c.srv.PushRules("")
			}
			// Every time, not only on a change: a sync that failed is
			// tried again here within a minute.
			c.syncRulesMirror(ctx)
			c.syncReleasesMirror(ctx)
		}
	})
	if c.mail != nil {
		sup.retried("e-mail notifier", notifierRetry, c.mail.Run)
		sup.retried("report e-mail", notifierRetry, c.mail.RunReports)
	}
	sup.loop("device state flush", func(ctx context.Context) error {
		t := time.NewTicker(5 * time.Second)
		defer t.Stop()
		for {
			select {
			case <-ctx.Done():
				return nil
			case <-t.C:
				// A full disk is logged once by the store, not every 5 s;
				// the records stay marked and are written once space returns.
				if err := c.st.FlushDevices(); err != nil && !errors.Is(err, store.ErrDiskFull) {
					log.Error("flush device state", "err", err)
				}
			}
		}
	})
	log.Info("collector serving", "grpc", c.glis.Addr().String(), "http", c.hlis.Addr().String(), "console_url", c.url,
		"admin", filepath.Join(cfg.DataDir, admin.SocketName), "ca_fingerprint", c.ca.Fingerprint(), "encrypted", cfg.Encrypt)
	if cfg.Ready != nil {
		cfg.Ready(c.glis.Addr().String(), c.hlis.Addr().String())
	}

	serveErr := sup.wait()
	log.Info("collector stopping")
	c.srv.Shutdown()
	stopped := make(chan struct{})
	go func() { c.gsrv.GracefulStop(); close(stopped) }()
	select {
	case <-stopped:
	case <-time.After(15 * time.Second):
		log.Warn("streams did not finish in 15s; closing them")
		c.gsrv.Stop()
	}
	shutCtx, shutCancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer shutCancel()
	c.asrv.Shutdown(shutCtx)
	c.hsrv.Shutdown(shutCtx)
	cancel()
	sup.stop()
	return serveErr
}

// startBus runs the embedded JetStream for --ingest jetstream and returns
// the publisher the gRPC server acknowledges through. It is closed before
// the store (closers run last first), after run has stopped the storer.
func (c *collector) startBus() (server.FindingSink, error) {
	wait := time.Minute
	if len(c.cfg.NATS) > 0 {
		// A cluster started together elects its meta leader first; on a
		// busy machine that alone can take a minute.
		wait = 3 * time.Minute
	}
	ctx, cancel := context.WithTimeout(context.Background(), wait)
	defer cancel()
	var b *bus.Bus
	var err error
	if len(c.cfg.NATS) > 0 {
		replicas := c.cfg.NATSReplicas
		if replicas <= 0 {
			replicas = 3
		}
		b, err = bus.Connect(ctx, c.cfg.NATS, bus.Config{ServerName: "vigil-storer", Replicas: replicas, TLS: c.cfg.NATSTLS, Logger: c.log})
	} else {
		b, err = bus.Start(ctx, bus.Config{Dir: c.cfg.DataDir, Logger: c.log})
	}
	if err != nil {
		return nil, fmt.Errorf("start jetstream ingest: %w", err)
	}
	c.onClose(b.Close)
	c.bus = b
	schools, err := c.schoolIDs()
	if err != nil {
		return nil, fmt.Errorf("start jetstream storers: %w", err)
	}
	c.storers = map[string]*bus.Storer{}
	for _, school := range schools {
		if c.storers[school], err = bus.NewStorer(ctx, b.JetStream(), c.st, c.storerConfig(school)); err != nil {
			return nil, fmt.Errorf("start jetstream storer of school %s: %w", school, err)
		}
	}
	if len(c.cfg.NATS) > 0 {
		kv, err := b.Devices(ctx)
		if err != nil {
			return nil, err
		}
		c.mirror = &bus.Mirror{KV: kv, Source: c.st, Recipients: c.keys, Logger: c.log}
		rkv, err := b.Rules(ctx)
		if err != nil {
			return nil, err
		}
		c.rulesMirror = &bus.RulesMirror{KV: rkv, Source: c.dist}
		if err := c.rulesMirror.Sync(ctx); err != nil {
			return nil, fmt.Errorf("mirror the rules bundles for front-ends: %w", err)
		}
		relKV, err := b.Releases(ctx)
		if err != nil {
			return nil, err
		}
		relObjects, err := b.ReleaseBinaries(ctx)
		if err != nil {
			return nil, err
		}
		c.releasesMirror = &bus.ReleasesMirror{KV: relKV, Objects: relObjects, Source: c.rel}
		if err := c.releasesMirror.Sync(ctx); err != nil {
			return nil, fmt.Errorf("mirror the releases for front-ends: %w", err)
		}
		if err := b.EnsureEvents(ctx); err != nil {
			return nil, err
		}
		c.presence = &bus.RemotePresence{StaleAfter: 3 * c.heartbeat()}
		c.remote = remoteAgents{ControlClient: &bus.ControlClient{NC: b.Conn(), SchoolOf: c.publishSchool}, RemotePresence: c.presence}
		if err := c.mirror.Sync(ctx); err != nil {
			return nil, fmt.Errorf("mirror device records: %w", err)
		}
		c.log.Info("ingest through external JetStream; device records mirrored for front-ends", "nats", c.cfg.NATS, "stream", bus.StreamName)
	} else {
		c.log.Info("ingest through embedded JetStream", "stream", bus.StreamName, "dir", filepath.Join(c.cfg.DataDir, "jetstream"), "sync", "always")
	}
	return &bus.Publisher{JS: b.JetStream(), SchoolOf: c.publishSchool}, nil
}

// schoolIDs lists the installation's schools (the default first).
func (c *collector) schoolIDs() ([]string, error) {
	all, err := c.st.Schools()
	if err != nil {
		return nil, fmt.Errorf("list schools: %w", err)
	}
	ids := make([]string, len(all))
	for i, sc := range all {
		ids[i] = sc.ID
	}
	return ids, nil
}

// recordedSchool is the storers' check of a message against the store.
func (c *collector) recordedSchool(id string) (string, bool) {
	d, ok := c.st.GetDevice(id)
	return d.School, ok
}

// publishSchool names the school whose subjects a device's findings and
// control requests go to.
func (c *collector) publishSchool(id string) (string, error) {
	d, ok := c.st.GetDevice(id)
	if !ok {
		return "", fmt.Errorf("device %s is not enrolled", id)
	}
	return d.School, nil
}

func (c *collector) storerConfig(school string) bus.StorerConfig {
	return bus.StorerConfig{School: school, Records: c.recordedSchool, Logger: c.log,
		OnRefused: func(school, reason string) { c.met.BusRefused(school, "findings", reason) }}
}

// runSchoolBus consumes one school's findings (and, with front-ends, its
// device events) until ctx ends. A consumer that cannot be created yet (a
// cluster without a quorum) is retried.
func (c *collector) runSchoolBus(ctx context.Context, school string) {
	var wg sync.WaitGroup
	if c.mirror != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for ctx.Err() == nil {
				err := bus.RunEvents(ctx, c.bus.JetStream(), school, c.recordedSchool, func(ev *vigilv1.DeviceEvent) error {
					if rep := ev.GetUpgradeReport(); rep != nil {
						// From an agent a front-end holds: recorded here,
						// and the policy mirrored so that no front-end
						// offers it a version it refused.
						c.rel.Record(ev.GetDeviceId(), rep)
						c.syncReleasesMirror(ctx)
						return nil
					}
					return server.ApplyDeviceEvent(c.st, ev)
				}, c.presence, func(school, reason string) { c.met.BusRefused(school, "events", reason) }, c.log)
				if err != nil && ctx.Err() == nil {
					c.log.Warn("device events consumer ended; restarting", "school", school, "err", err)
					select {
					case <-ctx.Done():
					case <-time.After(5 * time.Second):
					}
				}
			}
		}()
	}
	// The storer made at start is used first; one that ended with an
	// error (its consumer deleted, a cluster without quorum) is made anew.
	st := c.storers[school] // read-only after startBus
	for ctx.Err() == nil {
		if st == nil {
			var err error
			if st, err = bus.NewStorer(ctx, c.bus.JetStream(), c.st, c.storerConfig(school)); err != nil {
				c.log.Warn("jetstream storer not started; retrying", "school", school, "err", err)
				select {
				case <-ctx.Done():
				case <-time.After(5 * time.Second):
				}
				continue
			}
			c.log.Info("jetstream storer started", "school", school, "durable", bus.DurableName(school))
		}
		if err := st.Run(ctx); err != nil && ctx.Err() == nil {
			c.log.Error("jetstream storer ended; restarting", "school", school, "err", err)
			st = nil
			select {
			case <-ctx.Done():
			case <-time.After(5 * time.Second):
			}
		}
	}
	wg.Wait()
}

// exclusionsExtra supplies the approved-exclusions file for every group's
// rules bundle of a school (none while no exclusion is in force there); if
// the store cannot be read the school's last good content stays.
func exclusionsExtra(st *store.Store, log *slog.Logger) func(school, group string) map[string][]byte {
	var mu sync.Mutex
	last := map[string][]byte{}
	return func(school, _ string) map[string][]byte {
		mu.Lock()
		defer mu.Unlock()
		data, err := console.ExclusionsFile(st, school, time.Now())
		if err != nil {
			log.Error("rules bundles: approved exclusions not refreshed", "school", school, "err", err)
			data = last[school]
		}
		last[school] = data
		if data == nil {
			return nil
		}
		return map[string][]byte{exclusions.Path: data}
	}
}

func ignoreClosed(err error) error {
	if errors.Is(err, http.ErrServerClosed) {
		return nil
	}
	return err
}

// RotateStoreKey replaces the store's master key with a fresh one. The
// collector must be stopped. The new key is written beside the old one
// first, so a crash leaves a key that opens the store: the registry is
// rewritten only once the new key is on disk, and the old key is removed only
// after that.
func RotateStoreKey(dataDir string) error {
	if c, err := net.DialTimeout("unix", filepath.Join(dataDir, admin.SocketName), 200*time.Millisecond); err == nil {
		c.Close()
		return errors.New("the collector is running: stop it before rotating the store key")
	}
	path := filepath.Join(dataDir, keyFile)
	oldKey, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read current store key: %w", err)
	}
	newKey := make([]byte, 32)
	if _, err := rand.Read(newKey); err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path+".new", newKey, 0o600); err != nil {
		return fmt.Errorf("write new key: %w", err)
	}
	if err := store.RotateKey(filepath.Join(dataDir, badgerDir), oldKey, newKey); err != nil {
		os.Remove(path + ".new")
		return err
	}
	if err := fsutil.WriteFileAtomic(path+".old", oldKey, 0o600); err != nil {
		return err
	}
	if err := os.Rename(path+".new", path); err != nil {
		return fmt.Errorf("install new key (the store now needs %s.new): %w", path, err)
	}
	return os.Remove(path + ".old")
}

// loadOrCreateKey reads the store's 32-byte AES key, creating it owner-only
// on first start. Rotation is described in docs/storage.md.
func loadOrCreateKey(path string) ([]byte, error) {
	key, err := os.ReadFile(path)
	if err == nil {
		if len(key) != 32 {
			return nil, fmt.Errorf("store key %s: want 32 bytes, found %d", path, len(key))
		}
		return key, nil
	}
	if !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read store key: %w", err)
	}
	if entries, _ := os.ReadDir(filepath.Join(filepath.Dir(filepath.Dir(path)), badgerDir)); len(entries) > 0 {
		return nil, fmt.Errorf("store key %s is missing but the store exists: restore the key file (or start with --encrypt=false if the store was created unencrypted)", path)
	}
	key = make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o700); err != nil {
		return nil, err
	}
	if err := fsutil.WriteFileAtomic(path, key, 0o600); err != nil {
		return nil, fmt.Errorf("write store key: %w", err)
	}
	return key, nil
}

// followStoreFDs keeps the agent listener's cap below what the store and
// the rest of the process leave free: Badger opens a file per table, so its
// share grows with the store.
func followStoreFDs(ctx context.Context, plan fdPlan, glis, hlis *netlimit.Listener, log *slog.Logger) {
	t := time.NewTicker(10 * time.Second)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		fds := openFDs()
		if fds < 0 {
			return
		}
		g, _ := glis.Stats()
		h, _ := hlis.Stats()
		want := plan.grpcConns(max(0, fds-g-h))
		if old := glis.MaxConns(); want != old {
			glis.SetMaxConns(want)
			log.Debug("agent connection cap follows the store's file descriptors", "open_fds", fds, "cap", want, "was", old)
		}
	}
}

// httpHandler serves health, metrics and the console.
func httpHandler(st *store.Store, consoleHandler, metricsHandler http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/", consoleHandler)
	mux.Handle("GET /metrics", metricsHandler)
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		// 200 while findings are accepted (damage is reported but the
		// intact data is served); 503 while the disk is full.
		h := st.Health()
		status, code := "ok", http.StatusOK
		switch {
		case h.DiskFull:
			status, code = "disk_full", http.StatusServiceUnavailable
		case !h.OK():
			status = "degraded"
		}
		w.WriteHeader(code)
		json.NewEncoder(w).Encode(map[string]any{"status": status, "devices": len(st.Devices()), "store": h})
	})
	return mux
}

// agentAddress is the collector address console-built packages carry by
// default: the configured one, else the first server name with the port
// gRPC listens on, else the listen host if it names one device can reach
// (not a wildcard or loopback); "" makes the console ask for it.
func agentAddress(configured string, names []string, grpc net.Addr) string {
	if configured != "" {
		return configured
	}
	host, port, err := net.SplitHostPort(grpc.String())
	if err != nil {
		return ""
	}
	if len(names) > 0 && strings.TrimSpace(names[0]) != "" {
		return net.JoinHostPort(strings.TrimSpace(names[0]), port)
	}
	if ip := net.ParseIP(host); ip == nil || ip.IsUnspecified() || ip.IsLoopback() {
		return ""
	}
	return net.JoinHostPort(host, port)
}

// mirroredStore writes an enrolled device's record into the bus before the
// agent is answered, so that its first stream, to whichever front-end,
// finds it.
type mirroredStore struct {
	*store.Store
	m *bus.Mirror
}

func (s mirroredStore) PutDevice(d store.Device) error {
	if err := s.Store.PutDevice(d); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	return s.m.PutRecord(ctx, d)
}

// remoteAgents reaches agents whose streams front-ends hold: requests
// over their control subjects, presence from their device events.
type remoteAgents struct {
	*bus.ControlClient
	*bus.RemotePresence
}

// heartbeat is the interval asked of agents (the server's default when
// unset).
func (c *collector) heartbeat() time.Duration {
	if c.cfg.Heartbeat > 0 {
		return c.cfg.Heartbeat
	}
	return 60 * time.Second
}

// rulesFolderChanged pushes bundles changed by an edit of the rules
// folders to this collector's agents and to the front-ends' (through the
// rules bucket).
func (c *collector) rulesFolderChanged(ctx context.Context) {
	c.srv.PushRules("")
	c.syncRulesMirror(ctx)
}

// syncRulesMirror puts changed bundles into the rules bucket, if there is
// one; a failure is logged and tried again at the next minute's refresh.
func (c *collector) syncRulesMirror(ctx context.Context) {
	if c.rulesMirror == nil {
		return
	}
	if err := c.rulesMirror.Sync(ctx); err != nil {
		c.log.Error("front-ends' rules bundles not updated; tried again within a minute", "err", err)
	}
}

// releasesChanged offers a changed rollout to this collector's agents of
// group (all when empty) and, through the bus, to the front-ends'.
func (c *collector) releasesChanged(group string) {
	c.srv.PushUpgrades(group)
	if c.releasesMirror != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		c.syncReleasesMirror(ctx)
	}
}

// syncReleasesMirror puts a changed release policy, manifest or binary on
// the bus, if there is one; a failure is logged and tried again at the
// next minute's refresh.
func (c *collector) syncReleasesMirror(ctx context.Context) {
	if c.releasesMirror == nil {
		return
	}
	if err := c.releasesMirror.Sync(ctx); err != nil {
		c.log.Error("front-ends' releases not updated; tried again within a minute", "err", err)
	}
}
