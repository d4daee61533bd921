package executables

import (
	"context"
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

// testCheck is the check as the daemon builds it, quarantining under a
// temp state folder.
var testCheck Check

func TestMain(m *testing.M) {
	// Tests quarantine under a temp folder; the daemon passes its state dir.
	dir, err := os.MkdirTemp("", "vigil-quarantine-test")
	if err != nil {
		panic(err)
	}
	testCheck = New(Options{StateDir: dir})
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// testRule builds a rule of this kind from params YAML (a mapping body).
func testRule(t testing.TB, params string) *rules.Rule {
	t.Helper()
	var b strings.Builder
	b.WriteString("apiVersion: vigil/v1\nid: exe-test\nname: Executables test\nrationale: Test rule for the executables check.\nseverity: low\ncategory: unapproved_software\ncheck: executables\nparams:\n")
	for _, line := range strings.Split(strings.TrimRight(params, "\n"), "\n") {
		b.WriteString("  " + line + "\n")
	}
	rs, errs := rules.ParseFile("test.yaml", []byte(b.String()), checks.MustRegistry(Check{}))
	if errs != nil {
		t.Fatalf("rule: %v\n%s", errs, b.String())
	}
	return &rs[0]
}

// sink collects observations.
type sink struct {
	mu  sync.Mutex
	obs []checks.Observation
	ch  chan checks.Observation
}

func newSink() *sink { return &sink{ch: make(chan checks.Observation, 100000)} }

func (s *sink) emit(_ context.Context, _ *rules.Rule, obs ...checks.Observation) (uint64, uint64, error) {
	s.mu.Lock()
	s.obs = append(s.obs, obs...)
	s.mu.Unlock()
	for _, o := range obs {
		s.ch <- o
	}
	return 1, uint64(len(obs)), nil
}

func (s *sink) all() []checks.Observation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]checks.Observation(nil), s.obs...)
}

// waitFor returns the first observation whose details path is p.
func (s *sink) waitFor(t testing.TB, p string, within time.Duration) checks.Observation {
	t.Helper()
	deadline := time.After(within)
	for _, o := range s.all() {
		if o.Details["path"] == p {
			return o
		}
	}
	for {
		select {
		case o := <-s.ch:
			if o.Details["path"] == p {
				return o
			}
		case <-deadline:
			t.Fatalf("no observation for %s within %v; got %d others", p, within, len(s.all()))
		}
	}
}

// startRun runs the check on rule r and returns once its folders are watched.
func startRun(t testing.TB, r ...*rules.Rule) *sink {
	t.Helper()
	s := newSink()
	ctx, cancel := context.WithCancel(context.Background())
	ready := make(chan struct{})
	testHookWatching = func() { close(ready) }
	done := make(chan error, 1)
	go func() { done <- testCheck.Run(ctx, r, s.emit) }()
	select {
	case <-ready:
	case err := <-done:
		t.Fatalf("Run returned early: %v", err)
	case <-time.After(10 * time.Second):
		t.Fatal("watcher not ready")
	}
	testHookWatching = nil
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Error("Run did not stop")
		}
	})
	return s
}

// minimalPE is the smallest header Detect calls PE: "MZ", e_lfanew -> "PE\0\0",
// a COFF header and a PE32+ optional header with 16 data directories.
func minimalPE() []byte {
	b := make([]byte, 0x200)
	copy(b, "MZ")
	binary.LittleEndian.PutUint32(b[0x3c:], 0x80)
	copy(b[0x80:], "PE\x00\x00")
	binary.LittleEndian.PutUint16(b[0x84:], 0x8664)   // machine
	binary.LittleEndian.PutUint16(b[0x84+16:], 0xf0)  // SizeOfOptionalHeader
	binary.LittleEndian.PutUint16(b[0x84+20:], 0x20b) // PE32+
	return b
}

func sha(b []byte) string {
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])
}

func writeFile(t testing.TB, p string, data []byte, mode os.FileMode) {
	t.Helper()
	if err := os.WriteFile(p, data, mode); err != nil {
		t.Fatal(err)
	}
}

func readELF(t testing.TB) []byte {
	t.Helper()
	for _, p := range []string{"/bin/true", "/usr/bin/true"} {
		if b, err := os.ReadFile(p); err == nil {
			return b
		}
	}
	t.Skip("no /bin/true")
	return nil
}

func yamlQuote(p string) string {
	return "'" + strings.ReplaceAll(filepath.ToSlash(p), "'", "''") + "'"
}
