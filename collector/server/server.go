// Package server implements the collector's gRPC services: enrollment over
// server-only TLS and the mTLS stream every enrolled agent keeps open.
package server

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/peer"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/tap"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/vigil-safeguarding/vigil/collector/metrics"
	"github.com/vigil-safeguarding/vigil/collector/netlimit"
	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/backoff"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// RulesSource hands out the current rules bundle of a school for a device
// group (collector/rulesdist).
type RulesSource interface {
	Bundle(school, group string) *vigilv1.RulesBundle
}

// Store is what the gRPC server needs of the collector's store: enrolment
// (tokens, revocations, device records), the device state a stream keeps,
// and committing findings. Nothing else of the store is reachable from
// the port agents talk to.
type Store interface {
	CommitFindings(ctx context.Context, findings []*vigilv1.Finding) (stored, dups int, err error)
	GetDevice(id string) (store.Device, bool)
	PutDevice(d store.Device) error
	UpdateDevice(id string, fn func(*store.Device)) error
	// FlushDevices writes changed device records now (a goodbye must
	// survive a crash that follows it).
	FlushDevices() error
	Revoked(deviceID string) (store.Revocation, bool, error)
	UseToken(id, secretHash string, now time.Time) (store.Token, error)
}

// DeviceLookup is a Store whose device records can fail to be read (a
// front-end reading them over the bus): a stream is then told to come back
// later rather than that its device is unknown.
type DeviceLookup interface {
	LookupDevice(id string) (store.Device, bool, error)
}

func lookupDevice(st Store, id string) (store.Device, bool, error) {
	if l, ok := st.(DeviceLookup); ok {
		return l.LookupDevice(id)
	}
	d, ok := st.GetDevice(id)
	return d, ok, nil
}

// RemoteAgents reaches agents held by other processes.
type RemoteAgents interface {
	// Connected reports whether another process holds the device's stream.
	Connected(deviceID string) bool
	Request(ctx context.Context, deviceID string, req *vigilv1.Request) (*vigilv1.RequestResult, error)
}

// FindingSink is where a validated batch is committed before the agent is
// acknowledged: the store itself (direct ingest), or a publisher to
// JetStream (collector/bus) that returns once the stream holds the batch
// durably and leaves the Badger commit to a storer. Either way an ack
// follows a durable write, and a resent batch is harmless.
type FindingSink interface {
	CommitFindings(ctx context.Context, findings []*vigilv1.Finding) (stored, dups int, err error)
}

// Config for New. Zero limits take the defaults below.
type Config struct {
	Store Store
	// Findings receives agents' batches (nil: Store, committed directly).
	// The collector's own findings always go to Store.
	Findings FindingSink
	CA       *pki.Authority
	Rules    RulesSource
	Logger   *slog.Logger
	// Upgrades, when set, offers signed agent releases per group.
	Upgrades UpgradeSource
	// MaxDownloads bounds release downloads served at once (default 64).
	MaxDownloads int

	MaxBatchFindings  int           // default 1000
	MaxBatchBytes     int           // default 4 MiB
	MaxStreams        int           // concurrent agent streams, default 20000
	HeartbeatInterval time.Duration // asked of agents, default 60s
	// HandshakeTimeout bounds the TLS handshake and HTTP/2 preface of a new
	// connection (default 10s); IdleTimeout closes a connection with no
	// RPC in progress (default 2m). Agents always have their stream open,
	// so only enrollment leftovers and refused agents are closed by it.
	HandshakeTimeout time.Duration
	IdleTimeout      time.Duration
	// Transport sizes per-connection buffers (zero value: DefaultTransport).
	Transport *Transport
	// RetryAfter is the delay suggested with RESOURCE_EXHAUSTED.
	RetryAfter time.Duration
	// Evidence names the recipient a device seals its evidence to, by its
	// school (collector/evidencekeys); nil: none is named, and an agent
	// keeps the one it has.
	Evidence EvidenceKeys
	Now      func() time.Time

	// Failed enrollments per source address: EnrollFailBurst at once, then
	// EnrollFailuresPerMinute (defaults 20 and 6). Refusals are logged in
	// aggregate once per RefusalLogInterval (default 10s).
	EnrollFailBurst         int
	EnrollFailuresPerMinute float64
	RefusalLogInterval      time.Duration

	// Metrics, when set, counts enrollments, batches and refusals.
	Metrics *metrics.Metrics

	// OnConnect, when set, is called (in its own goroutine) once a
	// device's stream is welcomed: queued work for it (audits) is sent then.
	OnConnect func(deviceID string)
	// OnDisconnect, when set, is called once a device's stream has ended
	// (and was not replaced by a newer one of the same device).
	OnDisconnect func(deviceID string)
	// Remote, when set, carries requests to devices whose streams are held
	// by stream front-ends (collector/bus).
	Remote RemoteAgents
	// Events, when set (a front-end), receives every change a device's
	// messages make to its record, for the store-owning collector to apply.
	Events DeviceEventSink
}

