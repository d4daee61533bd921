package spool

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"maps"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"
)

func openT(t testing.TB, path string, opts Options) *Spool {
	t.Helper()
	s, err := Open(path, opts)
	if err != nil {
		t.Fatalf("Open: %v", err)
	}
	t.Cleanup(func() { _ = s.Close() })
	return s
}

func mustAppend(t testing.TB, s *Spool, items ...Item) (uint64, uint64) {
	t.Helper()
	first, last, err := s.Append(items)
	if err != nil {
		t.Fatalf("Append: %v", err)
	}
	return first, last
}

func readAll(t testing.TB, s *Spool) []Record {
	t.Helper()
	recs, err := s.ReadAfter(0, 0, 0)
	if err != nil {
		t.Fatalf("ReadAfter: %v", err)
	}
	return recs
}

func seqsOf(recs []Record) []uint64 {
	out := make([]uint64, len(recs))
	for i, r := range recs {
		out[i] = r.Seq
	}
	return out
}

func item(sev uint8, payload string) Item { return Item{Severity: sev, Payload: []byte(payload)} }

func TestRoundTrip(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "spool.db"), Options{})

	if f, l, err := s.Append(nil); f != 0 || l != 0 || err != nil {
		t.Fatalf("empty Append = %d, %d, %v; want 0, 0, nil", f, l, err)
	}
	first, last := mustAppend(t, s, item(0, "a"), item(3, "bb"), item(5, "ccc"), item(9, ""))
	if first != 1 || last != 4 {
		t.Fatalf("Append seqs = %d..%d, want 1..4", first, last)
	}
	want := []Record{
		{Seq: 1, Severity: 1, Payload: []byte("a")},
		{Seq: 2, Severity: 3, Payload: []byte("bb")},
		{Seq: 3, Severity: 5, Payload: []byte("ccc")},
		{Seq: 4, Severity: 5, Payload: []byte{}},
	}
	got := readAll(t, s)
	if len(got) != len(want) {
		t.Fatalf("read %d records, want %d", len(got), len(want))
	}
	for i := range want {
		if got[i].Seq != want[i].Seq || got[i].Severity != want[i].Severity || !bytes.Equal(got[i].Payload, want[i].Payload) {
			t.Errorf("record %d = %+v, want %+v", i, got[i], want[i])
		}
	}
	if st := s.Stats(); st.Count != 4 || st.Bytes != 6+4*RecordOverhead || st.NextSeq != 5 || st.DroppedTotal != 0 {
		t.Fatalf("Stats = %+v", st)
	}

	if err := s.Delete([]uint64{1, 3}); err != nil {
		t.Fatal(err)
	}
	if got := seqsOf(readAll(t, s)); !slices.Equal(got, []uint64{2, 4}) {
		t.Fatalf("after delete: seqs %v, want [2 4]", got)
	}
	if st := s.Stats(); st.Count != 2 || st.Bytes != 2+2*RecordOverhead || st.NextSeq != 5 {
		t.Fatalf("Stats after delete = %+v", st)
	}
	// Payloads returned are copies that stay valid after the read tx.
	recs := readAll(t, s)
	mustAppend(t, s, item(1, strings.Repeat("x", 5000)))
	if string(recs[0].Payload) != "bb" {
		t.Fatalf("payload changed under us: %q", recs[0].Payload)
	}
}

