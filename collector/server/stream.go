package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/contract"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// session is one connected agent's stream.
type session struct {
	device   string
	school   string // the device's school: its rules bundle is that school's
	group    string
	instance string
	stream   vigilv1.Collector_StreamServer
	sendMu   sync.Mutex
	// cancel ends the stream's own context (installed by cancellableStream),
	// which is what makes a Recv in progress return.
	cancel context.CancelFunc
	// recvMu guards waiting and stopping: a stream waiting in Recv is
	// ended at once on shutdown, one handling a message finishes it (the
	// commit and its ack) and then ends.
	recvMu     sync.Mutex
	waiting    bool
	stopping   bool
	lastMu     sync.Mutex
	lastHeard  time.Time
	rulesHash  string
	pushedHash string
	// Upgrades: what the agent runs and on which platform, and the
	// release last offered on this stream.
	version, os, arch string
	offered           string
	offeredAt         time.Time
}

func (ss *session) send(m *vigilv1.CollectorMessage) error {
	ss.sendMu.Lock()
	defer ss.sendMu.Unlock()
	return ss.stream.Send(m)
}

// recv reads the next message on the handler's own goroutine. There is no
// receive goroutine per stream (a parked goroutine with its stack and
// channels, for every agent all day): shutdown and Disconnect instead
// cancel the stream's context, which ends a Recv in progress.
func (ss *session) recv() (*vigilv1.AgentMessage, error) {
	ss.recvMu.Lock()
	if ss.stopping {
		ss.recvMu.Unlock()
		return nil, errShuttingDown
	}
	ss.waiting = true
	ss.recvMu.Unlock()
	m, err := ss.stream.Recv()
	ss.recvMu.Lock()
	ss.waiting = false
	stopping := ss.stopping
	ss.recvMu.Unlock()
	if stopping {
		// Read but not handled: it is not acknowledged, so the agent
		// sends it again to whichever collector it reaches next.
		return nil, errShuttingDown
	}
	return m, err
}

// stop ends the stream for shutdown: at once if it is waiting for a
// message, else after the message it is handling.
func (ss *session) stop() {
	ss.recvMu.Lock()
	ss.stopping = true
	if ss.waiting {
		ss.cancel()
	}
	ss.recvMu.Unlock()
}

func (ss *session) heard(t time.Time) {
	ss.lastMu.Lock()
	ss.lastHeard = t
	ss.lastMu.Unlock()
}

func (ss *session) lastHeardAt() time.Time {
	ss.lastMu.Lock()
	defer ss.lastMu.Unlock()
	return ss.lastHeard
}

// pushRulesIfStale sends the group's bundle unless the agent already runs it
// (agentHash, when known) or it was already pushed on this stream.
func (ss *session) pushRulesIfStale(src RulesSource, agentHash string) {
	if src == nil {
		return
	}
	b := src.Bundle(ss.school, ss.group)
	if b == nil {
		return
	}
	ss.lastMu.Lock()
	if agentHash != "" {
		ss.rulesHash = agentHash
	}
	stale := ss.rulesHash != b.Hash && ss.pushedHash != b.Hash
	if stale {
		ss.pushedHash = b.Hash
	}
	ss.lastMu.Unlock()
	if stale {
		ss.send(&vigilv1.CollectorMessage{Msg: &vigilv1.CollectorMessage_Rules{Rules: b}})
	}
}

// Stream serves one agent. Each batch is committed and acknowledged before
// the next is read, so an ack always follows a durable commit; many agents'
// batches still share a commit through the store's group commit.
//
// The handler's goroutine spends the agent's whole connection parked in
// Recv, so what is on its stack then is paid per agent all day: the stack
// only shrinks when less than a quarter of it is in use. The hello and its
// large locals (the device record, the welcome) therefore live in
// admit's frame, which has returned before the first Recv of the loop.
func (s *Server) Stream(stream vigilv1.Collector_StreamServer) error {
	var (
		ss  *session
		dev *store.Device
	)
	// Apart for the same reason as each message (handleApart): admitting
	// (the hello, the welcome, a rules bundle to marshal) is the deepest
	// work a stream does.
	if err := apart(func() (err error) { ss, dev, err = s.admit(stream); return err }); err != nil {
		return err
	}
	defer s.unregister(ss)
	return s.serveStream(stream.Context(), ss, dev)
}

