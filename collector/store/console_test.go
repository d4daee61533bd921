package store

import (
	"context"
	"encoding/binary"
	"errors"
	"testing"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestAlertIndex: commitGroup indexes screen findings (only) under ai/,
// ListAlerts walks them newest first with time bounds, cursors and a scan
// bound, and a duplicate commit adds nothing.
func TestAlertIndex(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	base := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	var batch []*vigilv1.Finding
	for i := 1; i <= 20; i++ {
		f := testFinding(devID(i%3), uint64(i), "self_harm", base.Add(time.Duration(i)*time.Minute))
		if i%2 == 0 {
			f.Check, f.ScreenMatch = "screen", &vigilv1.ScreenMatch{Term: "term"}
		}
		batch = append(batch, f)
	}
	if _, _, err := s.CommitFindings(ctx, batch); err != nil {
		t.Fatal(err)
	}
	if stored, _, _ := s.CommitFindings(ctx, batch); stored != 0 {
		t.Fatalf("recommit stored %d", stored)
	}
	var seqs []uint64
	next, err := s.ListAlerts(ctx, AlertScan{}, func(a *Alert) bool {
		seqs = append(seqs, a.Finding.Seq)
		if a.State.Status != "new" {
			t.Errorf("status %q", a.State.Status)
		}
		return true
	})
	if err != nil || next != nil || len(seqs) != 10 || seqs[0] != 20 || seqs[9] != 2 {
		t.Fatalf("list: %v %v %v", seqs, next, err)
	}
	// Bounded by time.
	seqs = nil
	s.ListAlerts(ctx, AlertScan{From: base.Add(6 * time.Minute), To: base.Add(12 * time.Minute)}, func(a *Alert) bool {
		seqs = append(seqs, a.Finding.Seq)
		return true
	})
	if len(seqs) != 4 || seqs[0] != 12 || seqs[3] != 6 {
		t.Errorf("time bounds: %v", seqs)
	}
	// A page of 3, then continue from its cursor.
	seqs = nil
	next, _ = s.ListAlerts(ctx, AlertScan{}, func(a *Alert) bool { seqs = append(seqs, a.Finding.Seq); return len(seqs) < 3 })
	s.ListAlerts(ctx, AlertScan{After: next}, func(a *Alert) bool { seqs = append(seqs, a.Finding.Seq); return true })
	if len(seqs) != 10 || seqs[2] != 16 || seqs[3] != 14 {
		t.Errorf("cursor paging: %v", seqs)
	}
	// A scan bound stops early with a cursor that resumes at the entry
	// not yet examined.
	seqs = nil
	next, _ = s.ListAlerts(ctx, AlertScan{MaxScan: 4}, func(a *Alert) bool { seqs = append(seqs, a.Finding.Seq); return true })
	s.ListAlerts(ctx, AlertScan{After: next}, func(a *Alert) bool { seqs = append(seqs, a.Finding.Seq); return true })
	if len(seqs) != 10 || seqs[3] != 14 || seqs[4] != 12 {
		t.Errorf("scan bound: %v", seqs)
	}
	// Non-screen findings are not alerts.
	if _, err := s.GetAlert(devID(1), 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("selftest finding as alert: %v", err)
	}
	// The key layout is the documented one.
	k := AlertIndexKey(batch[1])
	if string(k[:3]) != "ai/" || int64(binary.BigEndian.Uint64(k[3:11])) != batch[1].ObservedAt.AsTime().UnixNano() || len(k) != 3+8+26+8 {
		t.Errorf("key %x", k)
	}
}

// TestAlertStateAppendOnly: updates are transactional and history cannot
// shrink.
func TestAlertStateAppendOnly(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	f := testFinding(devID(1), 1, "self_harm", time.Now())
	f.Check, f.ScreenMatch = "screen", &vigilv1.ScreenMatch{Term: "term"}
	s.CommitFindings(context.Background(), []*vigilv1.Finding{f})
	st, err := s.UpdateAlertState(devID(1), 1, func(st *AlertState) error {
		st.Status = "in_review"
		st.History = append(st.History, HistoryEntry{By: "a", Action: "start_review"}, HistoryEntry{By: "a", Action: "note"})
		return nil
	})
	if err != nil || len(st.History) != 2 {
		t.Fatal(err)
	}
	_, err = s.UpdateAlertState(devID(1), 1, func(st *AlertState) error { st.History = st.History[:1]; return nil })
	if err == nil {
		t.Fatal("history shrank")
	}
	a, _ := s.GetAlert(devID(1), 1)
	if len(a.State.History) != 2 || a.State.Status != "in_review" {
		t.Errorf("state after refused update: %+v", a.State)
	}
	if _, err := s.UpdateAlertState(devID(9), 9, func(*AlertState) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("state for a missing finding: %v", err)
	}
}

func TestUsersAndSessions(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	if err := s.CreateUser(User{Username: "a", Role: "dsl"}); err != nil {
		t.Fatal(err)
	}
	if err := s.CreateUser(User{Username: "a", Role: "admin"}); !errors.Is(err, ErrExists) {
		t.Fatalf("duplicate user: %v", err)
	}
	if u, _ := s.GetUser("a"); u.Role != "dsl" {
		t.Errorf("user overwritten: %+v", u)
	}
	if err := s.PutSession("h1", Session{Username: "a"}, time.Second); err != nil {
		t.Fatal(err)
	}
	if sess, err := s.GetSession("h1"); err != nil || sess.Username != "a" {
		t.Fatalf("session: %v", err)
	}
	time.Sleep(1100 * time.Millisecond)
	if _, err := s.GetSession("h1"); !errors.Is(err, ErrNotFound) {
		t.Errorf("session outlived its TTL: %v", err)
	}
}