// EvidenceKeys names the age recipient a school's devices seal their
// evidence to: *evidencekeys.Keyring at the store, the device records'
// on a front-end (bus.FrontStore), which holds no key.
type EvidenceKeys interface {
	Recipient(school string) (string, error)
}

// evidenceRecipient is what a device of school is told to seal to; ""
// (none named: the agent keeps its own) when no keys are configured.
func (s *Server) evidenceRecipient(school string) (string, error) {
	if s.cfg.Evidence == nil {
		return "", nil
	}
	return s.cfg.Evidence.Recipient(store.SchoolOf(school))
}

// Server is both gRPC services plus the registry of connected agents.
type Server struct {
	vigilv1.UnimplementedEnrollmentServer
	vigilv1.UnimplementedCollectorServer

	cfg      Config
	log      *slog.Logger
	shutdown chan struct{}
	shutOnce sync.Once
	selfID   string // device ID of the collector itself, for its own findings

	enrollFails *failLimiter
	refusals    *refusalLog

	downloads chan struct{} // one token per release download in progress

	mu       sync.Mutex
	sessions map[string]*session
	pending  map[string]chan *vigilv1.RequestResult
	selfSeq  uint64
}

// New builds a Server from cfg.
func New(cfg Config) *Server {
	if cfg.Findings == nil {
		cfg.Findings = cfg.Store
	}
	if cfg.MaxBatchFindings <= 0 {
		cfg.MaxBatchFindings = 1000
	}
	if cfg.MaxBatchBytes <= 0 {
		cfg.MaxBatchBytes = 4 << 20
	}
	if cfg.MaxStreams <= 0 {
		cfg.MaxStreams = 20000
	}
	if cfg.HeartbeatInterval <= 0 {
		cfg.HeartbeatInterval = 60 * time.Second
	}
	if cfg.HandshakeTimeout <= 0 {
		cfg.HandshakeTimeout = 10 * time.Second
	}
	if cfg.IdleTimeout <= 0 {
		cfg.IdleTimeout = 2 * time.Minute
	}
	if cfg.RetryAfter <= 0 {
		cfg.RetryAfter = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.EnrollFailBurst <= 0 {
		cfg.EnrollFailBurst = 20
	}
	if cfg.EnrollFailuresPerMinute <= 0 {
		cfg.EnrollFailuresPerMinute = 6
	}
	if cfg.RefusalLogInterval <= 0 {
		cfg.RefusalLogInterval = 10 * time.Second
	}
	if cfg.MaxDownloads <= 0 {
		cfg.MaxDownloads = 64
	}
	s := &Server{
		cfg: cfg, log: cfg.Logger, shutdown: make(chan struct{}),
		sessions: map[string]*session{}, pending: map[string]chan *vigilv1.RequestResult{},
		downloads:   make(chan struct{}, cfg.MaxDownloads),
		enrollFails: newFailLimiter(cfg.EnrollFailuresPerMinute, cfg.EnrollFailBurst, cfg.Now),
		refusals:    newRefusalLog(cfg.Logger, cfg.RefusalLogInterval),
	}
	if cfg.CA != nil {
		s.selfID = cfg.CA.SelfDeviceID()
	}
	return s
}

// GRPCServer returns a grpc.Server with both services registered, mTLS
// optional at the handshake (enrollment has no client certificate yet) and
// required by Stream. Served on a netlimit.Listener, a connection that
// presents a verified client certificate is marked authenticated, so the
// listener's caps on unauthenticated connections apply to the rest.
func (s *Server) GRPCServer(opts ...grpc.ServerOption) *grpc.Server {
	tlsCfg := &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{s.cfg.CA.ServerCert},
		ClientCAs:    s.cfg.CA.Pool(),
		// A presented certificate must verify; absence is checked per RPC.
		ClientAuth: tls.VerifyClientCertIfGiven,
	}
	base := []grpc.ServerOption{
		grpc.Creds(markAuthenticated{credentials.NewTLS(tlsCfg)}),
		// Covers the TLS handshake and the HTTP/2 preface: a client that
		// connects and says nothing is closed after this.
		grpc.ConnectionTimeout(s.cfg.HandshakeTimeout),
		grpc.MaxRecvMsgSize(s.cfg.MaxBatchBytes + 64<<10),
		grpc.KeepaliveParams(keepalive.ServerParameters{
			MaxConnectionIdle: s.cfg.IdleTimeout,
			Time:              30 * time.Second, Timeout: 10 * time.Second,
		}),
		grpc.KeepaliveEnforcementPolicy(keepalive.EnforcementPolicy{MinTime: 10 * time.Second, PermitWithoutStream: true}),
		grpc.MaxConcurrentStreams(64),
		grpc.StreamInterceptor(s.observeStream),
		grpc.InTapHandle(cancellableStream),
		// An agent opens one stream per connection and keeps it all day,
		// so HPACK's dynamic table would index headers that are never
		// sent again on that connection: advertise none and keep no
		// table per connection.
		grpc.HeaderTableSize(0),
	}
	tr := DefaultTransport()
	if s.cfg.Transport != nil {
		tr = *s.cfg.Transport
	}
	base = append(base, tr.options()...)
	g := grpc.NewServer(append(base, opts...)...)
	vigilv1.RegisterEnrollmentServer(g, s)
	vigilv1.RegisterCollectorServer(g, s)
	return g
}

