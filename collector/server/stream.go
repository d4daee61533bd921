package server

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"sync"
	"time"
	"unicode/utf8"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// session is one connected agent's stream.
type session struct {
	device     string
	group      string
	instance   string
	stream     vigilv1.Collector_StreamServer
	sendMu     sync.Mutex
	cancel     context.CancelFunc
	lastMu     sync.Mutex
	lastHeard  time.Time
	rulesHash  string
	pushedHash string
}

func (ss *session) send(m *vigilv1.CollectorMessage) error {
	ss.sendMu.Lock()
	defer ss.sendMu.Unlock()
	return ss.stream.Send(m)
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
	b := src.Bundle(ss.group)
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
func (s *Server) Stream(stream vigilv1.Collector_StreamServer) error {
	ctx := stream.Context()
	deviceID, err := peerDevice(ctx)
	if err != nil {
		return err
	}
	dev, ok := s.cfg.Store.GetDevice(deviceID)
	if !ok || dev.Revoked {
		return status.Error(codes.PermissionDenied, "device is not enrolled with this collector (or was revoked): re-enroll")
	}

	first, err := recvWithTimeout(ctx, stream, 15*time.Second)
	if err != nil {
		return err
	}
	hello := first.GetHello()
	if hello == nil {
		return status.Error(codes.InvalidArgument, "the first message on a stream must be hello")
	}
	if dev.HostFingerprint != "" && hello.GetHostFingerprint() != dev.HostFingerprint {
		s.raiseIdentityConflict(ctx, dev, hello, "host fingerprint differs from the one enrolled")
		return status.Error(codes.FailedPrecondition, "this device identity was enrolled on another host (cloned image?): re-enroll this device with a new token")
	}

	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	ss := &session{device: deviceID, group: dev.Group, instance: hello.GetInstanceId(), stream: stream, cancel: cancel, lastHeard: s.cfg.Now()}
	if err := s.register(ss, dev, hello); err != nil {
		return err
	}
	defer s.unregister(ss)

	s.cfg.Store.UpdateDevice(deviceID, func(d *store.Device) {
		d.LastSeen, d.Connected = s.cfg.Now(), true
		// Same bounds as enrollment and heartbeats: the record is kept in
		// memory and rewritten on every flush.
		d.AgentVersion, d.RulesHash = limit(hello.GetAgentVersion(), 64), limit(hello.GetRulesHash(), 80)
		if hello.GetHostname() != "" {
			d.Hostname = limit(hello.GetHostname(), 255)
		}
	})
	welcome := &vigilv1.Welcome{DeviceId: deviceID, Group: dev.Group,
		MaxBatchFindings: int32(s.cfg.MaxBatchFindings), MaxBatchBytes: int32(s.cfg.MaxBatchBytes),
		HeartbeatSeconds: int32(s.cfg.HeartbeatInterval / time.Second), EvidenceRecipient: s.cfg.EvidenceRecipient}
	if err := ss.send(&vigilv1.CollectorMessage{Msg: &vigilv1.CollectorMessage_Welcome{Welcome: welcome}}); err != nil {
		return err
	}
	ss.pushRulesIfStale(s.cfg.Rules, hello.GetRulesHash())

	// Recv runs apart so that shutdown is noticed between messages while a
	// commit in progress still completes and is acknowledged.
	msgs := make(chan *vigilv1.AgentMessage)
	recvErr := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvErr <- err
				return
			}
			select {
			case msgs <- m:
			case <-ctx.Done():
				return
			}
		}
	}()
	for {
		select {
		case <-s.shutdown:
			return errShuttingDown
		case <-ctx.Done():
			return status.FromContextError(ctx.Err()).Err()
		case err := <-recvErr:
			if errors.Is(err, context.Canceled) {
				return nil
			}
			return err
		case m := <-msgs:
			ss.heard(s.cfg.Now())
			if err := s.handle(ctx, ss, dev, m); err != nil {
				return err
			}
		}
	}
}

