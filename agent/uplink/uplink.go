// Package uplink keeps the agent's stream to the collector: it drains the
// spool in order, deletes findings only when acknowledged, sends heartbeats,
// applies pushed rules and answers requests, and reconnects with full-jitter
// backoff.
package uplink

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/resolver"
	"google.golang.org/grpc/resolver/manual"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/agent/hostinfo"
	"github.com/vigil-safeguarding/vigil/agent/spool"
	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/agent/upgrade"
	"github.com/vigil-safeguarding/vigil/internal/backoff"
	"github.com/vigil-safeguarding/vigil/internal/contract"
	"github.com/vigil-safeguarding/vigil/internal/version"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Engine is what the uplink needs from the rules engine.
type Engine interface {
	RulesHash() string
	ApplyBundle(ctx context.Context, b *vigilv1.RulesBundle) error
	TriggerTest(ctx context.Context, n int, source, ruleID string) (first, last uint64, nonce string, err error)
}

// Config for New.
type Config struct {
	State  state.Dir
	Agent  state.Config
	Spool  *spool.Spool
	Engine Engine
	Logger *slog.Logger
	// Window is how many batches may await their ack at once.
	Window int
	// BackoffBase and BackoffMax bound reconnect waits.
	BackoffBase, BackoffMax time.Duration
	// IdentityRetry is the wait after the collector says this identity must
	// re-enroll; the agent keeps spooling meanwhile.
	IdentityRetry time.Duration
	// Usage reports the agent's own CPU and RSS for heartbeats.
	Usage func() (cpuPercent float64, rssBytes int64)
	// LastLocalError, when set, reports a local failure outside the spool
	// (findings the engine could not record) for the heartbeat's last_error
	// when the spool has none of its own.
	LastLocalError func() string
	// OnWelcome sees each Welcome (the evidence recipient may change).
	OnWelcome func(*vigilv1.Welcome)
	// Audit gathers the inventory an "audit" request asks for (nil: the
	// agent answers that it cannot).
	Audit func(ctx context.Context) (*vigilv1.Inventory, error)
	// Upgrader handles upgrade offers; nil ignores them.
	Upgrader Upgrader
	// Lifecycle (how the previous run ended, runrecord.Begin) travels in
	// every Hello of this process.
	Lifecycle *vigilv1.Lifecycle
}

// Upgrader is what the uplink needs from agent/upgrade.
type Upgrader interface {
	// Offer handles an offer (downloading through dl) and returns the
	// report to send, if any.
	Offer(ctx context.Context, o *vigilv1.UpgradeOffer, dl upgrade.Downloader) *vigilv1.UpgradeReport
	// Welcomed confirms a pending upgrade and returns reports to send.
	Welcomed() []*vigilv1.UpgradeReport
}

// downloader adapts the generated client to upgrade.Downloader.
type downloader struct{ c vigilv1.CollectorClient }

func (d downloader) DownloadRelease(ctx context.Context, req *vigilv1.DownloadRequest) (upgrade.ReleaseStream, error) {
	return d.c.DownloadRelease(ctx, req)
}

// goodbyeWait bounds how long a stopping agent waits for the collector to
// take its Goodbye: a service stop must not hang on an unreachable server.
const goodbyeWait = 3 * time.Second

// Status is a snapshot for `vigil-agent status`.
type Status struct {
	Connected     bool      `json:"connected"`
	LastConnected time.Time `json:"last_connected,omitempty"`
	LastError     string    `json:"last_error,omitempty"`
	NeedsReenroll bool      `json:"needs_reenroll,omitempty"`
	AckedTotal    uint64    `json:"acked_total"`
}

// Uplink is the agent side of the Collector.Stream RPC.
type Uplink struct {
	cfg      Config
	log      *slog.Logger
	instance string

	mu     sync.Mutex
	status Status
}

