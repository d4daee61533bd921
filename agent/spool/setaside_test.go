package spool

import (
	"path/filepath"
	"testing"
)

// TestSetAside: set-aside records leave the queue and are counted, durably:
// the count survives a reopen, and seqs not stored are not counted.
func TestSetAside(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	first, last, err := s.Append([]Item{{Severity: 3, Payload: []byte("a")}, {Severity: 3, Payload: []byte("b")}, {Severity: 3, Payload: []byte("c")}})
	if err != nil || last != first+2 {
		t.Fatal(first, last, err)
	}
	n, err := s.SetAside([]uint64{first + 1, last + 100})
	if err != nil || n != 1 {
		t.Fatalf("SetAside = %d, %v; want 1", n, err)
	}
	if n, err := s.SetAside([]uint64{first + 1}); err != nil || n != 0 {
		t.Fatalf("second SetAside of the same seq = %d, %v; want 0", n, err)
	}
	st := s.Stats()
	if st.RejectedTotal != 1 || st.Count != 2 || st.DroppedTotal != 0 {
		t.Fatalf("stats %+v", st)
	}
	recs, _ := s.ReadAfter(0, 0, 0)
	if len(recs) != 2 || recs[0].Seq != first || recs[1].Seq != last {
		t.Fatalf("remaining %v", recs)
	}
	s.Close()
	s, err = Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if st := s.Stats(); st.RejectedTotal != 1 || st.Count != 2 {
		t.Fatalf("after reopen: %+v", st)
	}
	if n, err := s.SetAside([]uint64{first, last}); err != nil || n != 2 || s.Stats().RejectedTotal != 3 || s.Stats().Count != 0 {
		t.Fatalf("SetAside = %d, %v, stats %+v", n, err, s.Stats())
	}
}