func TestReadAfterPaging(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	var items []Item
	for i := range 50 {
		items = append(items, Item{Severity: uint8(1 + i%5), Payload: bytes.Repeat([]byte{byte(i)}, 10*(i%7))})
	}
	mustAppend(t, s, items...)

	// Page by record count.
	var seen []uint64
	after := uint64(0)
	for {
		recs, err := s.ReadAfter(after, 7, 0)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		if len(recs) > 7 {
			t.Fatalf("page of %d > 7", len(recs))
		}
		for _, r := range recs {
			if want := items[r.Seq-1].Payload; !bytes.Equal(r.Payload, want) {
				t.Fatalf("seq %d payload mismatch", r.Seq)
			}
		}
		seen = append(seen, seqsOf(recs)...)
		after = recs[len(recs)-1].Seq
	}
	if len(seen) != 50 || !slices.IsSorted(seen) || seen[0] != 1 || seen[49] != 50 {
		t.Fatalf("paged seqs = %v", seen)
	}

	// Page by bytes: every page but possibly a single-record one is within
	// the limit, and nothing is skipped.
	seen = nil
	after = 0
	for {
		recs, err := s.ReadAfter(after, 0, 45)
		if err != nil {
			t.Fatal(err)
		}
		if len(recs) == 0 {
			break
		}
		n := 0
		for _, r := range recs {
			n += len(r.Payload)
		}
		if n > 45 && len(recs) != 1 {
			t.Fatalf("page of %d records with %d bytes > 45", len(recs), n)
		}
		seen = append(seen, seqsOf(recs)...)
		after = recs[len(recs)-1].Seq
	}
	if len(seen) != 50 {
		t.Fatalf("byte paging saw %d records", len(seen))
	}

	// A single record bigger than maxBytes is still returned.
	recs, err := s.ReadAfter(6, 10, 1) // seq 7 has 60 bytes
	if err != nil {
		t.Fatal(err)
	}
	if len(recs) != 1 || recs[0].Seq != 7 {
		t.Fatalf("oversized first record: got %v", seqsOf(recs))
	}
	// Past the end, and the largest possible cursor.
	for _, a := range []uint64{50, 1000, ^uint64(0)} {
		if recs, err := s.ReadAfter(a, 10, 0); err != nil || len(recs) != 0 {
			t.Fatalf("ReadAfter(%d) = %d records, %v", a, len(recs), err)
		}
	}
	// Gaps from deletes are skipped.
	if err := s.Delete([]uint64{11, 12, 13}); err != nil {
		t.Fatal(err)
	}
	if recs, _ := s.ReadAfter(10, 2, 0); !slices.Equal(seqsOf(recs), []uint64{14, 15}) {
		t.Fatalf("after gap: %v", seqsOf(recs))
	}
}

func TestSeqsContinueAfterReopen(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s, err := Open(path, Options{})
	if err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, item(2, "a"), item(2, "b"), item(2, "c"))
	// Deleting everything must not let numbering restart.
	if err := s.Delete([]uint64{1, 2, 3}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatalf("second Close: %v", err)
	}
	if _, _, err := s.Append([]Item{item(1, "x")}); !errors.Is(err, ErrClosed) {
		t.Fatalf("Append after Close: %v, want ErrClosed", err)
	}
	if _, err := s.ReadAfter(0, 1, 0); !errors.Is(err, ErrClosed) {
		t.Fatalf("ReadAfter after Close: %v, want ErrClosed", err)
	}

	s = openT(t, path, Options{})
	if st := s.Stats(); st.NextSeq != 4 || st.Count != 0 || st.Bytes != 0 {
		t.Fatalf("Stats after reopen = %+v", st)
	}
	if first, last := mustAppend(t, s, item(1, "d"), item(1, "e")); first != 4 || last != 5 {
		t.Fatalf("after reopen seqs %d..%d, want 4..5", first, last)
	}
}

func TestTooLargeIsAtomic(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "spool.db"), Options{MaxBytes: 1000})
	_, _, err := s.Append([]Item{item(5, "ok"), {Severity: 5, Payload: make([]byte, 1000-RecordOverhead+1)}})
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("err = %v, want ErrTooLarge", err)
	}
	if !strings.HasPrefix(err.Error(), "spool: append:") {
		t.Fatalf("error not wrapped with context: %v", err)
	}
	if st := s.Stats(); st.Count != 0 || st.NextSeq != 1 {
		t.Fatalf("partial append: %+v", st)
	}
	// Exactly MaxBytes fits.
	if first, _ := mustAppend(t, s, Item{Severity: 1, Payload: make([]byte, 1000-RecordOverhead)}); first != 1 {
		t.Fatalf("first = %d", first)
	}
}

func TestDeleteUnknownSeqs(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	if err := s.Delete([]uint64{0, 1, 99}); err != nil {
		t.Fatalf("Delete on empty spool: %v", err)
	}
	if err := s.Delete(nil); err != nil {
		t.Fatal(err)
	}
	mustAppend(t, s, item(1, "a"), item(2, "b"))
	before := s.Stats()
	if err := s.Delete([]uint64{7, 1 << 40, 0}); err != nil {
		t.Fatalf("Delete of unknown seqs: %v", err)
	}
	if after := s.Stats(); after != before {
		t.Fatalf("Stats changed: %+v -> %+v", before, after)
	}
	// Mixed known, unknown and duplicate.
	if err := s.Delete([]uint64{2, 2, 5, 1}); err != nil {
		t.Fatal(err)
	}
	if st := s.Stats(); st.Count != 0 || st.Bytes != 0 {
		t.Fatalf("Stats = %+v", st)
	}
	if recs := readAll(t, s); len(recs) != 0 {
		t.Fatalf("records left: %v", seqsOf(recs))
	}
}

