package uplink

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/status"
	"google.golang.org/grpc/test/bufconn"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/agent/spool"
	"github.com/vigil-safeguarding/vigil/internal/backoff"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// collector is a scripted Collector service on a real gRPC server: it
// answers Hello with its Welcome, hands every agent message to the test and
// sends what the test gives it. One stream at a time.
type collector struct {
	vigilv1.UnimplementedCollectorServer
	welcome *vigilv1.Welcome
	in      chan *vigilv1.AgentMessage
	out     chan *vigilv1.CollectorMessage
}

func (c *collector) Stream(s grpc.BidiStreamingServer[vigilv1.AgentMessage, vigilv1.CollectorMessage]) error {
	hello, err := s.Recv()
	if err != nil {
		return err
	}
	if hello.GetHello() == nil {
		return status.Error(codes.InvalidArgument, "first message must be hello")
	}
	if err := s.Send(&vigilv1.CollectorMessage{Msg: &vigilv1.CollectorMessage_Welcome{Welcome: c.welcome}}); err != nil {
		return err
	}
	errc := make(chan error, 1)
	go func() {
		for {
			m, err := s.Recv()
			if err != nil {
				errc <- err
				return
			}
			c.in <- m
		}
	}()
	for {
		select {
		case m := <-c.out:
			if err := s.Send(m); err != nil {
				return err
			}
		case err := <-errc:
			return err
		case <-s.Context().Done():
			return s.Context().Err()
		}
	}
}

// engine is the rules engine seen by the uplink (its three methods).
type engine struct{}

func (engine) RulesHash() string                                       { return "h" }
func (engine) ApplyBundle(context.Context, *vigilv1.RulesBundle) error { return nil }
func (engine) TriggerTest(context.Context, int, string, string) (uint64, uint64, string, error) {
	return 0, 0, "", errors.New("no selftest rule")
}