func recvWithTimeout(ctx context.Context, stream vigilv1.Collector_StreamServer, d time.Duration) (*vigilv1.AgentMessage, error) {
	type res struct {
		m   *vigilv1.AgentMessage
		err error
	}
	ch := make(chan res, 1)
	go func() { m, err := stream.Recv(); ch <- res{m, err} }()
	select {
	case r := <-ch:
		return r.m, r.err
	case <-time.After(d):
		return nil, status.Error(codes.DeadlineExceeded, "no hello within 15s")
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

// register admits a session. A second live stream for one identity from a
// different agent process is a copied identity (a cloned image): refuse the
// newcomer and record it, unless the old stream has gone quiet for three
// heartbeats, in which case it is a dead connection being replaced.
func (s *Server) register(ss *session, dev store.Device, hello *vigilv1.Hello) error {
	s.mu.Lock()
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
	if s.sessions[ss.device] == ss {
		delete(s.sessions, ss.device)
		s.cfg.Store.UpdateDevice(ss.device, func(d *store.Device) { d.Connected = false })
	}
	s.mu.Unlock()
}

func (s *Server) handle(ctx context.Context, ss *session, dev store.Device, m *vigilv1.AgentMessage) error {
	switch msg := m.Msg.(type) {
	case *vigilv1.AgentMessage_Findings:
		ack, err := s.Ingest(ctx, dev, msg.Findings)
		if err != nil {
			return err
		}
		return ss.send(&vigilv1.CollectorMessage{Msg: &vigilv1.CollectorMessage_Ack{Ack: ack}})
	case *vigilv1.AgentMessage_Heartbeat:
		hb := msg.Heartbeat
		s.cfg.Store.UpdateDevice(ss.device, func(d *store.Device) {
			d.LastSeen = s.cfg.Now()
			d.AgentVersion, d.RulesHash = limit(hb.GetAgentVersion(), 64), limit(hb.GetRulesHash(), 80)
			d.SpoolDepth, d.SpoolBytes, d.DroppedTotal = hb.GetSpoolDepth(), hb.GetSpoolBytes(), hb.GetDroppedTotal()
			d.CPUPercent, d.RSSBytes = hb.GetCpuPercent(), hb.GetRssBytes()
			d.RejectedTotal, d.SpoolWriteFailures = hb.GetRejectedTotal(), hb.GetSpoolWriteFailures()
			d.LastError = limit(hb.GetLastError(), maxLastError)
		})
		ss.pushRulesIfStale(s.cfg.Rules, hb.GetRulesHash())
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
	case *vigilv1.AgentMessage_Hello:
		return status.Error(codes.InvalidArgument, "hello sent twice")
	default:
		return status.Error(codes.InvalidArgument, "empty or unknown agent message")
	}
}

// Ingest validates a batch from dev and commits it durably, returning the
// ack to send. Invalid input is refused with InvalidArgument naming the
// offending finding; overload with RESOURCE_EXHAUSTED and a retry delay.
func (s *Server) Ingest(ctx context.Context, dev store.Device, b *vigilv1.FindingBatch) (*vigilv1.Ack, error) {
	if err := s.validateBatch(dev.DeviceID, b); err != nil {
		return nil, status.Error(codes.InvalidArgument, err.Error())
	}
	for _, f := range b.Findings {
		// The collector, not the agent, is the authority on who and which
		// group sent it.
		f.DeviceId, f.Group = dev.DeviceID, dev.Group
	}
	stored, dups, err := s.cfg.Store.CommitFindings(ctx, b.Findings)
	switch {
	case errors.Is(err, store.ErrOverloaded):
		return nil, resourceExhausted("collector is overloaded; retry later", s.cfg.RetryAfter)
	case isClosedErr(err):
		return nil, errShuttingDown
	case err != nil:
		s.log.Error("commit findings", "device", dev.DeviceID, "err", err)
		return nil, status.Error(codes.Unavailable, "could not store findings; retry later")
	}
	return &vigilv1.Ack{BatchId: b.BatchId, Stored: int32(stored), Duplicates: int32(dups)}, nil
}

// Field limits: generous for real findings, small enough that one agent
// cannot make the collector hold much.
const (
	maxShort        = 128
	maxMessage      = 4096
	maxEvidence     = 16
	maxFindingBytes = 256 << 10
)

// Observation times outside this range are refused: the time index stores
// Unix nanoseconds, and a device clock decades off is an error, not data.
var minObserved = time.Date(2000, 1, 1, 0, 0, 0, 0, time.UTC)

const maxClockAhead = 366 * 24 * time.Hour

func (s *Server) validateBatch(device string, b *vigilv1.FindingBatch) error {
	if len(b.GetFindings()) == 0 {
		return errors.New("empty finding batch")
	}
	if len(b.Findings) > s.cfg.MaxBatchFindings {
		return fmt.Errorf("batch of %d findings exceeds the limit of %d", len(b.Findings), s.cfg.MaxBatchFindings)
	}
	var prev uint64
	total := 0
	now := s.cfg.Now()
	for i, f := range b.Findings {
		if err := validateFinding(device, f, now); err != nil {
			return fmt.Errorf("finding %d (seq %d): %w", i, f.GetSeq(), err)
		}
		n := proto.Size(f)
		if n > maxFindingBytes {
			return fmt.Errorf("finding %d (seq %d) is %d bytes, the limit is %d (evidence travels apart)", i, f.Seq, n, maxFindingBytes)
		}
		if total += n; total > s.cfg.MaxBatchBytes {
			return fmt.Errorf("batch of more than %d bytes exceeds the limit", s.cfg.MaxBatchBytes)
		}
		if f.Seq <= prev {
			return fmt.Errorf("finding %d: seq %d not above previous %d", i, f.Seq, prev)
		}
		prev = f.Seq
	}
	return nil
}

func validateFinding(device string, f *vigilv1.Finding, now time.Time) error {
	switch {
	case f == nil:
		return errors.New("nil finding")
	case f.DeviceId != "" && f.DeviceId != device:
		return fmt.Errorf("device_id %q is not the sender", limit(f.DeviceId, 40))
	case f.Seq == 0:
		return errors.New("seq must be positive")
	case f.Severity < vigilv1.Severity_SEVERITY_INFO || f.Severity > vigilv1.Severity_SEVERITY_CRITICAL:
		return fmt.Errorf("severity %d out of range", f.Severity)
	case f.ObservedAt == nil || f.ObservedAt.CheckValid() != nil:
		return errors.New("observed_at missing or invalid")
	case f.ObservedAt.AsTime().Before(minObserved) || f.ObservedAt.AsTime().After(now.Add(maxClockAhead)):
		return fmt.Errorf("observed_at %s is outside 2000-01-01 .. a year from now", f.ObservedAt.AsTime().Format(time.RFC3339))
	case len(f.Evidence) > maxEvidence:
		return fmt.Errorf("%d evidence references, at most %d", len(f.Evidence), maxEvidence)
	case len(f.Message) > maxMessage:
		return fmt.Errorf("message longer than %d bytes", maxMessage)
	case !utf8.ValidString(f.Message):
		return errors.New("message is not valid UTF-8")
	}
	for name, v := range map[string]string{"check": f.Check, "rule_id": f.RuleId, "category": f.Category, "user": f.User, "status": f.Status, "rules_hash": f.RulesHash} {
		if len(v) > maxShort {
			return fmt.Errorf("%s longer than %d bytes", name, maxShort)
		}
		if !utf8.ValidString(v) {
			return fmt.Errorf("%s is not valid UTF-8", name)
		}
	}
	if f.Check == "" {
		return errors.New("check is required")
	}
	return validateEvidence(f)
}

// validateEvidence: every blob must be announced by an EvidenceRef with
// its SHA-256 and size, so what is stored is what the finding points at.
func validateEvidence(f *vigilv1.Finding) error {
	refs := make(map[string]*vigilv1.EvidenceRef, len(f.Evidence))
	for _, r := range f.Evidence {
		if !validEvidenceID(r.GetId()) || len(r.GetMediaType()) > maxShort || len(r.GetSha256()) != 64 {
			return fmt.Errorf("evidence ref %q malformed", limit(r.GetId(), 40))
		}
		refs[r.Id] = r
	}
	for _, b := range f.EvidenceData {
		r, ok := refs[b.GetId()]
		if !ok {
			return fmt.Errorf("evidence blob %q has no reference", limit(b.GetId(), 40))
		}
		sum := sha256.Sum256(b.Data)
		if hex.EncodeToString(sum[:]) != r.Sha256 || int64(len(b.Data)) != r.Size {
			return fmt.Errorf("evidence blob %q does not match its reference (sha256/size)", b.Id)
		}
	}
	return nil
}

func validEvidenceID(id string) bool {
	if id == "" || len(id) > 64 {
		return false
	}
	for _, c := range id {
		if !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return false
		}
	}
	return true
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