// markAuthenticated tells the listener (netlimit) that a connection has
// shown a client certificate that verified against the collector's CA.
type markAuthenticated struct {
	credentials.TransportCredentials
}

func (m markAuthenticated) ServerHandshake(raw net.Conn) (net.Conn, credentials.AuthInfo, error) {
	conn, info, err := m.TransportCredentials.ServerHandshake(raw)
	if err == nil {
		if ti, ok := info.(credentials.TLSInfo); ok && len(ti.State.VerifiedChains) > 0 {
			netlimit.Authenticated(raw)
		}
	}
	return conn, info, err
}

func (m markAuthenticated) Clone() credentials.TransportCredentials {
	return markAuthenticated{m.TransportCredentials.Clone()}
}

// ConnectedByGroup counts live streams per device group (for /metrics).
func (s *Server) ConnectedByGroup() map[string]int {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := map[string]int{}
	for _, ss := range s.sessions {
		out[ss.group]++
	}
	return out
}

// Shutdown tells every stream to finish the batch it is committing, send
// its ack and end; GracefulStop on the grpc.Server then returns.
func (s *Server) Shutdown() {
	s.mu.Lock()
	s.shutOnce.Do(func() { close(s.shutdown) })
	live := make([]*session, 0, len(s.sessions))
	for _, ss := range s.sessions {
		live = append(live, ss)
	}
	s.mu.Unlock()
	for _, ss := range live {
		ss.stop()
	}
}

// streamCancelKey carries the cancel function of a stream's own context.
type streamCancelKey struct{}

// cancellableStream (an InTapHandle) gives every stream a context the
// collector can cancel. A server stream's Recv returns when that context
// ends, so a stream can be ended from outside its handler (shutdown,
// Disconnect, a replacing stream) without a goroutine per stream parked in
// Recv. It runs on the connection's reader before the stream's buffers are
// tied to the context, which is why it is a tap and not an interceptor.
func cancellableStream(ctx context.Context, _ *tap.Info) (context.Context, error) {
	ctx, cancel := context.WithCancel(ctx)
	return context.WithValue(ctx, streamCancelKey{}, cancel), nil
}