// ---- eviction model ----

type modelRec struct {
	sev  uint8
	size int64
	data string
}

// model is a deliberately naive in-memory implementation of the spool's
// rules, used as the oracle for the property test.
type model struct {
	max     int64
	next    uint64
	recs    map[uint64]modelRec
	bytes   int64
	dropped uint64
	report  func(map[uint8]uint64) Item
	reports []map[uint8]uint64
	// unreported: evictions caused by storing a report, owed to the next.
	unreported map[uint8]uint64
}

func newModel(max int64, report func(map[uint8]uint64) Item) *model {
	return &model{max: max, next: 1, recs: map[uint64]modelRec{}, report: report}
}

func (m *model) put(it Item) {
	sev := it.Severity
	if sev == 0 {
		sev = 1
	}
	if sev > 5 {
		sev = 5
	}
	r := modelRec{sev: sev, size: int64(len(it.Payload)) + RecordOverhead, data: string(it.Payload)}
	m.recs[m.next] = r
	m.next++
	m.bytes += r.size
}

func (m *model) evict(dropped map[uint8]uint64) {
	for m.bytes > m.max {
		// Linear scan for the minimum (severity, seq).
		var victim uint64
		var vr modelRec
		found := false
		for seq, r := range m.recs {
			if !found || r.sev < vr.sev || (r.sev == vr.sev && seq < victim) {
				victim, vr, found = seq, r, true
			}
		}
		delete(m.recs, victim)
		m.bytes -= vr.size
		m.dropped++
		dropped[vr.sev]++
	}
}

func (m *model) append(items []Item) (uint64, uint64) {
	first := m.next
	for _, it := range items {
		m.put(it)
	}
	last := m.next - 1
	dropped := map[uint8]uint64{}
	m.evict(dropped)
	if len(dropped) > 0 && m.report != nil {
		toReport := maps.Clone(dropped)
		for sev, n := range m.unreported {
			toReport[sev] += n
		}
		m.reports = append(m.reports, maps.Clone(toReport))
		rep := m.report(toReport)
		if rep.Payload != nil && int64(len(rep.Payload))+RecordOverhead <= m.max {
			m.put(rep)
			m.unreported = map[uint8]uint64{}
			m.evict(m.unreported)
		}
	}
	return first, last
}

func (m *model) delete(seqs []uint64) {
	for _, seq := range seqs {
		if r, ok := m.recs[seq]; ok {
			delete(m.recs, seq)
			m.bytes -= r.size
		}
	}
}

func (m *model) check(t *testing.T, s *Spool, step int) {
	t.Helper()
	st := s.Stats()
	want := Stats{Count: len(m.recs), Bytes: m.bytes, NextSeq: m.next, DroppedTotal: m.dropped}
	if st != want {
		t.Fatalf("step %d: Stats = %+v, model %+v", step, st, want)
	}
	if st.Bytes > m.max {
		t.Fatalf("step %d: Bytes %d > MaxBytes %d", step, st.Bytes, m.max)
	}
	recs := readAll(t, s)
	if len(recs) != len(m.recs) {
		t.Fatalf("step %d: %d records stored, model has %d", step, len(recs), len(m.recs))
	}
	for _, r := range recs {
		mr, ok := m.recs[r.Seq]
		if !ok {
			t.Fatalf("step %d: seq %d stored but model evicted/deleted it", step, r.Seq)
		}
		if r.Severity != mr.sev || string(r.Payload) != mr.data {
			t.Fatalf("step %d: seq %d = sev %d %q, model sev %d %q", step, r.Seq, r.Severity, r.Payload, mr.sev, mr.data)
		}
	}
}

