package executables

import (
	"fmt"
	"os"
	"path/filepath"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

func watchParams(dir, extra string) string {
	return fmt.Sprintf("paths: [%s]\nprocesses: false\nsoftware: false\n%s", yamlQuote(dir), extra)
}

// A real ELF, a crafted PE and a shell script dropped into a watched
// folder are each reported within 2 s with their SHA-256; a text file
// named .exe is not.
func TestWatchReportsExecutables(t *testing.T) {
	dir := t.TempDir()
	s := startRun(t, testRule(t, watchParams(dir, "")))
	elf, pe, script := readELF(t), minimalPE(), []byte("#!/bin/sh\necho hi\n")
	files := []struct {
		name, typ string
		data      []byte
	}{
		{"fake.exe", "", []byte("this is just text, not an MZ header\n")},
		{"tool", TypeELF, elf},
		{"setup.exe", TypePE, pe},
		{"run.sh", TypeScript, script},
	}
	for _, f := range files {
		writeFile(t, filepath.Join(dir, f.name), f.data, 0o755)
	}
	for _, f := range files[1:] {
		p := filepath.Join(dir, f.name)
		o := s.waitFor(t, p, 2*time.Second)
		if o.Details["sha256"] != sha(f.data) || o.Details["type"] != f.typ || o.Key != p+":"+sha(f.data) {
			t.Errorf("%s: %+v", f.name, o)
		}
		if o.Details["size"] != int64(len(f.data)) || o.Details["action_taken"] != "alert" || o.Severity != 0 {
			t.Errorf("%s: details %v severity %v", f.name, o.Details, o.Severity)
		}
		if want := "unapproved executable found: " + p; len(o.Message) < len(want) || o.Message[:len(want)] != want {
			t.Errorf("message %q", o.Message)
		}
	}
	time.Sleep(700 * time.Millisecond)
	for _, o := range s.all() {
		if o.Details["name"] == "fake.exe" {
			t.Errorf("text file named .exe reported: %+v", o)
		}
	}
	if n := len(s.all()); n != 3 {
		t.Errorf("%d observations, want 3", n)
	}
}

// An allow-listed hash gives no finding; a deny entry by name glob gives
// its category, reason and severity; an allowed name does not hide a
// denied hash.
func TestWatchAllowDeny(t *testing.T) {
	dir := t.TempDir()
	allowed := []byte("#!/bin/sh\necho allowed\n")
	deniedHash := []byte("#!/bin/sh\necho denied by hash\n")
	params := watchParams(dir, fmt.Sprintf(`allow:
  - {sha256: %s, reason: approved school tool}
  - {name: "school-*", reason: school scripts}
deny:
  - {name: "tor*", category: filter_bypass, severity: high, reason: Tor Browser bypasses the school filter}
  - {sha256: %s, reason: known bad build}
`, sha(allowed), sha(deniedHash)))
	s := startRun(t, testRule(t, params))
	writeFile(t, filepath.Join(dir, "anything.sh"), allowed, 0o755)
	writeFile(t, filepath.Join(dir, "tor-browser.exe"), minimalPE(), 0o755)
	writeFile(t, filepath.Join(dir, "school-denied.sh"), deniedHash, 0o755)
	writeFile(t, filepath.Join(dir, "school-ok.sh"), []byte("#!/bin/sh\necho ok\n"), 0o755)

	o := s.waitFor(t, filepath.Join(dir, "tor-browser.exe"), 2*time.Second)
	m, _ := o.Details["matched"].(map[string]any)
	if m["category"] != "filter_bypass" || m["list"] != "deny" || m["reason"] != "Tor Browser bypasses the school filter" || o.Severity.String() != "high" {
		t.Errorf("denied: %+v", o)
	}
	want := "denied executable (filter_bypass): " + filepath.Join(dir, "tor-browser.exe")
	if len(o.Message) < len(want) || o.Message[:len(want)] != want {
		t.Errorf("message %q", o.Message)
	}
	o = s.waitFor(t, filepath.Join(dir, "school-denied.sh"), 2*time.Second)
	if m, _ := o.Details["matched"].(map[string]any); m["reason"] != "known bad build" || m["category"] != "unapproved_software" {
		t.Errorf("hash deny beats name allow: %+v", o)
	}
	time.Sleep(800 * time.Millisecond)
	if n := len(s.all()); n != 2 {
		t.Errorf("%d observations, want 2 (allowed hash and allowed name silent): %+v", n, s.all())
	}
}

// action: quarantine moves the file out of the watched folder into the
// store, with metadata, and Restore brings it back.
func TestWatchQuarantine(t *testing.T) {
	dir := t.TempDir()
	s := startRun(t, testRule(t, watchParams(dir, "action: quarantine\n")))
	p := filepath.Join(dir, "payload.exe")
	data := minimalPE()
	writeFile(t, p, data, 0o755)
	o := s.waitFor(t, p, 2*time.Second)
	id, _ := o.Details["quarantine_id"].(string)
	if o.Details["action_taken"] != "quarantined" || id == "" {
		t.Fatalf("not quarantined: %+v", o)
	}
	if _, err := os.Lstat(p); !os.IsNotExist(err) {
		t.Errorf("still at source: %v", err)
	}
	store := testCheck.Quarantine()
	ents, err := store.List()
	if err != nil {
		t.Fatal(err)
	}
	var found *Entry
	for i := range ents {
		if ents[i].ID == id {
			found = &ents[i]
		}
	}
	if found == nil || found.OriginalPath != p || found.SHA256 != sha(data) || found.RuleID != "exe-test" || found.Reason != "unapproved" {
		t.Fatalf("entry: %+v", found)
	}
	got, err := store.Restore(id)
	if err != nil || got != p {
		t.Fatalf("restore: %v %v", got, err)
	}
	if b, _ := os.ReadFile(p); sha(b) != sha(data) {
		t.Error("restored content differs")
	}
}

// 10,000 files, 100 of them executables, created as fast as possible in a
// watched folder: every executable is reported exactly once.
func TestStormMissesNothing(t *testing.T) {
	if testing.Short() {
		t.Skip("storm")
	}
	dir := t.TempDir()
	s := startRun(t, testRule(t, watchParams(dir, "")))
	start := time.Now()
	want := storm(t, dir, 10000, 100)
	t.Logf("created 10000 files in %v", time.Since(start))
	got := map[string]int{}
	deadline := time.After(60 * time.Second)
	for len(got) < len(want) {
		select {
		case o := <-s.ch:
			p, _ := o.Details["path"].(string)
			if !want[p] {
				t.Fatalf("unexpected report %s", p)
			}
			got[p]++
		case <-deadline:
			t.Fatalf("after 60 s: %d of %d executables reported", len(got), len(want))
		}
	}
	t.Logf("all %d executables among 10000 files reported in %v", len(want), time.Since(start))
	time.Sleep(time.Second)
	for _, o := range s.all() {
		got[o.Details["path"].(string)]++
	}
	for p, n := range got {
		if n != 2 { // counted once from the channel and once from all()
			t.Errorf("%s reported %d times", p, n/2)
		}
	}
}

// storm creates n files in dir, exe of them executables, and returns the
// executables' paths.
func storm(t testing.TB, dir string, n, exe int) map[string]bool {
	want := map[string]bool{}
	every := n / exe
	for i := 0; i < n; i++ {
		p := filepath.Join(dir, fmt.Sprintf("f%05d", i))
		data := []byte(fmt.Sprintf("plain data %d\n", i))
		if i%every == 0 {
			p += ".bin"
			data = []byte(fmt.Sprintf("\x7fELF fake executable %d\n", i))
			want[p] = true
		}
		writeFile(t, p, data, 0o644)
	}
	return want
}

// BenchmarkStorm: time from the first of 10,000 files (1% executables)
// being created until every executable is reported; allocations are the
// whole process's, including creating the files.
func BenchmarkStorm(b *testing.B) {
	b.ReportAllocs()
	var peak atomic.Uint64
	stop := make(chan struct{})
	go func() {
		var ms runtime.MemStats
		for {
			select {
			case <-stop:
				return
			case <-time.After(20 * time.Millisecond):
			}
			runtime.ReadMemStats(&ms)
			if ms.HeapInuse > peak.Load() {
				peak.Store(ms.HeapInuse)
			}
		}
	}()
	defer close(stop)
	var tail time.Duration
	for i := 0; i < b.N; i++ {
		b.StopTimer()
		dir := b.TempDir()
		s := startRun(b, testRule(b, watchParams(dir, "")))
		b.StartTimer()
		want := storm(b, dir, 10000, 100)
		created := time.Now()
		for seen := 0; seen < len(want); seen++ {
			select {
			case <-s.ch:
			case <-time.After(60 * time.Second):
				b.Fatalf("only %d of %d reported", seen, len(want))
			}
		}
		tail += time.Since(created)
	}
	b.ReportMetric(float64(peak.Load())/(1<<20), "MiB-peak-heap")
	b.ReportMetric(float64(tail.Milliseconds())/float64(b.N), "ms-after-last-file")
}