// Connected reports whether a device has a live stream.
func (s *Server) Connected(deviceID string) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	_, ok := s.sessions[deviceID]
	return ok || (s.cfg.Remote != nil && s.cfg.Remote.Connected(deviceID))
}

// Disconnect ends a device's stream, if any (after revocation).
func (s *Server) Disconnect(deviceID string) {
	s.mu.Lock()
	ss := s.sessions[deviceID]
	s.mu.Unlock()
	if ss != nil {
		ss.cancel()
	}
}

// PushRules sends the current bundle to every connected agent of group
// (all groups when empty) whose rules hash differs.
func (s *Server) PushRules(group string) {
	s.mu.Lock()
	var targets []*session
	for _, ss := range s.sessions {
		if group == "" || ss.group == group {
			targets = append(targets, ss)
		}
	}
	s.mu.Unlock()
	for _, ss := range targets {
		ss.pushRulesIfStale(s.cfg.Rules, "")
	}
}

// Request pushes a request to a connected agent and waits for its result.
func (s *Server) Request(ctx context.Context, deviceID, kind string, params map[string]any) (*vigilv1.RequestResult, error) {
	st, err := structpb.NewStruct(params)
	if err != nil {
		return nil, fmt.Errorf("request params: %w", err)
	}
	idb := make([]byte, 8)
	rand.Read(idb)
	id := hex.EncodeToString(idb)
	ch := make(chan *vigilv1.RequestResult, 1)
	s.mu.Lock()
	ss, ok := s.sessions[deviceID]
	if ok {
		s.pending[id] = ch
	}
	s.mu.Unlock()
	if !ok && s.cfg.Remote != nil {
		return s.cfg.Remote.Request(ctx, deviceID, &vigilv1.Request{RequestId: id, Kind: kind, Params: st})
	}
	if !ok {
		return nil, fmt.Errorf("device %s is not connected", deviceID)
	}
	defer func() {
		s.mu.Lock()
		delete(s.pending, id)
		s.mu.Unlock()
	}()
	msg := &vigilv1.CollectorMessage{Msg: &vigilv1.CollectorMessage_Request{Request: &vigilv1.Request{RequestId: id, Kind: kind, Params: st}}}
	if err := ss.send(msg); err != nil {
		return nil, fmt.Errorf("send request to %s: %w", deviceID, err)
	}
	select {
	case r := <-ch:
		return r, nil
	case <-ss.stream.Context().Done():
		// The agent does not carry a request over to its next stream:
		// tell the requester now rather than at its deadline.
		return nil, fmt.Errorf("the stream of %s ended before it answered: %w", deviceID, ErrRequestLost)
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for %s to answer: %w", deviceID, ctx.Err())
	}
}

// ErrRequestLost: the stream a request was sent on ended before the
// agent's answer came; the request may or may not have been carried out.
var ErrRequestLost = errors.New("request lost with its stream")

// peerDevice returns the device ID from the verified client certificate.
func peerDevice(ctx context.Context) (string, error) {
	p, ok := peer.FromContext(ctx)
	if !ok {
		return "", status.Error(codes.Unauthenticated, "no peer information")
	}
	ti, ok := p.AuthInfo.(credentials.TLSInfo)
	if !ok || len(ti.State.VerifiedChains) == 0 || len(ti.State.VerifiedChains[0]) == 0 {
		return "", status.Error(codes.Unauthenticated, "a client certificate from this collector is required: enroll the device first")
	}
	return ti.State.VerifiedChains[0][0].Subject.CommonName, nil
}

// resourceExhausted is the backpressure answer: the agent waits at least
// retry (plus its own jitter) before reconnecting.
func resourceExhausted(msg string, retry time.Duration) error {
	st := status.New(codes.ResourceExhausted, msg)
	if d, err := st.WithDetails(backoff.RetryInfo(retry)); err == nil {
		st = d
	}
	return st.Err()
}

var errShuttingDown = status.Error(codes.Unavailable, "collector is shutting down; reconnect later")

func isClosedErr(err error) bool {
	return errors.Is(err, store.ErrClosed)
}