func TestEvictionMatchesModel(t *testing.T) {
	// The report's severity and size depend only on its input, so the
	// spool and the model produce the same report items. Sometimes it is
	// info (so it can be evicted itself, or evict other info), sometimes
	// nil (no item appended).
	reportFn := func(d map[uint8]uint64) Item {
		var total uint64
		for _, n := range d {
			total += n
		}
		if total%7 == 0 {
			return Item{}
		}
		return Item{
			Severity: uint8(total%3) * 2, // 0 (-> info), 2 or 4
			Payload:  fmt.Appendf(nil, "spool dropped %d findings %v", total, d),
		}
	}
	for _, tc := range []struct {
		name   string
		report func(map[uint8]uint64) Item
	}{
		{"no_report", nil},
		{"with_report", reportFn},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const maxBytes = 12 << 10
			path := filepath.Join(t.TempDir(), "spool.db")
			rng := rand.New(rand.NewPCG(20261123, 42))
			var spoolReports []map[uint8]uint64
			opts := Options{MaxBytes: maxBytes}
			if tc.report != nil {
				opts.DropReport = func(d map[uint8]uint64) Item {
					spoolReports = append(spoolReports, maps.Clone(d))
					return tc.report(d)
				}
			}
			s, err := Open(path, opts)
			if err != nil {
				t.Fatal(err)
			}
			defer func() { _ = s.Close() }()
			m := newModel(maxBytes, tc.report)

			appended, evictions := 0, uint64(0)
			for step := 0; appended < 3000; step++ {
				switch r := rng.IntN(100); {
				case r < 80:
					n := 1 + rng.IntN(8)
					items := make([]Item, n)
					for i := range items {
						// Skewed so that low severities dominate but
						// the spool regularly fills with higher ones.
						sev := uint8(rng.IntN(6)) // 0..5
						if rng.IntN(4) == 0 {
							sev = 5
						}
						p := make([]byte, rng.IntN(400))
						for j := range p {
							p[j] = byte('a' + rng.IntN(26))
						}
						items[i] = Item{Severity: sev, Payload: p}
					}
					mf, ml := m.append(items)
					f, l, err := s.Append(items)
					if err != nil {
						t.Fatalf("step %d: Append: %v", step, err)
					}
					if f != mf || l != ml {
						t.Fatalf("step %d: seqs %d..%d, model %d..%d", step, f, l, mf, ml)
					}
					appended += n
				case r < 95:
					// Delete a few stored seqs plus some unknown ones.
					var del []uint64
					for seq := range m.recs {
						if rng.IntN(3) == 0 {
							del = append(del, seq)
						}
						if len(del) == 5 {
							break
						}
					}
					del = append(del, m.next+100, uint64(rng.IntN(int(m.next))))
					m.delete(del)
					if err := s.Delete(del); err != nil {
						t.Fatalf("step %d: Delete: %v", step, err)
					}
				default:
					// Reopen: the persisted state must equal the model.
					if err := s.Close(); err != nil {
						t.Fatal(err)
					}
					if s, err = Open(path, opts); err != nil {
						t.Fatal(err)
					}
				}
				m.check(t, s, step)
				evictions = m.dropped
			}
			if evictions < 500 {
				t.Fatalf("only %d evictions; the test does not exercise the bound", evictions)
			}
			if !slices.EqualFunc(spoolReports, m.reports, maps.Equal) {
				t.Fatalf("DropReport calls differ:\nspool %v\nmodel %v", spoolReports, m.reports)
			}
			if tc.report != nil && len(m.reports) < 50 {
				t.Fatalf("only %d reports", len(m.reports))
			}
			t.Logf("%d items, %d evictions, %d reports, final %+v", appended, evictions, len(m.reports), s.Stats())
		})
	}
}