func (s *Server) serveStream(ctx context.Context, ss *session, dev *store.Device) error {
	for {
		m, err := ss.recv()
		if err != nil {
			if errors.Is(err, errShuttingDown) {
				return err
			}
			if ctx.Err() != nil {
				// Ended by Disconnect, a replacing stream, or the agent.
				return status.FromContextError(ctx.Err()).Err()
			}
			return err
		}
		ss.heard(s.cfg.Now())
		if err := s.handleApart(ctx, ss, dev, m); err != nil {
			if errors.Is(err, errGoodbye) {
				return nil
			}
			return err
		}
	}
}

// handleApart runs handle on a goroutine of its own and waits for it. The
// stream's goroutine lives as long as the agent's connection, and a Go stack
// that has grown only shrinks while less than a quarter of it is in use:
// handling a batch (validation, the commit) would grow it to 16 KiB, which
// the ~4 KiB it needs while parked in Recv can never shrink back, for every
// agent all day. A goroutine per message costs about a microsecond; a
// message comes a minute.
func (s *Server) handleApart(ctx context.Context, ss *session, dev *store.Device, m *vigilv1.AgentMessage) error {
	return apart(func() error { return s.handle(ctx, ss, dev, m) })
}

// apart runs fn on a new goroutine and waits for it.
func apart(fn func() error) error {
	done := make(chan error, 1)
	go func() { done <- fn() }()
	return <-done
}

// admit reads the hello, registers the session and welcomes the agent. On
// success the caller owns the registration (unregister when the stream ends).
func (s *Server) admit(stream vigilv1.Collector_StreamServer) (*session, *store.Device, error) {
	ctx := stream.Context()
	cancel, ok := ctx.Value(streamCancelKey{}).(context.CancelFunc)
	if !ok {
		return nil, nil, status.Error(codes.Internal, "stream context cannot be ended by the collector: serve through Server.GRPCServer")
	}
	deviceID, err := peerDevice(ctx)
	if err != nil {
		return nil, nil, err
	}
	dev, ok, err := lookupDevice(s.cfg.Store, deviceID)
	if err != nil {
		// Not "re-enroll": the device may well be enrolled, and an agent
		// told so would throw its identity away.
		return nil, nil, status.Errorf(codes.Unavailable, "device records cannot be read now: %v", err)
	}
	if !ok || dev.Revoked {
		return nil, nil, status.Error(codes.PermissionDenied, "device is not enrolled with this collector (or was revoked): re-enroll")
	}

	first, err := recvWithTimeout(stream, cancel, 15*time.Second)
	if err != nil {
		return nil, nil, err
	}
	hello := first.GetHello()
	if hello == nil {
		return nil, nil, status.Error(codes.InvalidArgument, "the first message on a stream must be hello")
	}
	if dev.HostFingerprint != "" && hello.GetHostFingerprint() != dev.HostFingerprint {
		s.raiseIdentityConflict(ctx, dev, hello, "host fingerprint differs from the one enrolled")
		return nil, nil, status.Error(codes.FailedPrecondition, "this device identity was enrolled on another host (cloned image?): re-enroll this device with a new token")
	}

	ss := &session{device: deviceID, school: store.SchoolOf(dev.School), group: dev.Group, instance: hello.GetInstanceId(), stream: stream, cancel: cancel, lastHeard: s.cfg.Now(),
		version: limit(hello.GetAgentVersion(), 64), os: limit(hello.GetOs(), 16), arch: limit(hello.GetArch(), 16)}
	if err := s.register(ss, dev, hello); err != nil {
		return nil, nil, err
	}

	now := s.cfg.Now()
	s.cfg.Store.UpdateDevice(deviceID, func(d *store.Device) { applyHello(d, hello, now) })
	s.deviceEvent(&vigilv1.DeviceEvent{DeviceId: deviceID, At: timestamppb.New(now), Event: &vigilv1.DeviceEvent_Hello{Hello: hello}})
	recipient, err := s.evidenceRecipient(dev.School)
	if err != nil {
		// The agent keeps sealing to the recipient it has, which the
		// keyring still opens; the stream need not fail for it.
		s.log.Error("evidence key of the device's school", "device", deviceID, "school", store.SchoolOf(dev.School), "err", err)
	}
	welcome := &vigilv1.Welcome{DeviceId: deviceID, Group: dev.Group,
		MaxBatchFindings: int32(s.cfg.MaxBatchFindings), MaxBatchBytes: int32(s.cfg.MaxBatchBytes),
		HeartbeatSeconds: int32(s.cfg.HeartbeatInterval / time.Second), EvidenceRecipient: recipient}
	if err := ss.send(&vigilv1.CollectorMessage{Msg: &vigilv1.CollectorMessage_Welcome{Welcome: welcome}}); err != nil {
		s.unregister(ss)
		return nil, nil, err
	}
	ss.pushRulesIfStale(s.cfg.Rules, hello.GetRulesHash())
	if s.cfg.OnConnect != nil {
		go s.cfg.OnConnect(deviceID)
	}
	ss.offerUpgradeIfDue(s.cfg.Upgrades)
	return ss, &dev, nil
}

