package store

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/triage"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestReviewAlertProposalInTheSameTransaction: a false positive and the
// exclusion it proposes are written together or not at all.
func TestReviewAlertProposalInTheSameTransaction(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	f := testFinding(devID(1), 1, "violence", time.Now())
	f.Check, f.ScreenMatch = "screen", &vigilv1.ScreenMatch{Term: "t", Library: "violence", Category: "violence"}
	if _, _, err := s.CommitFindings(context.Background(), []*vigilv1.Finding{f}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutExclusion(Exclusion{ID: "taken", Status: "pending"}); err != nil {
		t.Fatal(err)
	}
	mark := func(id string) error {
		_, err := s.ReviewAlert(f.DeviceId, f.Seq, func(st *AlertState) (*Exclusion, error) {
			st.Status, st.ExclusionID = triage.FalsePositive, id
			st.History = append(st.History, HistoryEntry{Time: time.Now(), By: "dsl1", Action: "false_positive"})
			return &Exclusion{ID: id, AlertID: "a", Status: "pending"}, nil
		})
		return err
	}
	// The proposal cannot be written (its ID is taken): the alert is unchanged.
	if err := mark("taken"); !errors.Is(err, ErrExists) {
		t.Fatalf("proposal over an existing ID: %v, want ErrExists", err)
	}
	if a, _ := s.GetAlert(f.DeviceId, f.Seq); a.State.Status != triage.New || len(a.State.History) != 0 {
		t.Fatalf("the alert changed although its proposal was not stored: %+v", a.State)
	}
	// Refused by fn: neither is written.
	if _, err := s.ReviewAlert(f.DeviceId, f.Seq, func(st *AlertState) (*Exclusion, error) {
		st.Status = triage.FalsePositive
		return &Exclusion{ID: "never"}, errors.New("refused")
	}); err == nil {
		t.Fatal("fn's error was dropped")
	}
	if err := mark("fresh"); err != nil {
		t.Fatal(err)
	}
	a, _ := s.GetAlert(f.DeviceId, f.Seq)
	xs, _ := s.Exclusions()
	if a.State.Status != triage.FalsePositive || a.State.ExclusionID != "fresh" || len(xs) != 2 {
		t.Fatalf("after a stored proposal: %+v %+v", a.State, xs)
	}
	for _, x := range xs {
		if x.ID == "never" {
			t.Fatal("a refused step stored its proposal")
		}
	}
}