// Hand-computed scenarios for the order rules.
func TestEvictionOrder(t *testing.T) {
	const p = 100 // payload; record size 132
	pl := func(n int) []byte { return make([]byte, n) }
	max := int64(5 * (p + RecordOverhead))

	t.Run("oldest_lowest_first_including_new", func(t *testing.T) {
		s := openT(t, filepath.Join(t.TempDir(), "spool.db"), Options{MaxBytes: max})
		// 1:info 2:crit 3:info 4:warn 5:info
		for _, sev := range []uint8{1, 5, 1, 2, 1} {
			mustAppend(t, s, Item{Severity: sev, Payload: pl(p)})
		}
		mustAppend(t, s, Item{Severity: 1, Payload: pl(p)}) // 6:info evicts 1
		if got := seqsOf(readAll(t, s)); !slices.Equal(got, []uint64{2, 3, 4, 5, 6}) {
			t.Fatalf("seqs %v", got)
		}
		mustAppend(t, s, Item{Severity: 3, Payload: pl(2*p + RecordOverhead)}) // needs two slots: evicts 3, 5
		if got := seqsOf(readAll(t, s)); !slices.Equal(got, []uint64{2, 4, 6, 7}) {
			t.Fatalf("seqs %v", got)
		}
		if st := s.Stats(); st.DroppedTotal != 3 || st.Bytes > max {
			t.Fatalf("Stats %+v", st)
		}
	})

	t.Run("new_info_into_full_critical_is_dropped", func(t *testing.T) {
		s := openT(t, filepath.Join(t.TempDir(), "spool.db"), Options{MaxBytes: max})
		for range 5 {
			mustAppend(t, s, Item{Severity: 5, Payload: pl(p)})
		}
		first, last := mustAppend(t, s, Item{Severity: 1, Payload: pl(p)})
		if first != 6 || last != 6 {
			t.Fatalf("seqs %d..%d", first, last)
		}
		if got := seqsOf(readAll(t, s)); !slices.Equal(got, []uint64{1, 2, 3, 4, 5}) {
			t.Fatalf("seqs %v", got)
		}
		// A new critical evicts the oldest critical.
		mustAppend(t, s, Item{Severity: 5, Payload: pl(p)})
		if got := seqsOf(readAll(t, s)); !slices.Equal(got, []uint64{2, 3, 4, 5, 7}) {
			t.Fatalf("seqs %v", got)
		}
		if st := s.Stats(); st.DroppedTotal != 2 || st.NextSeq != 8 {
			t.Fatalf("Stats %+v", st)
		}
	})

	t.Run("smaller_max_on_reopen", func(t *testing.T) {
		path := filepath.Join(t.TempDir(), "spool.db")
		s, err := Open(path, Options{MaxBytes: max})
		if err != nil {
			t.Fatal(err)
		}
		for _, sev := range []uint8{4, 1, 4, 2, 1} {
			mustAppend(t, s, Item{Severity: sev, Payload: pl(p)})
		}
		_ = s.Close()
		s = openT(t, path, Options{MaxBytes: 2 * (p + RecordOverhead)})
		if got := seqsOf(readAll(t, s)); !slices.Equal(got, []uint64{1, 3}) {
			t.Fatalf("seqs %v", got)
		}
		if st := s.Stats(); st.DroppedTotal != 3 || st.Count != 2 {
			t.Fatalf("Stats %+v", st)
		}
	})
}