// recvWithTimeout reads the hello, ending the stream if none comes within d
// (a timer, not a goroutine, per connecting agent).
func recvWithTimeout(stream vigilv1.Collector_StreamServer, cancel context.CancelFunc, d time.Duration) (*vigilv1.AgentMessage, error) {
	var late atomic.Bool
	t := time.AfterFunc(d, func() { late.Store(true); cancel() })
	m, err := stream.Recv()
	if !t.Stop() && late.Load() {
		return nil, status.Error(codes.DeadlineExceeded, "no hello within 15s")
	}
	return m, err
}

// register admits a session. A second live stream for one identity from a
// different agent process is a copied identity (a cloned image): refuse the
// newcomer and record it, unless the old stream has gone quiet for three
// heartbeats, in which case it is a dead connection being replaced.
func (s *Server) register(ss *session, dev store.Device, hello *vigilv1.Hello) error {
	s.mu.Lock()
	select {
	case <-s.shutdown:
		s.mu.Unlock()
		return errShuttingDown
	default:
	}
	if len(s.sessions) >= s.cfg.MaxStreams {
		s.mu.Unlock()
		return resourceExhausted("collector at its stream limit", s.cfg.RetryAfter)
	}
	old, exists := s.sessions[ss.device]
	stale := exists && s.cfg.Now().Sub(old.lastHeardAt()) > 3*s.cfg.HeartbeatInterval
	if exists && old.instance != ss.instance && !stale {
		s.mu.Unlock()
		s.raiseIdentityConflict(ss.stream.Context(), dev, hello, "identity already connected from another agent instance")
		return status.Error(codes.AlreadyExists, "this device identity is already connected from elsewhere (cloned image?): re-enroll this device with a new token")
	}
	s.sessions[ss.device] = ss
	s.mu.Unlock()
	if exists {
		old.cancel()
	}
	return nil
}

func (s *Server) unregister(ss *session) {
	s.mu.Lock()
	ended := s.sessions[ss.device] == ss
	if ended {
		delete(s.sessions, ss.device)
		s.cfg.Store.UpdateDevice(ss.device, func(d *store.Device) { d.Connected = false })
	}
	s.mu.Unlock()
	if ended {
		s.deviceEvent(&vigilv1.DeviceEvent{DeviceId: ss.device, At: timestamppb.New(s.cfg.Now()), Event: &vigilv1.DeviceEvent_Ended{Ended: true}})
	}
	if ended && s.cfg.OnDisconnect != nil {
		s.cfg.OnDisconnect(ss.device)
	}
}

