package session

import (
	"bytes"
	"context"
	"fmt"
	"image"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/screen"

	"github.com/vigil-safeguarding/vigil/internal/testutil"
)

// fakeSource is a desktop whose windows the test sets.
type fakeSource struct {
	wins  chan screen.Window
	mu    sync.Mutex
	shots int
}

func (s *fakeSource) Watch(ctx context.Context, fn func(screen.Window)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case w := <-s.wins:
			fn(w)
		}
	}
}

func (s *fakeSource) Screenshot(ctx context.Context) (image.Image, error) {
	s.mu.Lock()
	s.shots++
	s.mu.Unlock()
	return image.NewRGBA(image.Rect(0, 0, 1600, 900)), nil
}

func (s *fakeSource) Close() error { return nil }

// fakeService answers observations with a fixed decision and records what
// the helper sends.
type fakeService struct {
	mu       sync.Mutex
	decision Decision
	ocrAns   Decision
	texts    []OCRText
	evidence [][]byte
	uploads  []Evidence
	observed []string // titles answered, in order
	windows  []screen.Window
}

func (f *fakeService) Observe(ctx context.Context, p Peer, w screen.Window) (Decision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.observed = append(f.observed, w.Title)
	f.windows = append(f.windows, w)
	return f.decision, nil
}

// answered reports whether an observation of title has been answered.
func (f *fakeService) answered(title string) bool {
	f.mu.Lock()
	defer f.mu.Unlock()
	for _, t := range f.observed {
		if t == title {
			return true
		}
	}
	return false
}

func (f *fakeService) Evidence(ctx context.Context, p Peer, token string, e Evidence) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.evidence = append(f.evidence, e.Data)
	f.uploads = append(f.uploads, e)
	return nil
}

func (f *fakeService) OCR(ctx context.Context, p Peer, t OCRText) (Decision, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.texts = append(f.texts, t)
	return f.ocrAns, nil
}

func (f *fakeService) got() ([]OCRText, int) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]OCRText(nil), f.texts...), len(f.evidence)
}