// New returns an Uplink; Run starts it.
func New(cfg Config) *Uplink {
	if cfg.Window <= 0 {
		cfg.Window = 4
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = 500 * time.Millisecond
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 2 * time.Minute
	}
	if cfg.IdentityRetry <= 0 {
		cfg.IdentityRetry = 10 * time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	b := make([]byte, 8)
	rand.Read(b)
	return &Uplink{cfg: cfg, log: cfg.Logger, instance: hex.EncodeToString(b)}
}

// Status returns a snapshot.
func (u *Uplink) Status() Status {
	u.mu.Lock()
	defer u.mu.Unlock()
	return u.status
}

func (u *Uplink) setStatus(fn func(*Status)) {
	u.mu.Lock()
	fn(&u.status)
	u.mu.Unlock()
}

// Run connects and reconnects until ctx ends.
func (u *Uplink) Run(ctx context.Context) error {
	conn, err := u.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	client := vigilv1.NewCollectorClient(conn)
	bo := backoff.New(u.cfg.BackoffBase, u.cfg.BackoffMax)
	for ctx.Err() == nil {
		started := time.Now()
		acked, err := u.session(ctx, client)
		if ctx.Err() != nil {
			return nil
		}
		// A session that got work acknowledged or lasted a while was
		// healthy: start the backoff over.
		if acked > 0 || time.Since(started) > time.Minute {
			bo.Reset()
		}
		wait := u.waitAfter(err, bo)
		u.setStatus(func(s *Status) { s.Connected = false; s.LastError = errString(err) })
		u.log.Warn("collector stream ended; reconnecting", "err", err, "wait", wait.Round(time.Millisecond), "attempt", bo.Attempt())
		select {
		case <-ctx.Done():
			return nil
		case <-time.After(wait):
		}
	}
	return nil
}

func (u *Uplink) dial() (*grpc.ClientConn, error) {
	tlsCfg, err := u.cfg.State.ClientTLS(u.cfg.Agent)
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{
		grpc.WithTransportCredentials(credentials.NewTLS(tlsCfg)),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 60 * time.Second, Timeout: 20 * time.Second}),
		grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32 << 20)),
	}
	target := u.cfg.Agent.Collector
	if addrs := u.cfg.Agent.StreamAddrs(); len(addrs) > 1 {
		// Several front-ends: pick_first over the list, shuffled so that a
		// fleet spreads over them; when the held one is lost the next
		// stream goes to the first of the others that answers.
		r := manual.NewBuilderWithScheme("vigil-collectors")
		state := resolver.State{}
		for _, a := range addrs {
			state.Addresses = append(state.Addresses, resolver.Address{Addr: a})
		}
		r.InitialState(state)
		target = r.Scheme() + ":///collectors"
		opts = append(opts, grpc.WithResolvers(r),
			grpc.WithDefaultServiceConfig(`{"loadBalancingConfig":[{"pick_first":{"shuffleAddressList":true}}]}`))
	} else {
		target = addrs[0]
	}
	conn, err := grpc.NewClient(target, opts...)
	if err != nil {
		return nil, fmt.Errorf("collector address %q: %w", strings.Join(u.cfg.Agent.StreamAddrs(), ","), err)
	}
	return conn, nil
}

// SayGoodbye opens a stream of its own, says hello and goodbye with reason
// and waits until the collector has taken it (it ends the stream). For a
// package's removal script, run after the service has stopped: a second
// stream beside a running agent would be refused as a copied identity.
func (u *Uplink) SayGoodbye(ctx context.Context, reason vigilv1.GoodbyeReason) error {
	conn, err := u.dial()
	if err != nil {
		return err
	}
	defer conn.Close()
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stream, err := vigilv1.NewCollectorClient(conn).Stream(ctx)
	if err != nil {
		return fmt.Errorf("open stream: %w", err)
	}
	if err := stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: u.hello()}}); err != nil {
		return fmt.Errorf("send hello: %w", recvErr(stream, err))
	}
	first, err := stream.Recv()
	if err != nil {
		return fmt.Errorf("collector refused the stream: %w", err)
	}
	if first.GetWelcome() == nil {
		return errors.New("collector did not answer hello with welcome")
	}
	return goodbye(stream, func(m *vigilv1.AgentMessage) error { return stream.Send(m) }, reason, nil)
}

