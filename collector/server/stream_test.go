package server

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

const (
	testMaxFindings = 100
	testMaxBytes    = 64 << 10 // gRPC's receive limit is this plus 64 KiB
)

func TestStreamHelloWelcomeAckDedupe(t *testing.T) {
	e := newEnv(t, Config{MaxBatchFindings: testMaxFindings, MaxBatchBytes: testMaxBytes, HeartbeatInterval: 42e9}, store.Options{})
	d := e.enrollDevice(t)

	conn := d.conn(t)
	as, w, err := openStream(t, conn, d.hello("inst-1"))
	if err != nil {
		t.Fatal(err)
	}
	if w.DeviceId != d.id || w.Group != d.group || w.MaxBatchFindings != testMaxFindings ||
		w.MaxBatchBytes != testMaxBytes || w.HeartbeatSeconds != 42 {
		t.Errorf("welcome %v", w)
	}
	if !e.srv.Connected(d.id) {
		t.Error("device not reported connected after welcome")
	}

	batch := seqRange(1, 10)
	batch[0].DeviceId = d.id     // naming itself is fine
	batch[1].Group = "other-grp" // the collector decides the group
	want := make([]*vigilv1.Finding, len(batch))
	for i, f := range batch {
		want[i] = proto.Clone(f).(*vigilv1.Finding)
		want[i].DeviceId, want[i].Group = d.id, d.group
	}
	ack, err := as.sendBatch(7, batch)
	if err != nil {
		t.Fatal(err)
	}
	// Checked the moment the ack arrives: it must follow the commit.
	got := storedFindings(t, e.st, d.id)
	if ack.Stored != 10 || ack.Duplicates != 0 {
		t.Errorf("ack %v, want stored 10", ack)
	}
	if len(got) != 10 {
		t.Fatalf("store holds %d findings when the ack arrives, want 10", len(got))
	}
	for _, f := range want {
		if !proto.Equal(got[f.Seq], f) {
			t.Errorf("seq %d stored as %v, want %v", f.Seq, got[f.Seq], f)
		}
	}

	// Resending the same batch (the agent missed the ack) stores nothing.
	ack, err = as.sendBatch(8, seqRange(1, 10))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stored != 0 || ack.Duplicates != 10 {
		t.Errorf("resent batch acked %v, want stored 0 duplicates 10", ack)
	}
	// Overlapping batch: only the new ones are stored.
	ack, err = as.sendBatch(9, seqRange(8, 12))
	if err != nil {
		t.Fatal(err)
	}
	if ack.Stored != 2 || ack.Duplicates != 3 {
		t.Errorf("overlapping batch acked %v, want stored 2 duplicates 3", ack)
	}
	if n := len(storedFindings(t, e.st, d.id)); n != 12 {
		t.Errorf("store holds %d findings, want 12", n)
	}

	// Again for many batches: whenever an ack arrives, the batch is there.
	for i := uint64(0); i < 20; i++ {
		from := 100 + i*50
		if _, err := as.sendBatch(100+i, seqRange(from, from+49)); err != nil {
			t.Fatal(err)
		}
		got := storedFindings(t, e.st, d.id)
		for s := from; s < from+50; s++ {
			if got[s] == nil {
				t.Fatalf("batch %d acknowledged but seq %d is not in the store yet", 100+i, s)
			}
		}
	}

	// A heartbeat is not acknowledged, and the stream carries on.
	if err := as.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: &vigilv1.Heartbeat{AgentVersion: "t2", SpoolDepth: 5}}}); err != nil {
		t.Fatal(err)
	}
	if ack, err := as.sendBatch(10, seqRange(13, 13)); err != nil || ack.Stored != 1 {
		t.Fatalf("after heartbeat: ack %v err %v", ack, err)
	}
	if dev, _ := e.st.GetDevice(d.id); dev.SpoolDepth != 5 || dev.AgentVersion != "t2" || !dev.Connected {
		t.Errorf("device after heartbeat: %+v", dev)
	}
}

