//go:build linux

package screen

import (
	"context"
	"strings"
	"testing"
	"time"
)

// TestOCRX11: real tesseract reads text an xterm shows on a real X server
// (Xvfb), from a screenshot taken by the X11 Source.
func TestOCRX11(t *testing.T) {
	requireTools(t, "tesseract")
	x := startX(t)
	x.start(t, "xterm", "-T", "vigil ocr", "-fa", "Monospace", "-fs", "20", "-geometry", "60x10+50+50",
		"-e", "sh", "-c", "echo the quick brown fox jumps; sleep 600")
	x.run(t, "xdotool", "search", "--sync", "--limit", "1", "--name", "^vigil ocr$")
	src, err := Open(x.Display)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	o, err := NewOCR()
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*liveness)
	defer cancel()
	var r OCRResult
	for deadline := time.Now().Add(liveness); time.Now().Before(deadline); { // until the xterm has drawn
		img, err := src.Screenshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		if r, err = o.Read(ctx, img); err != nil {
			t.Fatal(err)
		}
		if strings.Contains(strings.ToLower(r.Text), "quick brown fox") {
			t.Logf("read %q: cpu %v wall %v prep %v", strings.TrimSpace(r.Text), r.CPU, r.Wall, r.Prep)
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	t.Fatalf("tesseract read %q within %v, want the xterm's text", r.Text, liveness)
}