// goodbye sends Goodbye, half-closes and waits (at most goodbyeWait) for
// the collector to end the stream, which it does once it has recorded it.
// recvDone, when not nil, is where another goroutine reports the end of the
// stream; else this one receives.
func goodbye(stream vigilv1.Collector_StreamClient, send func(*vigilv1.AgentMessage) error, reason vigilv1.GoodbyeReason, recvDone <-chan error) error {
	m := &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Goodbye{Goodbye: &vigilv1.Goodbye{Reason: reason, SentAt: timestamppb.Now()}}}
	if err := send(m); err != nil {
		return fmt.Errorf("send goodbye: %w", err)
	}
	stream.CloseSend()
	if recvDone == nil {
		ch := make(chan error, 1)
		go func() {
			for {
				if _, err := stream.Recv(); err != nil {
					ch <- err
					return
				}
			}
		}()
		recvDone = ch
	}
	select {
	case err := <-recvDone:
		if errors.Is(err, io.EOF) {
			return nil
		}
		return fmt.Errorf("goodbye: %w", err)
	case <-time.After(goodbyeWait):
		return errors.New("goodbye: the collector did not end the stream in time")
	}
}

func (u *Uplink) hello() *vigilv1.Hello {
	hostname, _ := os.Hostname()
	// A host name is bytes to the OS; one that is not UTF-8 would make
	// every hello fail to encode and the device fall silent.
	hostname = contract.Truncate(contract.ValidString(hostname), 255)
	var rulesHash string
	if u.cfg.Engine != nil { // nil for SayGoodbye, which runs no engine
		rulesHash = u.cfg.Engine.RulesHash()
	}
	return &vigilv1.Hello{
		AgentVersion: version.Version, RulesHash: rulesHash, HostFingerprint: hostinfo.Fingerprint(),
		Hostname: hostname, Os: runtime.GOOS, Arch: runtime.GOARCH, InstanceId: u.instance,
		Lifecycle: u.cfg.Lifecycle, DeviceRole: contract.Truncate(contract.ValidString(u.cfg.Agent.Role), 64),
	}
}

func (u *Uplink) waitAfter(err error, bo *backoff.Backoff) time.Duration {
	switch status.Code(err) {
	case codes.ResourceExhausted:
		floor, _ := backoff.RetryDelay(err)
		return bo.Next(max(floor, u.cfg.BackoffBase))
	case codes.FailedPrecondition, codes.AlreadyExists, codes.PermissionDenied, codes.Unauthenticated:
		// The collector says this identity is not (or no longer) valid
		// here. Keep spooling and ask again rarely: a technician must
		// re-enroll, or the other holder of the identity goes away.
		u.setStatus(func(s *Status) { s.NeedsReenroll = true })
		return u.cfg.IdentityRetry + bo.Next(0)
	}
	return bo.Next(0)
}

func errString(err error) string {
	if err == nil {
		return ""
	}
	return err.Error()
}