// TestStreamMalformedInput: each input malformed as a whole ends its own
// stream with InvalidArgument (ResourceExhausted for gRPC's size limit),
// stores nothing, and a good client connected all along keeps working.
// Findings that are bad on their own are TestStreamRejectsPerFinding's.
func TestStreamMalformedInput(t *testing.T) {
	e := newEnv(t, Config{MaxBatchFindings: testMaxFindings, MaxBatchBytes: testMaxBytes}, store.Options{})
	good := e.enrollDevice(t)
	bad := e.enrollDevice(t)

	goodStream := good.mustStream(t, "good")
	goodSeq := uint64(0)
	goodBatch := func(t *testing.T) {
		t.Helper()
		goodSeq++
		ack, err := goodStream.sendBatch(goodSeq, seqRange(goodSeq, goodSeq))
		if err != nil || ack.Stored != 1 {
			t.Fatalf("good client: ack %v, err %v", ack, err)
		}
	}
	goodBatch(t)

	with := func(seq uint64, mod func(f *vigilv1.Finding)) []*vigilv1.Finding {
		f := mkFinding(seq)
		mod(f)
		return []*vigilv1.Finding{mkFinding(seq - 1), f}
	}
	bigDetails := func(n int) *structpb.Struct {
		s, _ := structpb.NewStruct(map[string]any{"blob": strings.Repeat("x", n)})
		return s
	}
	cases := []struct {
		name     string
		msg      *vigilv1.AgentMessage
		code     codes.Code
		contains string
	}{
		{"seq 0", batchMsg(1, []*vigilv1.Finding{mkFinding(0)}), codes.InvalidArgument, "seq must be positive"},
		{"repeated seq", batchMsg(1, []*vigilv1.Finding{mkFinding(105), mkFinding(105)}), codes.InvalidArgument, "not above"},
		{"decreasing seq", batchMsg(1, []*vigilv1.Finding{mkFinding(105), mkFinding(106), mkFinding(104)}), codes.InvalidArgument, "not above"},
		{"too many findings", batchMsg(1, seqRange(101, 101+testMaxFindings)), codes.InvalidArgument, "exceeds the limit"},
		{"empty batch", batchMsg(1, nil), codes.InvalidArgument, "empty"},
		// Over MaxBatchBytes but under gRPC's receive limit: the collector's
		// own check.
		{"batch over MaxBatchBytes", batchMsg(1, with(101, func(f *vigilv1.Finding) { f.Details = bigDetails(testMaxBytes + 8<<10) })), codes.InvalidArgument, "bytes exceeds"},
		// Over gRPC's MaxRecvMsgSize: refused before it is even decoded.
		{"message over MaxRecvMsgSize", batchMsg(1, with(101, func(f *vigilv1.Finding) { f.Details = bigDetails(testMaxBytes + 100<<10) })), codes.ResourceExhausted, ""},
		{"hello twice", &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: bad.hello("bad")}}, codes.InvalidArgument, "hello"},
		{"empty message", &vigilv1.AgentMessage{}, codes.InvalidArgument, "empty"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			as := bad.mustStream(t, "bad")
			if err := as.send(c.msg); err != nil {
				// The server may end the stream before the client is done
				// sending (the size limit); the status comes from Recv.
				t.Logf("send: %v", err)
			}
			wantCode(t, c.name, as.expectEnd(), c.code, c.contains)
			if n := len(storedFindings(t, e.st, bad.id)); n != 0 {
				t.Errorf("%d findings stored from malformed input", n)
			}
			goodBatch(t)
		})
	}

	t.Run("batch before hello", func(t *testing.T) {
		as, _, err := openStreamFirst(t, bad, batchMsg(1, seqRange(1, 1)))
		if err == nil {
			err = as.expectEnd()
		}
		wantCode(t, "batch before hello", err, codes.InvalidArgument, "hello")
		goodBatch(t)
	})

	// After all that the bad device, now behaving, is served normally.
	as := bad.mustStream(t, "bad")
	if ack, err := as.sendBatch(1, seqRange(1, 3)); err != nil || ack.Stored != 3 {
		t.Fatalf("bad device behaving: ack %v, err %v", ack, err)
	}
	goodBatch(t)
	if n := len(storedFindings(t, e.st, good.id)); n != int(goodSeq) {
		t.Errorf("good device has %d findings, want %d", n, goodSeq)
	}
}

// openStreamFirst opens a stream whose first message is m (not hello).
func openStreamFirst(t *testing.T, d *device, m *vigilv1.AgentMessage) (*agentStream, *vigilv1.Welcome, error) {
	t.Helper()
	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	s, err := vigilv1.NewCollectorClient(d.conn(t)).Stream(ctx)
	if err != nil {
		cancel()
		return nil, nil, err
	}
	as := &agentStream{s: s, cancel: cancel}
	if err := as.send(m); err != nil {
		_, err = as.recv()
		return nil, nil, err
	}
	return as, nil, nil
}