func TestDropReport(t *testing.T) {
	const p = 100
	max := int64(5 * (p + RecordOverhead))
	fill := func(t *testing.T, s *Spool) {
		// 1,2,3 info; 4,5 warning (severity 2)
		for _, sev := range []uint8{1, 1, 1, 2, 2} {
			mustAppend(t, s, Item{Severity: sev, Payload: make([]byte, p)})
		}
	}

	t.Run("counts_and_seq", func(t *testing.T) {
		var calls []map[uint8]uint64
		s := openT(t, filepath.Join(t.TempDir(), "spool.db"), Options{
			MaxBytes: max,
			DropReport: func(d map[uint8]uint64) Item {
				calls = append(calls, maps.Clone(d))
				return Item{Severity: 3, Payload: []byte("dropped!!!")} // 10 bytes
			},
		})
		fill(t, s)
		if len(calls) != 0 {
			t.Fatalf("DropReport called without eviction: %v", calls)
		}
		// 432-byte critical: evicts 1,2,3 (info) then 4 (warning).
		first, last := mustAppend(t, s, Item{Severity: 5, Payload: make([]byte, 400)})
		if first != 6 || last != 6 {
			t.Fatalf("seqs %d..%d", first, last)
		}
		if len(calls) != 1 || !maps.Equal(calls[0], map[uint8]uint64{1: 3, 2: 1}) {
			t.Fatalf("DropReport calls = %v, want [map[1:3 2:1]]", calls)
		}
		recs := readAll(t, s)
		if got := seqsOf(recs); !slices.Equal(got, []uint64{5, 6, 7}) {
			t.Fatalf("seqs %v, want [5 6 7]", got)
		}
		if r := recs[2]; r.Severity != 3 || string(r.Payload) != "dropped!!!" {
			t.Fatalf("report record %+v", r)
		}
		want := Stats{Count: 3, Bytes: 3*RecordOverhead + p + 400 + 10, NextSeq: 8, DroppedTotal: 4}
		if st := s.Stats(); st != want {
			t.Fatalf("Stats %+v, want %+v", st, want)
		}
	})

	t.Run("report_evictions_reported_next_time", func(t *testing.T) {
		var calls []map[uint8]uint64
		path := filepath.Join(t.TempDir(), "spool.db")
		opts := Options{
			MaxBytes: max,
			DropReport: func(d map[uint8]uint64) Item {
				calls = append(calls, maps.Clone(d))
				return Item{Severity: 4, Payload: make([]byte, p)}
			},
		}
		s, err := Open(path, opts)
		if err != nil {
			t.Fatal(err)
		}
		fill(t, s)
		// New critical evicts 1; the report (severity 4) then evicts 2.
		if first, _ := mustAppend(t, s, Item{Severity: 5, Payload: make([]byte, p)}); first != 6 {
			t.Fatalf("first %d", first)
		}
		if len(calls) != 1 || !maps.Equal(calls[0], map[uint8]uint64{1: 1}) {
			t.Fatalf("calls %v", calls)
		}
		if got := seqsOf(readAll(t, s)); !slices.Equal(got, []uint64{3, 4, 5, 6, 7}) {
			t.Fatalf("seqs %v", got)
		}
		if st := s.Stats(); st.DroppedTotal != 2 || st.Bytes != max || st.NextSeq != 8 {
			t.Fatalf("Stats %+v", st)
		}
		// DroppedTotal and the owed count are persistent.
		_ = s.Close()
		s = openT(t, path, opts)
		if st := s.Stats(); st.DroppedTotal != 2 || st.NextSeq != 8 || st.Count != 5 {
			t.Fatalf("Stats after reopen %+v", st)
		}
		// The next report names the eviction the first report caused, so
		// reports add up to DroppedTotal.
		// Another critical evicts one more info finding; its report also
		// names the one the first report's own storage evicted (seq 2).
		mustAppend(t, s, Item{Severity: 5, Payload: make([]byte, p)})
		if len(calls) != 2 || !maps.Equal(calls[1], map[uint8]uint64{1: 2}) {
			t.Fatalf("calls %v: the second report must include the report-caused eviction", calls)
		}
	})

	t.Run("nil_payload_means_no_item", func(t *testing.T) {
		calls := 0
		s := openT(t, filepath.Join(t.TempDir(), "spool.db"), Options{
			MaxBytes:   max,
			DropReport: func(map[uint8]uint64) Item { calls++; return Item{} },
		})
		fill(t, s)
		mustAppend(t, s, Item{Severity: 5, Payload: make([]byte, p)})
		if calls != 1 {
			t.Fatalf("calls %d", calls)
		}
		if st := s.Stats(); st.NextSeq != 7 || st.Count != 5 {
			t.Fatalf("Stats %+v", st)
		}
	})
}

func TestNotify(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	ch := s.Notify()
	if ch != s.Notify() {
		t.Fatal("Notify returns different channels")
	}
	select {
	case <-ch:
		t.Fatal("signal before any Append")
	default:
	}
	mustAppend(t, s, item(1, "a"))
	mustAppend(t, s, item(1, "b")) // coalesced; must not block
	select {
	case <-ch:
	case <-time.After(time.Second):
		t.Fatal("no signal after Append")
	}
	select {
	case <-ch:
		t.Fatal("signals not coalesced")
	default:
	}
	_ = s.Delete([]uint64{1})
	_, _, _ = s.Append(nil)
	select {
	case <-ch:
		t.Fatal("signal without a successful non-empty Append")
	default:
	}
}

func TestConcurrentAppendReadDelete(t *testing.T) {
	s := openT(t, filepath.Join(t.TempDir(), "spool.db"), Options{})
	const writers, batches, per = 8, 20, 5
	var (
		mu   sync.Mutex
		seen = map[uint64]bool{}
		wg   sync.WaitGroup
	)
	for w := range writers {
		wg.Go(func() {
			for b := range batches {
				items := make([]Item, per)
				for i := range items {
					items[i] = Item{Severity: uint8(1 + i), Payload: fmt.Appendf(nil, "w%d b%d i%d", w, b, i)}
				}
				first, last, err := s.Append(items)
				if err != nil {
					t.Error(err)
					return
				}
				if last-first+1 != per {
					t.Errorf("non-consecutive seqs %d..%d", first, last)
				}
				mu.Lock()
				for q := first; q <= last; q++ {
					if seen[q] {
						t.Errorf("seq %d assigned twice", q)
					}
					seen[q] = true
				}
				mu.Unlock()
			}
		})
	}
	// A reader/deleter running alongside, like the uploader.
	done := make(chan struct{})
	var deleted int
	go func() {
		defer close(done)
		after := uint64(0)
		for deleted < writers*batches*per {
			recs, err := s.ReadAfter(after, 16, 0)
			if err != nil {
				t.Error(err)
				return
			}
			if len(recs) == 0 {
				time.Sleep(time.Millisecond)
				continue
			}
			if err := s.Delete(seqsOf(recs)); err != nil {
				t.Error(err)
				return
			}
			deleted += len(recs)
			after = recs[len(recs)-1].Seq
		}
	}()
	wg.Wait()
	select {
	case <-done:
	case <-time.After(30 * time.Second):
		t.Fatal("reader did not drain the spool")
	}
	if len(seen) != writers*batches*per {
		t.Fatalf("%d seqs", len(seen))
	}
	for q := uint64(1); q <= writers*batches*per; q++ {
		if !seen[q] {
			t.Fatalf("seq %d never assigned", q)
		}
	}
	if st := s.Stats(); st.Count != 0 || st.Bytes != 0 || st.NextSeq != writers*batches*per+1 {
		t.Fatalf("Stats %+v", st)
	}
}