func startCollector(t *testing.T, c *collector) vigilv1.CollectorClient {
	t.Helper()
	lis := bufconn.Listen(1 << 20)
	gs := grpc.NewServer()
	vigilv1.RegisterCollectorServer(gs, c)
	go gs.Serve(lis)
	t.Cleanup(gs.Stop)
	conn, err := grpc.NewClient("passthrough:///bufconn",
		grpc.WithContextDialer(func(ctx context.Context, _ string) (net.Conn, error) { return lis.DialContext(ctx) }),
		grpc.WithTransportCredentials(insecure.NewCredentials()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	return vigilv1.NewCollectorClient(conn)
}

func spoolWith(t *testing.T, n int) *spool.Spool {
	t.Helper()
	sp, err := spool.Open(filepath.Join(t.TempDir(), "spool.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	for i := range n {
		b, _ := proto.Marshal(&vigilv1.Finding{RuleId: "r", Message: "finding", Check: "selftest", Details: nil, Group: string(rune('a' + i))})
		if _, _, err := sp.Append([]spool.Item{{Severity: 2, Payload: b}}); err != nil {
			t.Fatal(err)
		}
	}
	return sp
}

// nextBatch returns the next findings batch the collector receives,
// skipping heartbeats.
func nextBatch(t *testing.T, c *collector) *vigilv1.FindingBatch {
	t.Helper()
	timeout := time.After(30 * time.Second)
	for {
		select {
		case m := <-c.in:
			if b := m.GetFindings(); b != nil {
				return b
			}
		case <-timeout:
			t.Fatal("no findings batch within 30s")
			return nil
		}
	}
}

func ack(c *collector, b *vigilv1.FindingBatch, rejected ...*vigilv1.Rejected) {
	c.out <- &vigilv1.CollectorMessage{Msg: &vigilv1.CollectorMessage_Ack{Ack: &vigilv1.Ack{BatchId: b.BatchId, Stored: int32(len(b.Findings)), Rejected: rejected}}}
}

func waitSpool(t *testing.T, sp *spool.Spool, what string, ok func(spool.Stats) bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !ok(sp.Stats()) {
		if time.Now().After(deadline) {
			t.Fatalf("%s: spool %+v after 30s", what, sp.Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// TestAckWindow: at most Window batches await their ack; an ack frees a
// slot and deletes exactly that batch's findings from the spool; an ack for
// an unknown batch deletes nothing; findings the collector rejects are set
// aside, counted, not resent.
func TestAckWindow(t *testing.T) {
	c := &collector{welcome: &vigilv1.Welcome{DeviceId: "dev", MaxBatchFindings: 1, MaxBatchBytes: 1 << 20, HeartbeatSeconds: 3600},
		in: make(chan *vigilv1.AgentMessage, 64), out: make(chan *vigilv1.CollectorMessage, 64)}
	client := startCollector(t, c)
	sp := spoolWith(t, 4)
	u := New(Config{Spool: sp, Engine: engine{}, Window: 2, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := u.session(ctx, client); done <- err }()
	defer func() { cancel(); <-done }()

	b1, b2 := nextBatch(t, c), nextBatch(t, c)
	if len(b1.Findings) != 1 || len(b2.Findings) != 1 || b1.Findings[0].Seq >= b2.Findings[0].Seq {
		t.Fatalf("batches out of order: %v %v", b1, b2)
	}
	// The window is full: a third batch must wait for an ack. (A negative
	// check needs a wait; without the window the batch follows at once.)
	select {
	case m := <-c.in:
		if m.GetFindings() != nil {
			t.Fatalf("a third batch was sent with two unacknowledged: %v", m)
		}
	case <-time.After(300 * time.Millisecond):
	}
	if sp.Stats().Count != 4 {
		t.Fatalf("findings left the spool before their ack: %+v", sp.Stats())
	}
	// An ack the agent never asked for deletes nothing.
	c.out <- &vigilv1.CollectorMessage{Msg: &vigilv1.CollectorMessage_Ack{Ack: &vigilv1.Ack{BatchId: 999}}}
	ack(c, b2)
	waitSpool(t, sp, "batch 2 deleted", func(s spool.Stats) bool { return s.Count == 3 })
	b3 := nextBatch(t, c)
	recs, err := sp.ReadAfter(0, 10, 1<<20)
	if err != nil {
		t.Fatal(err)
	}
	for _, r := range recs {
		if r.Seq == b2.Findings[0].Seq {
			t.Errorf("acknowledged finding %d still spooled", r.Seq)
		}
	}
	if recs[0].Seq != b1.Findings[0].Seq {
		t.Errorf("unacknowledged batch 1 was deleted")
	}
	// Batch 3 is refused as permanently invalid: set aside and counted.
	ack(c, b3, &vigilv1.Rejected{Seq: b3.Findings[0].Seq, Reason: "bad"})
	waitSpool(t, sp, "rejected finding set aside", func(s spool.Stats) bool { return s.Count == 2 && s.RejectedTotal == 1 })
	b4 := nextBatch(t, c)
	ack(c, b1)
	ack(c, b4)
	waitSpool(t, sp, "all acknowledged", func(s spool.Stats) bool { return s.Count == 0 })
	if got := u.Status().AckedTotal; got != 4 {
		t.Errorf("acked_total %d, want 4 (every finding of an acknowledged batch)", got)
	}
}

// TestReconnectResendsUnacknowledged: findings sent but not acknowledged
// when a stream ends are sent again, first, on the next stream.
func TestReconnectResendsUnacknowledged(t *testing.T) {
	c := &collector{welcome: &vigilv1.Welcome{DeviceId: "dev", MaxBatchFindings: 10, MaxBatchBytes: 1 << 20, HeartbeatSeconds: 3600},
		in: make(chan *vigilv1.AgentMessage, 64), out: make(chan *vigilv1.CollectorMessage, 64)}
	client := startCollector(t, c)
	sp := spoolWith(t, 3)
	u := New(Config{Spool: sp, Engine: engine{}, Window: 2, Logger: slog.New(slog.DiscardHandler)})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := u.session(ctx, client); done <- err }()
	b := nextBatch(t, c)
	if len(b.Findings) != 3 {
		t.Fatalf("first batch %d findings", len(b.Findings))
	}
	cancel() // the stream breaks before the ack
	<-done
	ctx2, cancel2 := context.WithCancel(context.Background())
	defer cancel2()
	go func() { _, err := u.session(ctx2, client); done <- err }()
	again := nextBatch(t, c)
	if len(again.Findings) != 3 || again.Findings[0].Seq != b.Findings[0].Seq {
		t.Fatalf("after reconnect: %v, want the same 3 findings", again)
	}
	ack(c, again)
	waitSpool(t, sp, "acknowledged after reconnect", func(s spool.Stats) bool { return s.Count == 0 })
	cancel2()
	<-done
}

// TestWaitAfter: the reconnect wait grows with full jitter up to the cap;
// a collector's RetryInfo (at capacity) is a floor; an identity the
// collector refuses waits IdentityRetry and is shown as needing
// re-enrolment; a session that got acks resets the backoff (Run).
func TestWaitAfter(t *testing.T) {
	u := New(Config{BackoffBase: 100 * time.Millisecond, BackoffMax: 2 * time.Second, IdentityRetry: time.Hour, Logger: slog.New(slog.DiscardHandler)})
	bo := backoff.New(u.cfg.BackoffBase, u.cfg.BackoffMax)
	plain := errors.New("connection refused")
	for i := range 12 {
		ceil := min(u.cfg.BackoffBase<<i, u.cfg.BackoffMax)
		if w := u.waitAfter(plain, bo); w <= 0 || w > ceil+time.Millisecond {
			t.Fatalf("attempt %d: wait %v outside (0, %v]", i, w, ceil)
		}
	}
	if bo.Attempt() != 12 {
		t.Fatalf("attempts %d", bo.Attempt())
	}
	bo.Reset()
	st, _ := status.New(codes.ResourceExhausted, "at capacity").WithDetails(backoff.RetryInfo(5 * time.Second))
	for range 20 {
		if w := u.waitAfter(st.Err(), bo); w < 5*time.Second || w > 10*time.Second+time.Millisecond {
			t.Fatalf("at capacity: wait %v, want within [5s, 10s]", w)
		}
	}
	if u.Status().NeedsReenroll {
		t.Fatal("capacity marked as needing re-enrolment")
	}
	for _, code := range []codes.Code{codes.FailedPrecondition, codes.AlreadyExists, codes.PermissionDenied, codes.Unauthenticated} {
		u.setStatus(func(s *Status) { s.NeedsReenroll = false })
		if w := u.waitAfter(status.Error(code, "identity"), bo); w < time.Hour || w > time.Hour+2*time.Second+time.Millisecond {
			t.Errorf("%v: wait %v, want IdentityRetry plus jitter", code, w)
		}
		if !u.Status().NeedsReenroll {
			t.Errorf("%v: not marked as needing re-enrolment", code)
		}
	}
}

// TestHeartbeatCarriesLocalError: findings the engine could not record are
// reported in the heartbeat's last_error when the spool has no error of
// its own, so the collector's device list shows them.
func TestHeartbeatCarriesLocalError(t *testing.T) {
	c := &collector{welcome: &vigilv1.Welcome{DeviceId: "dev", MaxBatchFindings: 10, MaxBatchBytes: 1 << 20, HeartbeatSeconds: 3600},
		in: make(chan *vigilv1.AgentMessage, 64), out: make(chan *vigilv1.CollectorMessage, 64)}
	client := startCollector(t, c)
	u := New(Config{Spool: spoolWith(t, 0), Engine: engine{}, Logger: slog.New(slog.DiscardHandler),
		LastLocalError: func() string { return "2 findings not recorded: disk full" }})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { _, err := u.session(ctx, client); done <- err }()
	defer func() { cancel(); <-done }()
	select {
	case m := <-c.in:
		if hb := m.GetHeartbeat(); hb == nil || hb.LastError != "2 findings not recorded: disk full" {
			t.Fatalf("first message %v, want a heartbeat with the local error", m)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("no heartbeat within 30s")
	}
}