// session runs one stream; it returns how many batches were acknowledged.
func (u *Uplink) session(ctx context.Context, client vigilv1.CollectorClient) (acked int, err error) {
	// The stream outlives ctx by the goodbye: when the agent stops (ctx
	// ends) it still says why before the stream is cancelled.
	parent := ctx
	ctx, cancel := context.WithCancel(context.WithoutCancel(parent))
	defer cancel()
	stop := context.AfterFunc(parent, func() {
		time.AfterFunc(goodbyeWait+time.Second, cancel) // bound for a stream stuck before its goodbye
	})
	defer stop()
	stream, err := client.Stream(ctx)
	if err != nil {
		return 0, err
	}
	if err := stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: u.hello()}}); err != nil {
		return 0, recvErr(stream, err)
	}
	first, err := stream.Recv()
	if err != nil {
		return 0, err
	}
	welcome := first.GetWelcome()
	if welcome == nil {
		return 0, errors.New("collector did not answer hello with welcome")
	}
	u.setStatus(func(s *Status) {
		s.Connected, s.LastConnected, s.LastError, s.NeedsReenroll = true, time.Now(), "", false
	})
	u.log.Info("connected to collector", "collector", u.cfg.Agent.Collector, "device", welcome.DeviceId)
	if u.cfg.OnWelcome != nil {
		u.cfg.OnWelcome(welcome)
	}

	s := &streamState{
		u: u, stream: stream, welcome: welcome, client: client,
		inflight: map[uint64][]uint64{}, slots: make(chan struct{}, u.cfg.Window),
	}
	if u.cfg.Upgrader != nil {
		// The welcome is what confirms an upgraded binary (its watchdog
		// stands down); rollbacks and refusals are reported now.
		for _, rep := range u.cfg.Upgrader.Welcomed() {
			if err := s.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_UpgradeReport{UpgradeReport: rep}}); err != nil {
				return 0, err
			}
		}
	}
	recvc, sendc := make(chan error, 1), make(chan error, 1)
	go func() { recvc <- s.receive(ctx) }()
	go func() { sendc <- s.sendLoop(parent) }()
	select {
	case err = <-recvc:
	case err = <-sendc:
		if parent.Err() != nil {
			// Stopping: batches in flight stay spooled and are resent
			// after the restart (the collector drops duplicates).
			if gerr := goodbye(stream, s.send, vigilv1.GoodbyeReason_GOODBYE_REASON_STOP, recvc); gerr != nil {
				u.log.Warn("stopping: goodbye not delivered", "err", gerr)
			} else {
				u.log.Info("stopping: said goodbye to the collector")
			}
			cancel()
			s.mu.Lock()
			acked = s.acked
			s.mu.Unlock()
			return acked, nil
		}
		if errors.Is(err, io.EOF) {
			// A failed Send only says the stream is gone; the reason (and any
			// retry delay) arrives on the receiving side.
			select {
			case rerr := <-recvc:
				err = rerr
			case <-time.After(2 * time.Second):
			}
		}
	}
	cancel()
	s.mu.Lock()
	acked = s.acked
	s.mu.Unlock()
	return acked, err
}

// recvErr prefers the server's status over a local send error (io.EOF).
func recvErr(stream vigilv1.Collector_StreamClient, sendErr error) error {
	if _, err := stream.Recv(); err != nil {
		return err
	}
	return sendErr
}

type streamState struct {
	u       *Uplink
	stream  vigilv1.Collector_StreamClient
	welcome *vigilv1.Welcome
	client  vigilv1.CollectorClient
	sendMu  sync.Mutex

	mu       sync.Mutex
	inflight map[uint64][]uint64 // batch id -> seqs
	acked    int
	slots    chan struct{} // one token per batch awaiting its ack
}

func (s *streamState) send(m *vigilv1.AgentMessage) error {
	s.sendMu.Lock()
	defer s.sendMu.Unlock()
	return s.stream.Send(m)
}

func (s *streamState) receive(ctx context.Context) error {
	for {
		m, err := s.stream.Recv()
		if err != nil {
			return err
		}
		switch msg := m.Msg.(type) {
		case *vigilv1.CollectorMessage_Ack:
			s.mu.Lock()
			seqs, ok := s.inflight[msg.Ack.BatchId]
			delete(s.inflight, msg.Ack.BatchId)
			s.mu.Unlock()
			if !ok {
				continue
			}
			// Findings refused as permanently invalid leave the spool for
			// good, counted, so they can never block those behind them.
			if err := s.setAside(seqs, msg.Ack.Rejected); err != nil {
				return err
			}
			// Only now, with the collector's word that the batch is durable,
			// may the findings leave the spool.
			if err := s.u.cfg.Spool.Delete(seqs); err != nil {
				return fmt.Errorf("delete acknowledged findings: %w", err)
			}
			s.mu.Lock()
			s.acked++
			s.mu.Unlock()
			s.u.setStatus(func(st *Status) { st.AckedTotal += uint64(len(seqs)) })
			<-s.slots
		case *vigilv1.CollectorMessage_Rules:
			if err := s.u.cfg.Engine.ApplyBundle(ctx, msg.Rules); err != nil {
				s.u.log.Error("pushed rules not applied", "err", err)
			}
		case *vigilv1.CollectorMessage_Request:
			go s.answer(ctx, msg.Request)
		case *vigilv1.CollectorMessage_UpgradeOffer:
			if s.u.cfg.Upgrader != nil {
				// The download must not hold up acks and rules.
				go s.upgrade(ctx, msg.UpgradeOffer)
			}
		}
	}
}