func TestFileMode(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spool.db")
	s := openT(t, path, Options{})
	fi, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Fatalf("mode %v, want 0600", fi.Mode().Perm())
	}
	_ = s.Close()

	// Parent directory must exist.
	if _, err := Open(filepath.Join(dir, "missing", "spool.db"), Options{}); err == nil {
		t.Fatal("Open with a missing parent directory succeeded")
	}
	if _, err := Open(filepath.Join(dir, "x.db"), Options{MaxBytes: RecordOverhead - 1}); err == nil {
		t.Fatal("Open with absurd MaxBytes succeeded")
	}
}

func TestSecondOpenFails(t *testing.T) {
	path := filepath.Join(t.TempDir(), "spool.db")
	s := openT(t, path, Options{})
	mustAppend(t, s, item(1, "a"))

	start := time.Now()
	s2, err := Open(path, Options{})
	elapsed := time.Since(start)
	if err == nil {
		_ = s2.Close()
		t.Fatal("second Open of a locked spool succeeded")
	}
	if !errors.Is(err, ErrLocked) || !strings.Contains(err.Error(), "spool is locked by another process") {
		t.Fatalf("error %q does not say the spool is locked", err)
	}
	if elapsed > 1500*time.Millisecond {
		t.Fatalf("second Open took %v", elapsed)
	}

	// And from a genuinely separate process.
	cmd := helperCommand(t, path, "open")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("helper: %v\n%s", err, out)
	}
	line := strings.TrimSpace(string(out))
	if !strings.Contains(line, "spool is locked by another process") {
		t.Fatalf("child Open result %q", line)
	}
	ms, _ := strconv.Atoi(line[strings.LastIndexByte(line, '|')+1:])
	if ms > 1500 {
		t.Fatalf("child Open took %dms", ms)
	}

	// The first spool is unaffected.
	if _, _, err := s.Append([]Item{item(1, "b")}); err != nil {
		t.Fatal(err)
	}
}

const (
	envHelperPath = "VIGIL_SPOOL_HELPER_PATH"
	envHelperMode = "VIGIL_SPOOL_HELPER_MODE"
)

func helperCommand(t *testing.T, path, mode string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.count=1")
	cmd.Env = append(os.Environ(), envHelperPath+"="+path, envHelperMode+"="+mode)
	return cmd
}

// TestHelperProcess is not a real test: it is the child process body for
// TestCrashDurability and TestSecondOpenFails.
func TestHelperProcess(t *testing.T) {
	path := os.Getenv(envHelperPath)
	if path == "" {
		t.Skip("helper process only")
	}
	switch os.Getenv(envHelperMode) {
	case "append":
		s, err := Open(path, Options{})
		if err != nil {
			fmt.Fprintln(os.Stderr, "open:", err)
			os.Exit(2)
		}
		for i := 0; ; i++ {
			items := make([]Item, 1+i%5)
			for j := range items {
				items[j] = Item{Severity: uint8(1 + (i+j)%5), Payload: fmt.Appendf(nil, "finding %d/%d %s", i, j, strings.Repeat("x", 200))}
			}
			_, last, err := s.Append(items)
			if err != nil {
				fmt.Fprintln(os.Stderr, "append:", err)
				os.Exit(3)
			}
			// One write(2) per line, after Append has returned.
			if _, err := fmt.Fprintf(os.Stdout, "%d\n", last); err != nil {
				os.Exit(4)
			}
		}
	case "open":
		start := time.Now()
		s, err := Open(path, Options{})
		if err == nil {
			_ = s.Close()
		}
		fmt.Printf("%v|%d\n", err, time.Since(start).Milliseconds())
		os.Exit(0)
	default:
		os.Exit(5)
	}
}