func (s *Server) handle(ctx context.Context, ss *session, dev *store.Device, m *vigilv1.AgentMessage) error {
	switch msg := m.Msg.(type) {
	case *vigilv1.AgentMessage_Findings:
		ack, err := s.Ingest(ctx, *dev, msg.Findings)
		if err != nil {
			return err
		}
		s.notePresenceFindings(ss.device, msg.Findings)
		return ss.send(&vigilv1.CollectorMessage{Msg: &vigilv1.CollectorMessage_Ack{Ack: ack}})
	case *vigilv1.AgentMessage_Heartbeat:
		hb := msg.Heartbeat
		now := s.cfg.Now()
		s.cfg.Store.UpdateDevice(ss.device, func(d *store.Device) { applyHeartbeat(d, hb, now) })
		s.deviceEvent(&vigilv1.DeviceEvent{DeviceId: ss.device, At: timestamppb.New(now), Event: &vigilv1.DeviceEvent_Heartbeat{Heartbeat: hb}})
		ss.pushRulesIfStale(s.cfg.Rules, hb.GetRulesHash())
		ss.lastMu.Lock()
		ss.version = limit(hb.GetAgentVersion(), 64)
		ss.lastMu.Unlock()
		ss.offerUpgradeIfDue(s.cfg.Upgrades)
		return nil
	case *vigilv1.AgentMessage_UpgradeReport:
		if s.cfg.Upgrades != nil {
			s.cfg.Upgrades.Record(ss.device, msg.UpgradeReport)
		}
		return nil
	case *vigilv1.AgentMessage_Result:
		s.mu.Lock()
		ch := s.pending[msg.Result.GetRequestId()]
		s.mu.Unlock()
		if ch != nil {
			select {
			case ch <- msg.Result:
			default:
			}
		}
		return nil
	case *vigilv1.AgentMessage_Goodbye:
		reason := goodbyeReasons[msg.Goodbye.GetReason()]
		if reason == "" {
			return status.Error(codes.InvalidArgument, "goodbye without a known reason")
		}
		now := s.cfg.Now()
		if err := s.cfg.Store.UpdateDevice(ss.device, func(d *store.Device) { applyGoodbye(d, reason, now) }); err != nil {
			return status.Error(codes.Internal, "could not record goodbye")
		}
		if s.cfg.Events != nil {
			// Durable before the agent is let go, as the flush below is.
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			err := s.cfg.Events.DeviceEvent(ctx, &vigilv1.DeviceEvent{DeviceId: ss.device, At: timestamppb.New(now),
				Event: &vigilv1.DeviceEvent_Goodbye{Goodbye: msg.Goodbye}})
			cancel()
			if err != nil {
				return status.Error(codes.Unavailable, "could not record goodbye; say it again")
			}
		}
		// Durable at once: a stop or uninstall is often followed by the
		// collector never hearing from the device again.
		if err := s.cfg.Store.FlushDevices(); err != nil {
			s.log.Warn("goodbye recorded in memory, flush failed", "device", ss.device, "err", err)
		}
		s.log.Info("agent said goodbye", "device", ss.device, "reason", reason)
		return errGoodbye
	case *vigilv1.AgentMessage_Hello:
		return status.Error(codes.InvalidArgument, "hello sent twice")
	default:
		return status.Error(codes.InvalidArgument, "empty or unknown agent message")
	}
}

// Ingest validates a batch from dev and commits it durably through
// cfg.Findings (the store, or JetStream in front of it), returning the ack
// to send. A finding that breaks the shared contract (internal/contract)
// is refused on its own: it is listed in Ack.rejected with the reason, a
// "finding-rejected" record takes its (device, seq) so a technician sees
// what was lost, and the rest of the batch is stored, so one bad finding can
// never block those behind it. A batch that is malformed as a whole (empty,
// too many findings, seqs not increasing, too large) is refused with
// InvalidArgument; overload with RESOURCE_EXHAUSTED and a retry delay.
func (s *Server) Ingest(ctx context.Context, dev store.Device, b *vigilv1.FindingBatch) (*vigilv1.Ack, error) {
	for _, f := range b.GetFindings() {
		if f != nil {
			// The collector, not the agent, is the authority on which group
			// a device is in.
			f.Group = dev.Group
			// An agent from before the typed ScreenMatch sends its
			// matches in Details keys: they are read once, here.
			store.UpgradeLegacyAlert(f)
		}
	}
	rejected, err := s.checkBatch(dev.DeviceID, b)
	if err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	commit := b.Findings
	var refused []*vigilv1.Rejected
	if len(rejected) > 0 {
		commit = make([]*vigilv1.Finding, len(b.Findings))
		for i, f := range b.Findings {
			reason, bad := rejected[i]
			if !bad {
				commit[i] = f
				continue
			}
			refused = append(refused, &vigilv1.Rejected{Seq: f.Seq, Reason: reason})
			commit[i] = rejectedRecord(dev, f, reason, s.cfg.Now())
			s.log.Debug("finding refused", "device", dev.DeviceID, "seq", f.Seq, "reason", reason)
		}
		s.log.Warn("findings refused as permanently invalid; recorded as finding-rejected, rest of the batch stored",
			"device", dev.DeviceID, "batch", b.BatchId, "refused", len(refused), "first_seq", refused[0].Seq, "first_reason", refused[0].Reason)
	}
	for _, f := range commit {
		// Nor may an agent speak for another device.
		f.DeviceId = dev.DeviceID
	}
	stored, dups, err := s.cfg.Findings.CommitFindings(ctx, commit)
	switch {
	case errors.Is(err, store.ErrOverloaded):
		return nil, resourceExhausted("collector is overloaded; retry later", s.cfg.RetryAfter)
	case errors.Is(err, store.ErrDiskFull):
		return nil, resourceExhausted("collector disk is full; keep findings and retry later", s.cfg.RetryAfter)
	case isClosedErr(err):
		return nil, errShuttingDown
	case err != nil:
		s.log.Error("commit findings", "device", dev.DeviceID, "err", err)
		return nil, status.Error(codes.Unavailable, "could not store findings; retry later")
	}
	return &vigilv1.Ack{BatchId: b.BatchId, Stored: int32(stored), Duplicates: int32(dups), Rejected: refused}, nil
}

