package spool

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	bolt "go.etcd.io/bbolt"
)

// damageReport stores the Damage as JSON so tests can read it back.
func damageReport(d Damage) Item {
	b, _ := json.Marshal(d)
	return Item{Severity: MaxSeverity, Payload: append([]byte("DAMAGE "), b...)}
}

func findDamage(t *testing.T, recs []Record) (Damage, bool) {
	t.Helper()
	for _, r := range recs {
		if p, ok := bytes.CutPrefix(r.Payload, []byte("DAMAGE ")); ok {
			var d Damage
			if err := json.Unmarshal(p, &d); err != nil {
				t.Fatalf("damage report: %v", err)
			}
			return d, true
		}
	}
	return Damage{}, false
}

const secretTitle = "Secret window title: how to hurt myself - Private Browsing"

// buildSpool writes a spool with records over several pages, some deleted
// (so the file has free pages), and returns the records left.
func buildSpool(t *testing.T, dir string) map[uint64][]byte {
	left, _ := buildSpoolAll(t, dir)
	return left
}

// buildSpoolAll also returns every record ever written: a recovery from an
// older meta page may bring back records deleted since (acked ones, which
// the collector drops as duplicates), never anything else.
func buildSpoolAll(t *testing.T, dir string) (left, all map[uint64][]byte) {
	t.Helper()
	s, err := Open(filepath.Join(dir, "spool.db"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	all = map[uint64][]byte{}
	for i := range 60 {
		p := fmt.Sprintf("%s #%d %s", secretTitle, i, strings.Repeat("x", i*37%400))
		seq, _ := mustAppend(t, s, Item{Severity: uint8(i%5 + 1), Payload: []byte(p)})
		all[seq] = []byte(p)
	}
	if err := s.Delete([]uint64{3, 4, 5, 20, 21, 40}); err != nil {
		t.Fatal(err)
	}
	want := map[uint64][]byte{}
	for _, r := range readAll(t, s) {
		want[r.Seq] = r.Payload
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return want, all
}

func copyDir(t *testing.T, from, to string) {
	t.Helper()
	for _, n := range []string{"spool.db", "spool.key"} {
		b, err := os.ReadFile(filepath.Join(from, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}

// TestByteFlipsNeverPanic flips one byte at offsets through the whole file.
// Every Open must succeed, either intact (every record as written) or
// recovered: file quarantined, a damage report in the fresh spool, and
// every salvaged record exactly as written. Before the fix bbolt panicked
// (or faulted) at Open for flips in page headers and element tables.
func TestByteFlipsNeverPanic(t *testing.T) {
	src := t.TempDir()
	want, all := buildSpoolAll(t, src)
	fi, err := os.Stat(filepath.Join(src, "spool.db"))
	if err != nil {
		t.Fatal(err)
	}
	size := fi.Size()
	// Every 16th byte of both meta pages and the first data pages, then a
	// stride through the rest (about 400 cases in all).
	var offsets []int64
	for off := int64(0); off < min(size, 6*4096); off += 61 {
		offsets = append(offsets, off)
	}
	for off := int64(6 * 4096); off < size; off += max(size/200, 1) {
		offsets = append(offsets, off)
	}
	var intact, recovered int
	for _, off := range offsets {
		dir := t.TempDir()
		copyDir(t, src, dir)
		path := filepath.Join(dir, "spool.db")
		f, err := os.OpenFile(path, os.O_RDWR, 0)
		if err != nil {
			t.Fatal(err)
		}
		b := make([]byte, 1)
		if _, err := f.ReadAt(b, off); err != nil {
			t.Fatal(err)
		}
		b[0] ^= 0xA5
		if _, err := f.WriteAt(b, off); err != nil {
			t.Fatal(err)
		}
		f.Close()

		s, err := Open(path, Options{DamageReport: damageReport})
		if err != nil {
			t.Fatalf("offset %d: Open: %v", off, err)
		}
		recs := readAll(t, s)
		st := s.Stats()
		d, reported := findDamage(t, recs)
		if st.LastError == "" {
			intact++
			if reported || len(recs) != len(want) {
				t.Errorf("offset %d: opened as intact with %d records (want %d), report %v", off, len(recs), len(want), reported)
			}
		} else {
			recovered++
			if !reported {
				t.Errorf("offset %d: recovered (%s) without a damage report", off, st.LastError)
			}
			if _, err := os.Stat(d.Quarantine); err != nil {
				t.Errorf("offset %d: quarantined file: %v", off, err)
			}
			if d.Salvaged != len(recs)-1 {
				t.Errorf("offset %d: report says %d salvaged, spool holds %d", off, d.Salvaged, len(recs)-1)
			}
		}
		for _, r := range recs {
			if w, ok := all[r.Seq]; ok && !bytes.Equal(w, r.Payload) {
				t.Errorf("offset %d: record %d changed", off, r.Seq)
			} else if !ok && !bytes.HasPrefix(r.Payload, []byte("DAMAGE ")) {
				t.Errorf("offset %d: unknown record %d", off, r.Seq)
			}
		}
		// The spool works on, above every seq the old file used.
		first, _, err := s.Append([]Item{item(3, "after")})
		if err != nil {
			t.Fatalf("offset %d: Append after open: %v", off, err)
		}
		if first <= 60 {
			t.Errorf("offset %d: new seq %d reuses the old file's range", off, first)
		}
		if err := s.Close(); err != nil {
			t.Errorf("offset %d: Close: %v", off, err)
		}
		// And a recovered spool is itself intact.
		s2, err := Open(path, Options{DamageReport: damageReport})
		if err != nil {
			t.Fatalf("offset %d: reopen: %v", off, err)
		}
		if st := s2.Stats(); st.LastError != "" {
			t.Errorf("offset %d: recovered spool damaged again on reopen: %s", off, st.LastError)
		}
		s2.Close()
	}
	t.Logf("%d byte flips over %d bytes: %d opened intact, %d recovered with a report, 0 panics", len(offsets), size, intact, recovered)
	if recovered == 0 {
		t.Error("no flip was detected as damage")
	}
}

func TestWrongKeyIsDamageNotPanic(t *testing.T) {
	dir := t.TempDir()
	want := buildSpool(t, dir)
	keyPath := filepath.Join(dir, "spool.key")

	t.Run("other key", func(t *testing.T) {
		d := t.TempDir()
		copyDir(t, dir, d)
		if err := os.WriteFile(filepath.Join(d, "spool.key"), bytes.Repeat([]byte{7}, KeySize), 0o600); err != nil {
			t.Fatal(err)
		}
		s := openT(t, filepath.Join(d, "spool.db"), Options{DamageReport: damageReport})
		rep, ok := findDamage(t, readAll(t, s))
		if !ok || rep.Salvaged != 0 || rep.Lost != int64(len(want)) {
			t.Fatalf("damage report %+v (found %v), want 0 salvaged, %d lost", rep, ok, len(want))
		}
		if !strings.Contains(rep.Reason, "authenticate") {
			t.Errorf("reason %q does not say the records do not authenticate", rep.Reason)
		}
		if st := s.Stats(); !strings.Contains(st.LastError, "damaged") || st.DroppedTotal < uint64(len(want)) {
			t.Errorf("Stats %+v", st)
		}
	})
	t.Run("key file damaged", func(t *testing.T) {
		d := t.TempDir()
		copyDir(t, dir, d)
		if err := os.WriteFile(filepath.Join(d, "spool.key"), []byte("short"), 0o600); err != nil {
			t.Fatal(err)
		}
		s := openT(t, filepath.Join(d, "spool.db"), Options{DamageReport: damageReport})
		rep, ok := findDamage(t, readAll(t, s))
		if !ok || !rep.KeyReplaced || rep.Salvaged != 0 {
			t.Fatalf("damage report %+v (found %v)", rep, ok)
		}
		k, err := os.ReadFile(filepath.Join(d, "spool.key"))
		if err != nil || len(k) != KeySize {
			t.Fatalf("new key: %d bytes, %v", len(k), err)
		}
		if m, _ := filepath.Glob(filepath.Join(d, "spool.key.damaged-*")); len(m) != 1 {
			t.Errorf("damaged key not kept aside: %v", m)
		}
	})
	t.Run("key file missing", func(t *testing.T) {
		d := t.TempDir()
		copyDir(t, dir, d)
		os.Remove(filepath.Join(d, "spool.key"))
		s := openT(t, filepath.Join(d, "spool.db"), Options{DamageReport: damageReport})
		if rep, ok := findDamage(t, readAll(t, s)); !ok || rep.Lost != int64(len(want)) {
			t.Fatalf("damage report %+v (found %v)", rep, ok)
		}
	})
	_ = keyPath
}

// TestPayloadsSealedAtRest: what checks put in findings (window titles,
// terms, user names) is not in the file's bytes; the key file is 0600.
func TestPayloadsSealedAtRest(t *testing.T) {
	dir := t.TempDir()
	want := buildSpool(t, dir)
	raw, err := os.ReadFile(filepath.Join(dir, "spool.db"))
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(raw, []byte("Secret window title")) || bytes.Contains(raw, []byte("hurt myself")) {
		t.Fatal("a finding's title is in the spool file in plaintext")
	}
	fi, err := os.Stat(filepath.Join(dir, "spool.key"))
	if err != nil || fi.Mode().Perm() != 0o600 || fi.Size() != KeySize {
		t.Fatalf("key file: %v %v", fi, err)
	}
	s := openT(t, filepath.Join(dir, "spool.db"), Options{})
	if got := readAll(t, s); len(got) != len(want) || !bytes.Equal(got[0].Payload, want[got[0].Seq]) {
		t.Fatalf("read back %d records", len(got))
	}
}

// TestPlaintextSpoolSealedOnUpgrade: a file written before sealing (records
// as severity|payload, no cipher marker) opens with every record, sealed.
func TestPlaintextSpoolSealedOnUpgrade(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "spool.db")
	db, err := bolt.Open(path, 0o600, nil)
	if err != nil {
		t.Fatal(err)
	}
	err = db.Update(func(tx *bolt.Tx) error {
		rec, _ := tx.CreateBucket(bucketRecords)
		idx, _ := tx.CreateBucket(bucketBySev)
		meta, _ := tx.CreateBucket(bucketMeta)
		var bytesTotal int64
		for seq := uint64(1); seq <= 3; seq++ {
			p := fmt.Sprintf("old title %d", seq)
			rec.Put(seqKey(seq), append([]byte{2}, p...))
			idx.Put(sevKey(2, seq), []byte{})
			bytesTotal += recordSize(len(p))
		}
		return meta.Put(keyState, encodeState(state{nextSeq: 4, count: 3, bytes: bytesTotal}))
	})
	db.Close()
	if err != nil {
		t.Fatal(err)
	}
	s := openT(t, path, Options{})
	got := readAll(t, s)
	if len(got) != 3 || string(got[2].Payload) != "old title 3" || s.Stats().LastError != "" {
		t.Fatalf("got %v, stats %+v", got, s.Stats())
	}
	s.Close()
	s2 := openT(t, path, Options{})
	if len(readAll(t, s2)) != 3 || s2.Stats().LastError != "" {
		t.Fatalf("reopen after sealing: %+v", s2.Stats())
	}
}
