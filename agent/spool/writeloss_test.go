package spool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/internal/testutil"
)

func writeLossReport(l WriteLoss) Item {
	b, _ := json.Marshal(l)
	return Item{Severity: MaxSeverity, Payload: append([]byte("WRITELOSS "), b...)}
}

// TestDiskFullCountedAndReported: on a tmpfs filled to the last byte,
// Appends fail; every item they carried is counted in DroppedTotal and
// WriteFailures and LastError says so. When space returns the spool
// resumes by itself: the retry stores a report naming the loss, new Appends
// succeed, and nothing stored before the failure is lost.
func TestDiskFullCountedAndReported(t *testing.T) {
	dir := testutil.Tmpfs(t, "2m")
	path := filepath.Join(dir, "spool.db")
	s := openT(t, path, Options{WriteFailReport: writeLossReport, RetryInterval: 50 * time.Millisecond})
	before := map[uint64]string{}
	for i := range 20 {
		p := fmt.Sprintf("stored before the disk filled %d", i)
		seq, _ := mustAppend(t, s, item(3, p))
		before[seq] = p
	}

	testutil.FillToLastByte(t, filepath.Join(dir, "filler"))
	big := strings.Repeat("z", 3000)
	var lost uint64
	var failed int
	for i := 0; i < 400 && failed < 30; i++ {
		items := []Item{item(uint8(i%5+1), big), item(2, big)}
		if _, _, err := s.Append(items); err != nil {
			failed++
			lost += uint64(len(items))
		}
	}
	if failed == 0 {
		t.Fatal("no Append failed on a full disk")
	}
	st := s.Stats()
	t.Logf("disk full: %d Appends failed, %d items lost; LastError %q", failed, lost, st.LastError)
	if st.WriteFailures != lost || st.DroppedTotal != lost {
		t.Fatalf("lost %d items; Stats %+v", lost, st)
	}
	if !strings.Contains(st.LastError, "spool write failed") || !strings.Contains(st.LastError, "no space") {
		t.Fatalf("LastError %q", st.LastError)
	}
	// Acked-or-not, what was stored before is intact and readable.
	for _, r := range readAll(t, s) {
		if p, ok := before[r.Seq]; ok && p != string(r.Payload) {
			t.Fatalf("record %d changed", r.Seq)
		}
		delete(before, r.Seq)
	}
	if len(before) > 0 {
		t.Fatalf("records stored before the disk filled are gone: %v", before)
	}

	if err := os.Remove(filepath.Join(dir, "filler")); err != nil {
		t.Fatal(err)
	}
	// No Append: the retry alone must store the report.
	var rep WriteLoss
	deadline := time.Now().Add(30 * time.Second)
	for found := false; !found; {
		if time.Now().After(deadline) {
			t.Fatalf("no write-failure report 30 s after space returned; Stats %+v", s.Stats())
		}
		time.Sleep(20 * time.Millisecond)
		for _, r := range readAll(t, s) {
			if p, ok := bytes.CutPrefix(r.Payload, []byte("WRITELOSS ")); ok {
				if err := json.Unmarshal(p, &rep); err != nil {
					t.Fatal(err)
				}
				found = true
			}
		}
	}
	if rep.Lost != lost || rep.Total != lost || rep.First.IsZero() || rep.Last.Before(rep.First) || !strings.Contains(rep.Err, "no space") {
		t.Errorf("report %+v, want %d lost with a time window and the error", rep, lost)
	}
	var bySev uint64
	for _, n := range rep.BySeverity {
		bySev += n
	}
	if bySev != lost {
		t.Errorf("report by severity %v sums to %d, want %d", rep.BySeverity, bySev, lost)
	}
	if st := s.Stats(); st.LastError != "" || st.WriteFailures != lost || st.DroppedTotal != lost {
		t.Errorf("after recovery Stats %+v", st)
	}
	if _, _, err := s.Append([]Item{item(3, "after space returned")}); err != nil {
		t.Fatalf("Append after space returned: %v", err)
	}
	// The counts are persistent, and the file is intact.
	s.Close()
	s2 := openT(t, path, Options{})
	if st := s2.Stats(); st.WriteFailures != lost || st.DroppedTotal != lost || st.LastError != "" {
		t.Errorf("after reopen Stats %+v", st)
	}
}
