package server

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// screenshotFinding carries n bytes of (random, so incompressible) evidence
// with a matching reference, as an agent attaches a screenshot.
func screenshotFinding(seq uint64, n int) *vigilv1.Finding {
	f := mkFinding(seq)
	data := make([]byte, n)
	rand.Read(data)
	sum := sha256.Sum256(data)
	id := "shot-" + hex.EncodeToString(sum[:4])
	f.Evidence = []*vigilv1.EvidenceRef{{Id: id, MediaType: "image/png", Sha256: hex.EncodeToString(sum[:]), Size: int64(n)}}
	f.EvidenceData = []*vigilv1.EvidenceBlob{{Id: id, Data: data}}
	return f
}

// TestStreamRejectsPerFinding: a batch holding one finding that breaks the
// contract gets the others stored and that one listed in Ack.rejected with
// its reason; a finding-rejected record takes its seq so the loss is
// visible under the device; the stream goes on, and a resend of the batch
// is acknowledged the same way without storing anything twice. The old
// collector ended the stream with InvalidArgument for the whole batch, and
// the agent resent it for ever.
func TestStreamRejectsPerFinding(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	d := e.enrollDevice(t)
	other := e.enrollDevice(t)
	as := d.mustStream(t, "rejects")
	cases := []struct {
		name     string
		mod      func(f *vigilv1.Finding) *vigilv1.Finding
		contains string
	}{
		// The reported case: a 720x477 photo as PNG, about 1.4 MiB.
		{"1.4 MiB screenshot", func(f *vigilv1.Finding) *vigilv1.Finding { return screenshotFinding(f.Seq, 1400<<10) }, "evidence of more than 524288 bytes"},
		{"details over 256 KiB", func(f *vigilv1.Finding) *vigilv1.Finding {
			f.Details, _ = structpb.NewStruct(map[string]any{"blob": strings.Repeat("A", 300<<10)})
			return f
		}, "the limit is 262144"},
		{"severity 9", func(f *vigilv1.Finding) *vigilv1.Finding { f.Severity = 9; return f }, "severity"},
		{"severity unspecified", func(f *vigilv1.Finding) *vigilv1.Finding { f.Severity = 0; return f }, "severity"},
		{"another device's id", func(f *vigilv1.Finding) *vigilv1.Finding { f.DeviceId = other.id; return f }, "not the sender"},
		{"nil observed_at", func(f *vigilv1.Finding) *vigilv1.Finding { f.ObservedAt = nil; return f }, "observed_at"},
		{"clock in 1990", func(f *vigilv1.Finding) *vigilv1.Finding {
			f.ObservedAt = timestamppb.New(time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC))
			return f
		}, "outside"},
		{"no check", func(f *vigilv1.Finding) *vigilv1.Finding { f.Check = ""; return f }, "check"},
		{"long rule id", func(f *vigilv1.Finding) *vigilv1.Finding { f.RuleId = strings.Repeat("r", 200); return f }, "rule_id"},
		{"long message", func(f *vigilv1.Finding) *vigilv1.Finding { f.Message = strings.Repeat("m", 5000); return f }, "message"},
		{"17 evidence refs", func(f *vigilv1.Finding) *vigilv1.Finding { f.Evidence = make([]*vigilv1.EvidenceRef, 17); return f }, "evidence"},
	}
	seq, batch := uint64(0), uint64(0)
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			first := seq + 1
			fs := seqRange(first, first+4)
			badSeq := first + 1
			fs[1] = c.mod(fs[1])
			seq = first + 4
			batch++
			ack, err := as.sendBatch(batch, fs)
			if err != nil {
				t.Fatalf("batch with one bad finding: %v; want an ack", err)
			}
			if len(ack.Rejected) != 1 || ack.Rejected[0].Seq != badSeq || !strings.Contains(ack.Rejected[0].Reason, c.contains) {
				t.Fatalf("ack.rejected %v, want seq %d with a reason containing %q", ack.Rejected, badSeq, c.contains)
			}
			if ack.Stored != 5 || ack.Duplicates != 0 {
				t.Errorf("ack %v: want the 4 good findings and the finding-rejected record stored", ack)
			}
			got := storedFindings(t, e.st, d.id)
			for s := first; s <= seq; s++ {
				f := got[s]
				switch {
				case f == nil:
					t.Errorf("seq %d not stored", s)
				case s == badSeq:
					dt := f.GetDetails().AsMap()
					if f.Check != "pipeline" || f.RuleId != "finding-rejected" || f.DeviceId != d.id ||
						!strings.Contains(dt["reason"].(string), c.contains) || dt["rejected_seq"] != float64(badSeq) || len(f.Evidence) != 0 {
						t.Errorf("refused seq %d stored as %v", s, f)
					}
				case f.RuleId != "filter-evasion":
					t.Errorf("good seq %d stored as %v", s, f)
				}
			}
			// The agent did not get the ack (say) and resends: same answer,
			// nothing stored twice.
			batch++
			ack, err = as.sendBatch(batch, fs)
			if err != nil || len(ack.Rejected) != 1 || ack.Rejected[0].Seq != badSeq || ack.Stored != 0 || ack.Duplicates != 5 {
				t.Fatalf("resend: ack %v, err %v", ack, err)
			}
		})
	}
	// The stream is still serving.
	batch++
	if ack, err := as.sendBatch(batch, seqRange(seq+1, seq+3)); err != nil || ack.Stored != 3 || len(ack.Rejected) != 0 {
		t.Fatalf("after the refusals: ack %v, err %v", ack, err)
	}
	// A refused safeguarding alert stays an alert, as urgent as it was,
	// with who, when and which term: it still reaches the DSL's queue.
	// It is sent in the old form (the match in Details keys), as an agent
	// from before the typed ScreenMatch does: ingest reads it into one.
	f := screenshotFinding(seq+4, 1400<<10)
	f.Check, f.Severity, f.Category = "screen", vigilv1.Severity_SEVERITY_CRITICAL, "self_harm"
	f.Details, _ = structpb.NewStruct(map[string]any{"term": "kill myself", "title": "how to kill myself - Search", "process": "firefox"})
	batch++
	if ack, err := as.sendBatch(batch, []*vigilv1.Finding{f}); err != nil || len(ack.Rejected) != 1 {
		t.Fatalf("critical screenshot: ack %v, err %v", ack, err)
	}
	r := storedFindings(t, e.st, d.id)[seq+4]
	if !store.IsAlert(r) || r.RuleId != "finding-rejected" || r.Severity != vigilv1.Severity_SEVERITY_CRITICAL ||
		r.Category != "self_harm" || r.User != "pupil.2031" || r.GetScreenMatch().GetTerm() != "kill myself" || r.GetScreenMatch().GetWindowTitle() != "how to kill myself - Search" {
		t.Errorf("refused critical alert recorded as %v", r)
	}
}

// TestStreamRejectsFindingOverBatchLimit: a finding that alone is larger
// than this collector's batch limit (but under gRPC's) is refused by name,
// not as a malformed batch: otherwise an agent sending it alone would be
// refused for ever.
func TestStreamRejectsFindingOverBatchLimit(t *testing.T) {
	e := newEnv(t, Config{MaxBatchBytes: testMaxBytes}, store.Options{})
	d := e.enrollDevice(t)
	as := d.mustStream(t, "small-batches")
	f := mkFinding(1)
	f.Details, _ = structpb.NewStruct(map[string]any{"blob": strings.Repeat("A", testMaxBytes+8<<10)})
	ack, err := as.sendBatch(1, []*vigilv1.Finding{f})
	if err != nil || len(ack.Rejected) != 1 || !strings.Contains(ack.Rejected[0].Reason, "batch limit") {
		t.Fatalf("ack %v, err %v", ack, err)
	}
	if ack, err := as.sendBatch(2, seqRange(2, 3)); err != nil || ack.Stored != 2 {
		t.Fatalf("after: ack %v, err %v", ack, err)
	}
}