func TestCrashDurability(t *testing.T) {
	if testing.Short() {
		t.Skip("spawns a child process")
	}
	path := filepath.Join(t.TempDir(), "spool.db")
	var maxPrinted uint64
	var printed []uint64

	for round := range 2 { // second round: crash again after recovery
		cmd := helperCommand(t, path, "append")
		var stderr bytes.Buffer
		cmd.Stderr = &stderr
		stdout, err := cmd.StdoutPipe()
		if err != nil {
			t.Fatal(err)
		}
		if err := cmd.Start(); err != nil {
			t.Fatal(err)
		}
		firstLine := make(chan struct{})
		readDone := make(chan []uint64)
		go func() {
			var got []uint64
			br := bufio.NewReader(stdout)
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					break // a fragment without '\n' is ignored
				}
				n, perr := strconv.ParseUint(strings.TrimSpace(line), 10, 64)
				if perr != nil {
					continue
				}
				if len(got) == 0 {
					close(firstLine)
				}
				got = append(got, n)
			}
			_, _ = io.Copy(io.Discard, stdout)
			readDone <- got
		}()
		select {
		case <-firstLine:
		case <-time.After(20 * time.Second):
			_ = cmd.Process.Kill()
			<-readDone
			_ = cmd.Wait()
			t.Fatalf("child printed nothing; stderr:\n%s", stderr.String())
		}
		time.Sleep(200 * time.Millisecond)
		if err := cmd.Process.Kill(); err != nil { // SIGKILL
			t.Fatal(err)
		}
		got := <-readDone
		_ = cmd.Wait()
		if len(got) == 0 {
			t.Fatal("no seqs printed")
		}
		printed = append(printed, got...)
		for _, n := range got {
			if n <= maxPrinted {
				t.Fatalf("round %d: child printed seq %d after %d", round, n, maxPrinted)
			}
			maxPrinted = n
		}

		s, err := Open(path, Options{})
		if err != nil {
			t.Fatalf("reopen after SIGKILL: %v", err)
		}
		recs, err := s.ReadAfter(0, 0, 0)
		if err != nil {
			t.Fatal(err)
		}
		present := make(map[uint64]bool, len(recs))
		for i, r := range recs {
			if r.Seq != uint64(i+1) {
				t.Fatalf("round %d: gap: record %d has seq %d", round, i, r.Seq)
			}
			if !strings.HasPrefix(string(r.Payload), "finding ") {
				t.Fatalf("seq %d: corrupt payload %q", r.Seq, r.Payload)
			}
			present[r.Seq] = true
		}
		for _, n := range printed {
			if !present[n] {
				t.Fatalf("round %d: seq %d was acknowledged by Append but is missing after SIGKILL (have 1..%d)", round, n, len(recs))
			}
		}
		maxPresent := uint64(len(recs))
		st := s.Stats()
		if st.Count != len(recs) || st.NextSeq != maxPresent+1 {
			t.Fatalf("round %d: Stats %+v with %d records", round, st, len(recs))
		}
		t.Logf("round %d: child acknowledged up to seq %d in %d appends; %d records survived", round, maxPrinted, len(got), len(recs))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}

	s := openT(t, path, Options{})
	maxEver := s.Stats().NextSeq - 1
	first, last := mustAppend(t, s, item(5, "after crash"), item(1, "after crash 2"))
	if first != maxEver+1 || last != first+1 || first <= maxPrinted {
		t.Fatalf("after crash: seqs %d..%d, max ever assigned %d, max printed %d", first, last, maxEver, maxPrinted)
	}
}

func BenchmarkAppend(b *testing.B) {
	for _, n := range []int{1, 100} {
		b.Run(fmt.Sprintf("batch=%d", n), func(b *testing.B) {
			s := openT(b, filepath.Join(b.TempDir(), "spool.db"), Options{})
			items := make([]Item, n)
			for i := range items {
				p := bytes.Repeat([]byte{'f'}, 300)
				items[i] = Item{Severity: uint8(1 + i%5), Payload: p}
			}
			b.SetBytes(int64(300 * n))
			b.ReportAllocs()
			for b.Loop() {
				if _, _, err := s.Append(items); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(b.N*n)/b.Elapsed().Seconds(), "items/s")
		})
	}
}
