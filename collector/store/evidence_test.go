package store

import (
	"context"
	"errors"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

const selfID = "collectorself0000000000000"

func screenFinding(dev string, seq uint64, evID string, data []byte) *vigilv1.Finding {
	f := testFinding(dev, seq, "self_harm", time.Now())
	f.Check, f.ScreenMatch = "screen", &vigilv1.ScreenMatch{Term: "term"}
	f.Evidence = []*vigilv1.EvidenceRef{{Id: evID, MediaType: "image/png", Sha256: sha256Hex(data), Size: int64(len(data))}}
	f.EvidenceData = []*vigilv1.EvidenceBlob{{Id: evID, Data: data}}
	return f
}

// Issue 8 item 7: a later finding reusing an evidence id must not replace
// an earlier alert's screenshot, and every reveal checks the SHA-256.
func TestEvidenceWriteOnceAndVerifiedReveal(t *testing.T) {
	s, err := Open(t.TempDir(), Options{SelfDeviceID: selfID})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	ctx := context.Background()
	dev := devID(1)
	first, second := []byte("screenshot of alert one"), []byte("a different picture")
	a := screenFinding(dev, 1, "shot", first)
	refA := a.Evidence[0]
	if r, err := s.Commit(ctx, []*vigilv1.Finding{a}); err != nil || r.Stored != 1 || len(r.EvidenceConflicts) != 0 {
		t.Fatalf("first: %+v %v", r, err)
	}
	// Identical content again under a new finding: an idempotent no-op.
	same := screenFinding(dev, 2, "shot", first)
	if r, err := s.Commit(ctx, []*vigilv1.Finding{same}); err != nil || r.Stored != 1 || len(r.EvidenceConflicts) != 0 {
		t.Fatalf("identical blob: %+v %v", r, err)
	}
	// Other content under the same id: refused, reported, finding kept.
	b := screenFinding(dev, 3, "shot", second)
	refB := b.Evidence[0]
	r, err := s.Commit(ctx, []*vigilv1.Finding{b, testFinding(dev, 4, "x", time.Now())})
	if err != nil || r.Stored != 2 || len(r.EvidenceConflicts) != 1 {
		t.Fatalf("overwrite: %+v %v", r, err)
	}
	if c := r.EvidenceConflicts[0]; c.DeviceID != dev || c.Seq != 3 || c.EvidenceID != "shot" {
		t.Fatalf("conflict reported as %+v", c)
	}
	if h := s.Health(); h.EvidenceConflicts != 1 {
		t.Fatalf("health counts %d conflicts", h.EvidenceConflicts)
	}
	// The conflict is a finding of the collector itself.
	var self []*vigilv1.Finding
	s.ListFindings(ctx, Query{Device: selfID}, func(f *vigilv1.Finding) bool { self = append(self, f); return true })
	if len(self) != 1 || self[0].RuleId != "evidence-conflict" {
		t.Fatalf("self findings: %v", self)
	}
	// The earlier alert's screenshot is intact.
	got, err := s.Evidence(dev, "shot", refA)
	if err != nil || string(got) != string(first) {
		t.Fatalf("reveal of alert one: %q %v", got, err)
	}
	if got, err := s.Evidence(dev, "shot", nil); err != nil || string(got) != string(first) {
		t.Fatalf("reveal by id: %q %v", got, err)
	}
	// The later alert's reveal is refused: the stored bytes are not its.
	if _, err := s.Evidence(dev, "shot", refB); !errors.Is(err, ErrEvidenceMismatch) {
		t.Fatalf("reveal of alert two: %v", err)
	}
	// Bytes changed under the store (damage, tampering): refused whatever
	// the entry point, and logged.
	if err := s.db.Update(func(txn *badger.Txn) error { return txn.Set(evidenceKey(dev, "shot"), []byte("tampered")) }); err != nil {
		t.Fatal(err)
	}
	for _, ref := range []*vigilv1.EvidenceRef{refA, nil} {
		if _, err := s.Evidence(dev, "shot", ref); !errors.Is(err, ErrEvidenceMismatch) {
			t.Fatalf("reveal of tampered bytes (ref %v): %v", ref != nil, err)
		}
	}
	log, err := s.AccessLog()
	if err != nil {
		t.Fatal(err)
	}
	refused := 0
	for _, e := range log {
		if e.Action == "evidence-refused" && e.DeviceID == dev && e.EvidenceID == "shot" {
			refused++
		}
	}
	if refused != 3 {
		t.Fatalf("access log has %d refusals, want 3: %+v", refused, log)
	}
}

// Two findings in one group commit racing for the same evidence id: the
// first wins, the second is refused, within one transaction.
func TestEvidenceWriteOnceWithinGroup(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	dev := devID(2)
	a, b := screenFinding(dev, 1, "ev", []byte("one")), screenFinding(dev, 2, "ev", []byte("two"))
	r, err := s.Commit(context.Background(), []*vigilv1.Finding{a, b})
	if err != nil || r.Stored != 2 || len(r.EvidenceConflicts) != 1 || r.EvidenceConflicts[0].Seq != 2 {
		t.Fatalf("%+v %v", r, err)
	}
	if got, err := s.Evidence(dev, "ev", a.Evidence[0]); err != nil || string(got) != "one" {
		t.Fatalf("%q %v", got, err)
	}
}