// maxReason bounds a rejection reason sent back and recorded.
const maxReason = 512

// checkBatch returns an error for a batch malformed as a whole, else the
// reason for each finding (by index) that is refused on its own.
func (s *Server) checkBatch(device string, b *vigilv1.FindingBatch) (map[int]string, error) {
	if len(b.GetFindings()) == 0 {
		return nil, errors.New("empty finding batch")
	}
	if len(b.Findings) > s.cfg.MaxBatchFindings {
		return nil, fmt.Errorf("batch of %d findings exceeds the limit of %d", len(b.Findings), s.cfg.MaxBatchFindings)
	}
	var rejected map[int]string
	refuse := func(i int, err error) {
		if rejected == nil {
			rejected = map[int]string{}
		}
		rejected[i] = contract.Truncate(contract.ValidString(err.Error()), maxReason)
	}
	var prev uint64
	total := 0
	opts := contract.Options{Device: device, Now: s.cfg.Now()}
	for i, f := range b.Findings {
		// Without a usable seq a finding cannot be acknowledged or refused
		// by name: the batch is broken, not the finding.
		switch {
		case f == nil:
			return nil, fmt.Errorf("finding %d is empty", i)
		case f.Seq == 0:
			return nil, fmt.Errorf("finding %d: seq must be positive", i)
		case f.Seq <= prev:
			return nil, fmt.Errorf("finding %d: seq %d not above previous %d", i, f.Seq, prev)
		}
		prev = f.Seq
		n := proto.Size(f)
		total += n
		if err := contract.Validate(f, opts); err != nil {
			refuse(i, err)
			continue
		}
		if n > s.cfg.MaxBatchBytes {
			// Alone over this collector's batch limit: it could never be
			// sent in a batch that is accepted.
			refuse(i, fmt.Errorf("finding of %d bytes exceeds this collector's batch limit of %d", n, s.cfg.MaxBatchBytes))
		}
	}
	if total > s.cfg.MaxBatchBytes && len(b.Findings) > 1 {
		return nil, fmt.Errorf("batch of more than %d bytes exceeds the limit", s.cfg.MaxBatchBytes)
	}
	return rejected, nil
}