func (s *streamState) upgrade(ctx context.Context, o *vigilv1.UpgradeOffer) {
	rep := s.u.cfg.Upgrader.Offer(ctx, o, downloader{s.client})
	if rep == nil {
		return
	}
	rep.Reason = contract.Truncate(contract.ValidString(rep.Reason), contract.MaxMessage)
	if err := s.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_UpgradeReport{UpgradeReport: rep}}); err != nil {
		s.u.log.Warn("send upgrade report", "err", err)
	}
}

// setAside removes the findings of a batch (seqs) that the collector
// refused, logging each with the collector's reason. Only seqs of this
// batch are honoured.
func (s *streamState) setAside(seqs []uint64, rejected []*vigilv1.Rejected) error {
	if len(rejected) == 0 {
		return nil
	}
	inBatch := make(map[uint64]bool, len(seqs))
	for _, seq := range seqs {
		inBatch[seq] = true
	}
	aside := make([]uint64, 0, len(rejected))
	for _, r := range rejected {
		if !inBatch[r.GetSeq()] {
			s.u.log.Warn("collector refused a finding that is not in the acknowledged batch; ignored", "seq", r.GetSeq())
			continue
		}
		aside = append(aside, r.GetSeq())
		s.u.log.Warn("collector refused a finding as permanently invalid; set aside, not retried", "seq", r.GetSeq(), "reason", r.GetReason())
	}
	if _, err := s.u.cfg.Spool.SetAside(aside); err != nil {
		return fmt.Errorf("set aside refused findings: %w", err)
	}
	return nil
}

func (s *streamState) answer(ctx context.Context, req *vigilv1.Request) {
	res := &vigilv1.RequestResult{RequestId: req.RequestId}
	switch req.Kind {
	case "selftest":
		params := req.GetParams().AsMap()
		n := 1
		if v, ok := params["count"].(float64); ok {
			n = int(v)
		}
		ruleID, _ := params["rule"].(string)
		first, last, nonce, err := s.u.cfg.Engine.TriggerTest(ctx, n, "collector", ruleID)
		if err != nil {
			res.Error = err.Error()
		} else {
			res.Ok = true
			res.Result, _ = structpb.NewStruct(map[string]any{"first_seq": first, "last_seq": last, "nonce": nonce, "count": n})
		}
	case "audit":
		if s.u.cfg.Audit == nil {
			res.Error = "this agent cannot answer audits"
			break
		}
		inv, err := s.u.cfg.Audit(ctx)
		if err != nil {
			res.Error = err.Error()
		} else {
			res.Ok, res.Inventory = true, inv
		}
	default:
		res.Error = fmt.Sprintf("unknown request kind %q", req.Kind)
	}
	res.Error = contract.Truncate(contract.ValidString(res.Error), contract.MaxMessage)
	if err := s.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Result{Result: res}}); err != nil {
		s.u.log.Warn("send request result", "err", err)
	}
}

