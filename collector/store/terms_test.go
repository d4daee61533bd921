package store

import (
	"errors"
	"testing"
	"time"
)

// An add and a removal each write the term record and a decision log entry
// together; the log keeps both after the term is gone, and survives a
// reopen.
func TestSchoolTermsAndDecisionLog(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	at := time.Unix(1_800_000_000, 0).UTC()
	term := SchoolTerm{ID: "k1", Term: "gobbo gibbs", Category: "bullying", Severity: "high", Rationale: "nickname",
		Cases: "+ gobbo gibbs\n- gibbs\n", AddedBy: "dsl1", AddedAt: at}
	if err := s.AddSchoolTerm(term, "heard in Year 8"); err != nil {
		t.Fatal(err)
	}
	if err := s.AddSchoolTerm(term, "again"); !errors.Is(err, ErrExists) {
		t.Fatalf("second add: %v", err)
	}
	if err := s.AddSchoolTerm(SchoolTerm{ID: "k2"}, "no author"); err == nil {
		t.Fatal("a term without who added it was stored")
	}
	ts, err := s.SchoolTerms()
	if err != nil || len(ts) != 1 || ts[0] != term {
		t.Fatalf("terms: %+v %v", ts, err)
	}
	if _, err := s.RemoveSchoolTerm("nope", "dsl2", "x", at); !errors.Is(err, ErrNotFound) {
		t.Fatalf("remove unknown: %v", err)
	}
	got, err := s.RemoveSchoolTerm("k1", "dsl2", "the nickname stopped", at.Add(time.Hour))
	if err != nil || got != term {
		t.Fatalf("remove: %+v %v", got, err)
	}
	if _, err := s.RemoveSchoolTerm("k1", "dsl2", "twice", at.Add(2*time.Hour)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second remove: %v", err)
	}
	s.Close()

	s = openTest(t, dir, nil)
	defer s.Close()
	if ts, _ := s.SchoolTerms(); len(ts) != 0 {
		t.Fatalf("removed term still in force: %+v", ts)
	}
	log, err := s.TermDecisions()
	if err != nil || len(log) != 2 {
		t.Fatalf("log: %+v %v", log, err)
	}
	if d := log[0]; d.Action != TermAdded || d.By != "dsl1" || d.Reason != "heard in Year 8" || d.Term != term || !d.At.Equal(at) {
		t.Fatalf("add entry: %+v", d)
	}
	if d := log[1]; d.Action != TermRemoved || d.By != "dsl2" || d.Reason != "the nickname stopped" || d.Term.ID != "k1" {
		t.Fatalf("remove entry: %+v", d)
	}
}
