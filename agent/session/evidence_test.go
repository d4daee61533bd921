package session

import (
	"bytes"
	"context"
	"image"
	"image/color"
	"image/jpeg"
	"io"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/internal/contract"
)

// photoSource is a 1280x800 desktop showing a photograph: gradients under
// sensor noise, about 1.4 MiB as PNG at 960 pixels wide, the screenshot
// that blocked a device when the agent sent it as it was.
type photoSource struct{ fakeSource }

func (s *photoSource) Screenshot(ctx context.Context) (image.Image, error) {
	img := image.NewRGBA(image.Rect(0, 0, 1280, 800))
	rng := rand.New(rand.NewPCG(3, 4))
	for y := 0; y < 800; y++ {
		for x := 0; x < 1280; x++ {
			n := func(v int) uint8 { return uint8(min(255, max(0, v+rng.IntN(81)-40))) }
			img.SetRGBA(x, y, color.RGBA{n(x * 255 / 1280), n(y * 255 / 800), n((x + y) * 127 / 2080), 255})
		}
	}
	return img, nil
}

func waitLong(t *testing.T, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(60 * time.Second); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

func (f *fakeService) lastUpload() (Evidence, bool) {
	f.mu.Lock()
	defer f.mu.Unlock()
	if len(f.uploads) == 0 {
		return Evidence{}, false
	}
	return f.uploads[len(f.uploads)-1], true
}

// TestHelperFitsScreenshotToBudget: the helper sends a photograph on screen
// as JPEG within the budget the service names, encrypted to the recipient;
// the old helper sent ~1.4 MiB of PNG, which the collector refused.
func TestHelperFitsScreenshotToBudget(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	svc := &fakeService{decision: Decision{Capture: true, Token: "t1", MaxWidth: 960, Recipient: id.Recipient().String(), MaxBytes: contract.MaxEvidenceBytes}}
	src := &photoSource{fakeSource{wins: make(chan screen.Window, 1)}}
	startHelper(t, svc, src)
	src.wins <- screen.Window{ID: 1, Title: "holiday photos"}
	waitLong(t, "the screenshot at the service", func() bool { _, ok := svc.lastUpload(); return ok })
	ev, _ := svc.lastUpload()
	if ev.Dropped != "" || ev.MediaType != screen.MediaJPEG || len(ev.Data) > contract.MaxEvidenceBytes {
		t.Fatalf("upload: media %q, %d bytes, dropped %q", ev.MediaType, len(ev.Data), ev.Dropped)
	}
	r, err := age.Decrypt(bytes.NewReader(ev.Data), id)
	if err != nil {
		t.Fatal(err)
	}
	plain, _ := io.ReadAll(r)
	img, err := jpeg.Decode(bytes.NewReader(plain))
	if err != nil || img.Bounds().Dx() != 960 {
		t.Fatalf("decrypted evidence: %v, %v", img, err)
	}
	t.Logf("photo screenshot sent as %s, %d bytes encrypted, %v", ev.MediaType, len(ev.Data), img.Bounds())
}

// TestHelperReportsScreenshotDropped: when nothing fits, the helper says so
// at once instead of leaving the finding to wait for a screenshot.
func TestHelperReportsScreenshotDropped(t *testing.T) {
	id, _ := age.GenerateX25519Identity()
	svc := &fakeService{decision: Decision{Capture: true, Token: "t1", MaxWidth: 960, Recipient: id.Recipient().String(), MaxBytes: 4 << 10}}
	src := &photoSource{fakeSource{wins: make(chan screen.Window, 1)}}
	startHelper(t, svc, src)
	src.wins <- screen.Window{ID: 1, Title: "holiday photos"}
	waitLong(t, "the drop report at the service", func() bool { _, ok := svc.lastUpload(); return ok })
	ev, _ := svc.lastUpload()
	if len(ev.Data) != 0 || !strings.Contains(ev.Dropped, "does not fit the evidence budget") {
		t.Fatalf("upload: %d bytes, dropped %q", len(ev.Data), ev.Dropped)
	}
}

// TestHelperKeepsRawTitle: a title (or process name) that is not valid
// UTF-8 reaches the service with its original bytes escaped beside it; the
// socket's JSON alone would have replaced them.
func TestHelperKeepsRawTitle(t *testing.T) {
	svc := &fakeService{}
	src := &fakeSource{wins: make(chan screen.Window, 1)}
	startHelper(t, svc, src)
	src.wins <- screen.Window{ID: 1, Title: "how to kill myself \xff", Process: "fire\xfefox"}
	waitLong(t, "the observation at the service", func() bool {
		svc.mu.Lock()
		defer svc.mu.Unlock()
		return len(svc.windows) > 0
	})
	svc.mu.Lock()
	w := svc.windows[0]
	svc.mu.Unlock()
	if w.TitleRaw != `how to kill myself \xff` || w.ProcessRaw != `fire\xfefox` || w.Title != "how to kill myself \uFFFD" {
		t.Errorf("observed %+v", w)
	}
}