// sendLoop sends spooled findings in seq order, at most Window batches
// unacknowledged, plus heartbeats. On reconnect it starts again from the
// oldest finding still spooled; the collector drops what it already has.
func (s *streamState) sendLoop(ctx context.Context) error {
	hbEvery := time.Duration(s.welcome.HeartbeatSeconds) * time.Second
	if hbEvery <= 0 {
		hbEvery = time.Minute
	}
	hb := time.NewTicker(hbEvery)
	defer hb.Stop()
	if err := s.heartbeat(); err != nil {
		return err
	}
	maxN, maxBytes := int(s.welcome.MaxBatchFindings), int(s.welcome.MaxBatchBytes)
	// A record larger than the collector's whole batch limit can never be
	// accepted (gRPC refuses the message before the collector can name it).
	limit := maxBytes
	if maxN <= 0 || maxN > 500 {
		maxN = 500
	}
	// Leave room for the envelope and the seq/device fields added below.
	maxBytes = maxBytes*3/4 - 4096
	if maxBytes <= 0 {
		maxBytes = 1 << 20
	}
	var lastSent uint64
	var batchID uint64
	notify := s.u.cfg.Spool.Notify()
	for {
		// Wait for a free slot in the window.
		select {
		case s.slots <- struct{}{}:
		case <-ctx.Done():
			return ctx.Err()
		}
		recs, err := s.u.cfg.Spool.ReadAfter(lastSent, maxN, maxBytes)
		if err != nil {
			return fmt.Errorf("read spool: %w", err)
		}
		if len(recs) == 0 {
			<-s.slots
			select {
			case <-notify:
			case <-hb.C:
				if err := s.heartbeat(); err != nil {
					return err
				}
			case <-ctx.Done():
				return ctx.Err()
			}
			continue
		}
		batchID++
		batch := &vigilv1.FindingBatch{BatchId: batchID, Findings: make([]*vigilv1.Finding, 0, len(recs))}
		seqs := make([]uint64, 0, len(recs))
		for _, r := range recs {
			if limit > 0 && len(r.Payload) > limit {
				s.u.log.Error("spooled finding larger than the collector accepts; set aside, not sent", "seq", r.Seq, "bytes", len(r.Payload), "limit", limit)
				if _, err := s.u.cfg.Spool.SetAside([]uint64{r.Seq}); err != nil {
					return fmt.Errorf("set aside oversized finding: %w", err)
				}
				continue
			}
			f := &vigilv1.Finding{}
			if err := proto.Unmarshal(r.Payload, f); err != nil {
				// A record this binary cannot decode would block the queue
				// forever: set it aside (counted, reported in heartbeats)
				// rather than stall every later one.
				s.u.log.Error("spooled finding cannot be decoded; set aside, not sent", "seq", r.Seq, "err", err)
				if _, err := s.u.cfg.Spool.SetAside([]uint64{r.Seq}); err != nil {
					return fmt.Errorf("set aside undecodable finding: %w", err)
				}
				continue
			}
			f.Seq = r.Seq
			batch.Findings = append(batch.Findings, f)
			seqs = append(seqs, r.Seq)
		}
		lastSent = recs[len(recs)-1].Seq
		if len(seqs) == 0 {
			<-s.slots
			continue
		}
		s.mu.Lock()
		s.inflight[batchID] = seqs
		s.mu.Unlock()
		if err := s.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Findings{Findings: batch}}); err != nil {
			return err
		}
		select {
		case <-hb.C:
			if err := s.heartbeat(); err != nil {
				return err
			}
		default:
		}
	}
}

func (s *streamState) heartbeat() error {
	st := s.u.cfg.Spool.Stats()
	hb := &vigilv1.Heartbeat{
		AgentVersion: version.Version, RulesHash: s.u.cfg.Engine.RulesHash(),
		SpoolDepth: int64(st.Count), SpoolBytes: st.Bytes, DroppedTotal: st.DroppedTotal,
		SpoolWriteFailures: st.WriteFailures, LastError: st.LastError,
		SentAt: timestamppb.Now(),
	}
	hb.RejectedTotal = st.RejectedTotal
	if hb.LastError == "" && s.u.cfg.LastLocalError != nil {
		hb.LastError = s.u.cfg.LastLocalError()
	}
	if s.u.cfg.Usage != nil {
		hb.CpuPercent, hb.RssBytes = s.u.cfg.Usage()
	}
	return s.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: hb}})
}
