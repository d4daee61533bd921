package server

import (
	"bytes"
	"context"
	"fmt"
	"strings"
	"sync/atomic"
	"testing"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/encoding/protowire"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// fuzzMaxBytes is the fuzzed server's MaxBatchBytes, below the 4 MiB
// default because inputs of megabytes make the fuzzer crawl (every mutation
// and minimisation copies and decodes them); the validation code is the
// same for any limit.
const fuzzMaxBytes = 64 << 10

// fuzzSeeds are the f.Add seeds; the small ones are also committed under
// testdata/fuzz/FuzzIngest.
type fuzzSeed struct {
	name string
	data []byte
}

func fuzzSeeds() []fuzzSeed {
	m := func(fs ...*vigilv1.Finding) []byte {
		b, err := proto.Marshal(batchMsg(1, fs))
		if err != nil {
			panic(err)
		}
		return b
	}
	with := func(mod func(*vigilv1.Finding)) *vigilv1.Finding {
		f := mkFinding(2)
		mod(f)
		return f
	}
	huge, _ := structpb.NewStruct(map[string]any{"blob": strings.Repeat("A", fuzzMaxBytes+32<<10)})
	large, _ := structpb.NewStruct(map[string]any{"blob": strings.Repeat("A", fuzzMaxBytes-2<<10)})
	hello, _ := proto.Marshal(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: &vigilv1.Hello{InstanceId: "x"}}})
	return []fuzzSeed{
		{"valid", m(seqRange(1, 3)...)},
		{"seq0", m(mkFinding(0))},
		{"nil_observed_at", m(mkFinding(1), with(func(f *vigilv1.Finding) { f.ObservedAt = nil }))},
		{"huge", m(mkFinding(1), with(func(f *vigilv1.Finding) { f.Details = huge }))},
		{"large_finding", m(mkFinding(1), with(func(f *vigilv1.Finding) { f.Details = large }))},
		{"invalid_utf8", invalidUTF8Check()},
		{"dup_seq", m(mkFinding(3), mkFinding(3))},
		{"far_timestamps", m(
			with(func(f *vigilv1.Finding) { f.Seq, f.ObservedAt = 1, &timestamppb.Timestamp{Seconds: -62135596800} }), // 0001-01-01
			with(func(f *vigilv1.Finding) { f.Seq, f.ObservedAt = 2, &timestamppb.Timestamp{Seconds: 253402300799} }), // 9999-12-31
		)},
		{"hello", hello},
	}
}

// invalidUTF8Check is a batch whose finding's check is not UTF-8. proto.Marshal
// refuses to write that, so it is built by hand.
func invalidUTF8Check() []byte {
	ts, _ := proto.Marshal(timestamppb.New(baseTime))
	var f []byte
	f = protowire.AppendTag(f, 2, protowire.VarintType) // seq
	f = protowire.AppendVarint(f, 1)
	f = protowire.AppendTag(f, 4, protowire.BytesType) // observed_at
	f = protowire.AppendBytes(f, ts)
	f = protowire.AppendTag(f, 6, protowire.BytesType) // check
	f = protowire.AppendBytes(f, []byte("web\xff\xfefilter"))
	f = protowire.AppendTag(f, 9, protowire.VarintType) // severity
	f = protowire.AppendVarint(f, 3)
	var b []byte
	b = protowire.AppendTag(b, 1, protowire.VarintType) // batch_id
	b = protowire.AppendVarint(b, 1)
	b = protowire.AppendTag(b, 2, protowire.BytesType) // findings
	b = protowire.AppendBytes(b, f)
	var msg []byte
	msg = protowire.AppendTag(msg, 2, protowire.BytesType) // AgentMessage.findings
	return protowire.AppendBytes(msg, b)
}

// FuzzIngest feeds arbitrary agent messages to Server.Ingest. Invariants: no
// panic; an accepted batch is readable back exactly as acknowledged, each
// finding refused in the ack as a finding-rejected record under its seq; a
// refused batch is InvalidArgument (or ResourceExhausted) and stores
// nothing.
func FuzzIngest(f *testing.F) {
	for _, seed := range fuzzSeeds() {
		f.Add(seed.data)
	}
	// One in-memory store per fuzz process, not per input.
	st, err := store.Open("", store.Options{InMemory: true, Logger: quietLog})
	if err != nil {
		f.Fatal(err)
	}
	f.Cleanup(func() { st.Close() })
	s := New(Config{Store: st, Logger: quietLog, MaxBatchBytes: fuzzMaxBytes})
	var n atomic.Uint64
	ctx := context.Background()

	f.Fuzz(func(t *testing.T, data []byte) {
		var m vigilv1.AgentMessage
		if err := proto.Unmarshal(data, &m); err != nil {
			t.Skip()
		}
		batch := m.GetFindings()
		if batch == nil {
			t.Skip()
		}
		// A device of its own per input, so every stored finding is this
		// input's and dedupe against earlier inputs cannot hide anything.
		dev := store.Device{DeviceID: fmt.Sprintf("fuzz%022d", n.Add(1)), Group: "fuzz"}
		ack, err := s.Ingest(ctx, dev, batch)
		got := storedFindings(t, st, dev.DeviceID)
		if err != nil {
			switch status.Code(err) {
			case codes.InvalidArgument, codes.ResourceExhausted:
			default:
				t.Fatalf("Ingest: %v; want InvalidArgument or ResourceExhausted", err)
			}
			if status.Code(err) == codes.InvalidArgument && len(got) != 0 {
				t.Fatalf("refused batch (%v) left %d findings stored", err, len(got))
			}
			return
		}
		if ack.BatchId != batch.BatchId || int(ack.Stored) != len(batch.Findings) || ack.Duplicates != 0 {
			t.Fatalf("ack %v for a new device's batch of %d", ack, len(batch.Findings))
		}
		if len(got) != len(batch.Findings) {
			t.Fatalf("%d findings stored, batch had %d", len(got), len(batch.Findings))
		}
		det := proto.MarshalOptions{Deterministic: true}
		refused := map[uint64]bool{}
		for _, r := range ack.Rejected {
			refused[r.Seq] = true
		}
		for _, want := range batch.Findings {
			g := got[want.Seq]
			if g == nil {
				t.Fatalf("seq %d acknowledged but not stored", want.Seq)
			}
			if refused[want.Seq] {
				// Refused on its own: a finding-rejected record holds its seq.
				if g.RuleId != "finding-rejected" || g.DeviceId != dev.DeviceID {
					t.Fatalf("refused seq %d stored as %v", want.Seq, g)
				}
				continue
			}
			if want.DeviceId != dev.DeviceID || want.Group != dev.Group {
				t.Fatalf("finding not stamped with the sender: %q/%q", want.DeviceId, want.Group)
			}
			// Bytes, not proto.Equal: a NaN in details is never Equal.
			wb, _ := det.Marshal(want)
			gb, _ := det.Marshal(g)
			if !bytes.Equal(wb, gb) {
				t.Fatalf("seq %d stored as %v, sent %v", want.Seq, g, want)
			}
		}
	})
}