// rejectedRecord stands in for a refused finding under the same (device,
// seq): the device's history has no silent gap, a resend of the refused
// finding is a duplicate, and the alert queue shows that something of this
// rule, severity and category was seen and could not be kept.
func rejectedRecord(dev store.Device, f *vigilv1.Finding, reason string, now time.Time) *vigilv1.Finding {
	at := now
	if t := f.GetObservedAt(); t.CheckValid() == nil && !t.AsTime().Before(contract.MinObserved) && !t.AsTime().After(now.Add(contract.MaxClockAhead)) {
		at = t.AsTime()
	}
	sev := f.GetSeverity()
	if sev < vigilv1.Severity_SEVERITY_INFO || sev > vigilv1.Severity_SEVERITY_CRITICAL {
		sev = vigilv1.Severity_SEVERITY_MEDIUM
	}
	clean := func(s string, n int) string { return contract.Truncate(contract.ValidString(s), n) }
	details := map[string]any{
		"reason": reason, "rejected_seq": f.GetSeq(), "size_bytes": proto.Size(f),
		"original_check": clean(f.GetCheck(), contract.MaxShort), "original_rule_id": clean(f.GetRuleId(), contract.MaxShort),
		"original_rule_version": f.GetRuleVersion(), "original_message": clean(f.GetMessage(), 1024),
	}
	if n := len(f.GetEvidenceData()); n > 0 {
		details["evidence_not_kept"] = n
	}
	check := "pipeline"
	var match *vigilv1.ScreenMatch
	if store.IsAlert(f) {
		// A refused safeguarding alert stays an alert: the DSL's queue
		// shows who, when and which term, with why it could not be kept.
		m := f.GetScreenMatch()
		if c := clean(f.GetCheck(), contract.MaxShort); c != "" {
			check = c
		}
		match = &vigilv1.ScreenMatch{Term: clean(m.GetTerm(), 1024), Library: clean(m.GetLibrary(), 1024),
			Category: clean(m.GetCategory(), contract.MaxShort), Context: clean(m.GetContext(), 1024),
			WindowTitle: clean(m.GetWindowTitle(), 1024), Process: clean(m.GetProcess(), 1024),
			User: clean(m.GetUser(), contract.MaxShort), Source: clean(m.GetSource(), contract.MaxShort)}
	}
	r := &vigilv1.Finding{
		DeviceId: dev.DeviceID, Seq: f.GetSeq(), Group: dev.Group, ObservedAt: timestamppb.New(at),
		User: clean(f.GetUser(), contract.MaxShort), Check: check, RuleId: "finding-rejected", RuleVersion: 1,
		Severity: sev, Category: clean(f.GetCategory(), contract.MaxShort), RulesHash: clean(f.GetRulesHash(), contract.MaxShort),
		Message: clean(fmt.Sprintf("a finding of rule %s (check %s) was refused by the collector and not stored: %s",
			clean(f.GetRuleId(), 64), clean(f.GetCheck(), 64), reason), contract.MaxMessage),
		Details: contract.Details(details), ScreenMatch: match,
	}
	if r.Category == "" {
		r.Category = "agent"
	}
	contract.Sanitize(r)
	return r
}

func limit(s string, n int) string {
	if len(s) > n {
		return s[:n]
	}
	return s
}

// raiseIdentityConflict records a finding under the collector's own device
// ID, so the conflict reaches the same queue as every other finding.
func (s *Server) raiseIdentityConflict(ctx context.Context, dev store.Device, hello *vigilv1.Hello, why string) {
	s.log.Warn("device identity conflict", "device", dev.DeviceID, "reason", why, "hostname", hello.GetHostname())
	details, _ := structpb.NewStruct(map[string]any{
		"device_id": dev.DeviceID, "enrolled_hostname": dev.Hostname, "connecting_hostname": limit(hello.GetHostname(), 255),
		"reason": why,
	})
	f := &vigilv1.Finding{
		DeviceId: s.selfID, Seq: s.nextSelfSeq(), Group: dev.Group, ObservedAt: timestamppb.New(s.cfg.Now()),
		Check: "identity", RuleId: "identity-conflict", RuleVersion: 1, Severity: vigilv1.Severity_SEVERITY_HIGH,
		Category: "tamper", Message: fmt.Sprintf("device %s: %s; told to re-enroll", dev.DeviceID, why), Details: details,
	}
	if _, _, err := s.cfg.Store.CommitFindings(ctx, []*vigilv1.Finding{f}); err != nil {
		s.log.Error("record identity conflict", "err", err)
	}
}

// nextSelfSeq keeps the collector's own seq increasing across restarts
// without storing a counter: nanoseconds, bumped past the last one used.
func (s *Server) nextSelfSeq() uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	n := uint64(time.Now().UnixNano())
	if n <= s.selfSeq {
		n = s.selfSeq + 1
	}
	s.selfSeq = n
	return n
}