// fakeTesseract puts a tesseract on PATH that counts its runs in
// dir/runs and prints text.
func fakeTesseract(t *testing.T, text string) (runs func() int) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("shell script stand-in")
	}
	dir := t.TempDir()
	script := "#!/bin/sh\ncat > /dev/null\necho run >> " + filepath.Join(dir, "runs") + "\nprintf '" + text + "'\n"
	if err := os.WriteFile(filepath.Join(dir, "tesseract"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return func() int {
		b, _ := os.ReadFile(filepath.Join(dir, "runs"))
		return bytes.Count(b, []byte("run"))
	}
}

type syncBuf = testutil.SyncBuffer

// startHelper serves svc on a socket and runs a helper on src against it.
func startHelper(t *testing.T, svc Handler, src screen.Source) *syncBuf {
	t.Helper()
	old := ocrSettle
	ocrSettle = 50 * time.Millisecond
	t.Cleanup(func() { ocrSettle = old })
	sock := testEndpoint(t)
	logs := &syncBuf{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	wg.Go(func() { NewServer(svc, selfProbe(t), log).ListenAndServe(ctx, sock) })
	// Root is admitted for any display; other users need a session on it.
	wg.Go(func() { runHelper(ctx, src, HelperOptions{Socket: sock, Display: ":99"}, log) })
	return logs
}

// liveness bounds every wait: the fake tesseract is a shell script, and on
// a busy 2-core CI machine starting one can take seconds. Waits poll a
// condition; the bound only says "it happened at all".
const liveness = 60 * time.Second

func eventually(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(liveness); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHelperOCR: a decision asking for OCR makes the helper read the screen
// once and report the text under the active window; the service's Capture
// in its answer gets the frame that was read as evidence.
func TestHelperOCR(t *testing.T) {
	runs := fakeTesseract(t, "how to\\nkill myself\\n")
	svc := &fakeService{
		decision: Decision{OCR: true, OCRMinIntervalMS: 1000},
		ocrAns:   Decision{OCRMinIntervalMS: 1000, Capture: true, Token: "t1", MaxWidth: 960, Recipient: "age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p"},
	}
	src := &fakeSource{wins: make(chan screen.Window, 1)}
	startHelper(t, svc, src)
	src.wins <- screen.Window{ID: 5, Title: "Notes", Process: "xterm"}
	eventually(t, "OCR text and evidence at the service", func() bool {
		texts, ev := svc.got()
		return len(texts) == 1 && ev == 1
	})
	texts, _ := svc.got()
	if texts[0].Text != "how to\nkill myself\n" || texts[0].Window.ID != 5 || texts[0].Window.Title != "Notes" {
		t.Errorf("reported %+v", texts[0])
	}
	src.mu.Lock()
	shots := src.shots
	src.mu.Unlock()
	if shots != 1 || runs() != 1 {
		t.Errorf("%d screenshots, %d tesseract runs; want 1 and 1 (the evidence is the frame that was read)", shots, runs())
	}
}

// TestHelperOCRRateLimited: title changes every 20 ms for 1.5 s with a
// 500 ms minimum interval are read at most once per 500 ms (about 4
// reads), and the last window is read after the changes stop. The bound is
// computed from the time that actually passed, so a slow machine (fewer,
// later reads) cannot fail it and a broken limit (a read per change) does.
func TestHelperOCRRateLimited(t *testing.T) {
	runs := fakeTesseract(t, "text\\n")
	svc := &fakeService{decision: Decision{OCR: true, OCRMinIntervalMS: 500}, ocrAns: Decision{OCRMinIntervalMS: 500}}
	src := &fakeSource{wins: make(chan screen.Window)}
	startHelper(t, svc, src)
	start := time.Now()
	i := 0
	for time.Since(start) < 1500*time.Millisecond {
		src.wins <- screen.Window{ID: 1, Title: "title " + strings.Repeat("x", i%5)}
		i++
		time.Sleep(20 * time.Millisecond)
	}
	src.wins <- screen.Window{ID: 2, Title: "last"}
	eventually(t, "the last window read", func() bool {
		texts, _ := svc.got()
		return len(texts) > 0 && texts[len(texts)-1].Window.Title == "last"
	})
	elapsed := time.Since(start)
	// Reads start at least 500 ms apart: in elapsed there is room for
	// elapsed/500ms + 1 of them.
	limit := int(elapsed/(500*time.Millisecond)) + 1
	if n := runs(); n < 1 || n > limit {
		t.Errorf("%d reads for %d title changes in %v at 500ms minimum, want 1..%d", n, i+1, elapsed.Round(time.Millisecond), limit)
	} else {
		t.Logf("%d reads for %d title changes in %v", n, i+1, elapsed.Round(time.Millisecond))
	}
}

// TestHelperOCRInterval: on a schedule the helper reads without title
// changes; a decision without OCR settings stops it.
func TestHelperOCRInterval(t *testing.T) {
	runs := fakeTesseract(t, "text\\n")
	svc := &fakeService{decision: Decision{OCREveryMS: 100, OCRMinIntervalMS: 100}, ocrAns: Decision{OCREveryMS: 100, OCRMinIntervalMS: 100}}
	src := &fakeSource{wins: make(chan screen.Window)}
	startHelper(t, svc, src)
	src.wins <- screen.Window{ID: 1, Title: "a"}
	eventually(t, "three scheduled reads", func() bool { return runs() >= 3 })
	svc.mu.Lock()
	svc.decision, svc.ocrAns = Decision{}, Decision{}
	svc.mu.Unlock()
	src.wins <- screen.Window{ID: 1, Title: "b"}
	eventually(t, "the decision turning OCR off answered", func() bool { return svc.answered("b") })
	// A read in flight when OCR was turned off may finish (and one whose
	// answer raced the new decision may start one more). Wait, however long
	// that takes, for OCR to go quiet: no read in flight and none started
	// for a second, ten times the 100 ms schedule. With OCR still on it
	// never goes quiet and this times out.
	shots := func() (started, reported int) {
		src.mu.Lock()
		defer src.mu.Unlock()
		texts, _ := svc.got()
		return src.shots, len(texts)
	}
	var quietSince time.Time
	last := -1
	eventually(t, "OCR to stop reading after it was turned off", func() bool {
		started, reported := shots()
		if started != last || started != reported {
			last, quietSince = started, time.Now()
			return false
		}
		return time.Since(quietSince) >= time.Second
	})
	if started, _ := shots(); started != last {
		t.Errorf("%d reads after OCR went quiet", started-last)
	}
}

// TestHelperOCRMissingTesseract: without tesseract the helper says so once
// and stops trying; titles are still reported.
func TestHelperOCRMissingTesseract(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	svc := &fakeService{decision: Decision{OCR: true, OCRMinIntervalMS: 10}}
	src := &fakeSource{wins: make(chan screen.Window)}
	logs := startHelper(t, svc, src)
	src.wins <- screen.Window{ID: 1, Title: "t0"}
	eventually(t, "the warning about tesseract", func() bool { return strings.Contains(logs.String(), "cannot run here") })
	// More decisions asking for OCR after the warning: no second try.
	for i := 1; i < 5; i++ {
		src.wins <- screen.Window{ID: 1, Title: fmt.Sprintf("t%d", i)}
	}
	eventually(t, "the last window answered", func() bool { return svc.answered("t4") })
	time.Sleep(200 * time.Millisecond) // 20 times the 10 ms interval: a retry would have started
	if n := strings.Count(logs.String(), "cannot run here"); n != 1 {
		t.Errorf("%d warnings about missing tesseract, want 1:\n%s", n, logs.String())
	}
	src.mu.Lock()
	defer src.mu.Unlock()
	if src.shots != 0 {
		t.Errorf("%d screenshots for OCR without tesseract", src.shots)
	}
}

// TestHelperNoOCRByDefault: decisions without OCR settings never start
// tesseract.
func TestHelperNoOCRByDefault(t *testing.T) {
	runs := fakeTesseract(t, "text\\n")
	svc := &fakeService{}
	src := &fakeSource{wins: make(chan screen.Window)}
	startHelper(t, svc, src)
	for i := 0; i < 5; i++ {
		src.wins <- screen.Window{ID: 1, Title: fmt.Sprintf("t%d", i)}
	}
	eventually(t, "the last window answered", func() bool { return svc.answered("t4") })
	// Nothing should happen, so only a wait can show it did not: six times
	// the settle time a read would wait (a slow machine can only make
	// this pass wrongly, never fail wrongly).
	time.Sleep(300 * time.Millisecond)
	if n := runs(); n != 0 {
		t.Errorf("%d tesseract runs with OCR off", n)
	}
}

func TestCutText(t *testing.T) {
	for _, c := range []struct {
		in   string
		max  int
		want string
	}{
		{"short", 10, "short"},
		{"line one\nline two", 12, "line one\n"},
		{"abcdé", 5, "abcd"}, // é is 2 bytes: not cut in half
		{"abcdé", 6, "abcdé"},
	} {
		if got := cutText(c.in, c.max); got != c.want {
			t.Errorf("cutText(%q, %d) = %q, want %q", c.in, c.max, got, c.want)
		}
	}
}