// TestLargeFindingOnDisk: a finding just under the per-finding cap (200 KiB
// of details) is stored intact on disk; one over it is refused by name in
// the ack, and the stream goes on.
func TestLargeFindingOnDisk(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	d := e.enrollDevice(t)
	as := d.mustStream(t, "large")
	f := mkFinding(1)
	f.Details, _ = structpb.NewStruct(map[string]any{"blob": strings.Repeat("A", 200<<10)})
	ack, err := as.sendBatch(1, []*vigilv1.Finding{f, mkFinding(2)})
	if err != nil || ack.Stored != 2 {
		t.Fatalf("ack %v, err %v", ack, err)
	}
	got := storedFindings(t, e.st, d.id)
	if len(got[1].GetDetails().GetFields()["blob"].GetStringValue()) != 200<<10 {
		t.Error("large finding not stored intact")
	}
	big := mkFinding(3)
	big.Details, _ = structpb.NewStruct(map[string]any{"blob": strings.Repeat("A", 300<<10)})
	ack, err = as.sendBatch(2, []*vigilv1.Finding{big})
	if err != nil || len(ack.Rejected) != 1 || ack.Rejected[0].Seq != 3 || !strings.Contains(ack.Rejected[0].Reason, "the limit is 262144") {
		t.Fatalf("oversized finding: ack %v, err %v", ack, err)
	}
	if ack, err := as.sendBatch(3, seqRange(4, 4)); err != nil || ack.Stored != 1 {
		t.Fatalf("after the refusal: ack %v, err %v", ack, err)
	}
}

// TestHelloFieldsBounded: what a hello puts in the device record is held to
// the same bounds as enrollment (hostname) and heartbeats (version, hash).
func TestHelloFieldsBounded(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	d := e.enrollDevice(t)
	h := d.hello("big")
	h.AgentVersion = strings.Repeat("v", 100<<10)
	h.RulesHash = strings.Repeat("h", 100<<10)
	h.Hostname = strings.Repeat("n", 100<<10)
	if _, _, err := openStream(t, d.conn(t), h); err != nil {
		t.Fatal(err)
	}
	dev, _ := e.st.GetDevice(d.id)
	if len(dev.AgentVersion) > 64 || len(dev.RulesHash) > 80 || len(dev.Hostname) > 255 {
		t.Errorf("hello stored unbounded fields: agent_version %d, rules_hash %d, hostname %d bytes",
			len(dev.AgentVersion), len(dev.RulesHash), len(dev.Hostname))
	}
}

// TestEvidenceTravelsWithFinding: evidence bytes announced by a matching
// EvidenceRef are stored apart; a blob whose hash or reference does not
// match is refused by name in the ack, its evidence is not stored, and the
// stream goes on.
func TestEvidenceTravelsWithFinding(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	d := e.enrollDevice(t)
	as := d.mustStream(t, "evidence")
	blob := []byte("age-encrypted-bytes")
	sum := sha256.Sum256(blob)
	f := mkFinding(1)
	f.Evidence = []*vigilv1.EvidenceRef{{Id: "0123abcd", MediaType: "image/png", Sha256: hex.EncodeToString(sum[:]), Size: int64(len(blob))}}
	f.EvidenceData = []*vigilv1.EvidenceBlob{{Id: "0123abcd", Data: blob}}
	if ack, err := as.sendBatch(1, []*vigilv1.Finding{f}); err != nil || ack.Stored != 1 {
		t.Fatalf("ack %v err %v", ack, err)
	}
	if got, err := e.st.Evidence(d.id, "0123abcd", nil); err != nil || !bytes.Equal(got, blob) {
		t.Fatalf("stored evidence %q %v", got, err)
	}
	seq := uint64(1)
	for name, mutate := range map[string]func(*vigilv1.Finding){
		"hash mismatch": func(f *vigilv1.Finding) { f.EvidenceData[0].Data = []byte("tampered-bytes-xxx!") },
		"no reference":  func(f *vigilv1.Finding) { f.EvidenceData[0].Id = "other" },
		"bad ref id":    func(f *vigilv1.Finding) { f.Evidence[0].Id = "../x" },
	} {
		seq++
		g := proto.Clone(f).(*vigilv1.Finding)
		g.Seq = seq
		g.Evidence[0].Id, g.EvidenceData[0].Id = "ev-"+strings.ReplaceAll(name, " ", "-"), "ev-"+strings.ReplaceAll(name, " ", "-")
		mutate(g)
		ack, err := as.sendBatch(seq, []*vigilv1.Finding{g})
		if err != nil || len(ack.Rejected) != 1 || ack.Rejected[0].Seq != seq {
			t.Errorf("%s: ack %v, err %v; want the finding refused in the ack", name, ack, err)
		}
	}
	got := storedFindings(t, e.st, d.id)
	for s := uint64(2); s <= seq; s++ {
		if got[s].GetRuleId() != "finding-rejected" || len(got[s].GetEvidence()) != 0 {
			t.Errorf("seq %d stored as %v, want a finding-rejected record without evidence", s, got[s])
		}
	}
	for _, id := range []string{"ev-hash-mismatch", "ev-no-reference", "other", "../x"} {
		if _, err := e.st.Evidence(d.id, id, nil); err == nil {
			t.Errorf("evidence %q of a refused finding stored", id)
		}
	}
}
