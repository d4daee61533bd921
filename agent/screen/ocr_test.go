package screen

import (
	"context"
	"image"
	"image/color"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

func TestOCRImageGreyAndDownscaled(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 2560, 1600))
	for y := 0; y < 1600; y++ {
		for x := 0; x < 2560; x++ {
			c := color.RGBA{0xff, 0x80, 0x40, 0xff}
			if x < 1280 {
				c = color.RGBA{0, 0, 0, 0xff}
			}
			src.SetRGBA(x, y, c)
		}
	}
	g := OCRImage(src)
	if g.Bounds() != image.Rect(0, 0, OCRWidth, 800) {
		t.Fatalf("bounds %v, want 1280x800", g.Bounds())
	}
	want := color.GrayModel.Convert(color.RGBA{0xff, 0x80, 0x40, 0xff}).(color.Gray).Y
	if got := g.GrayAt(1000, 400).Y; got != want {
		t.Errorf("grey of #ff8040 = %d, want %d (color.GrayModel)", got, want)
	}
	if got := g.GrayAt(100, 400).Y; got != 0 {
		t.Errorf("black became %d", got)
	}
	// Narrow images keep their size; non-RGBA images convert too.
	small := image.NewNRGBA(image.Rect(0, 0, 640, 400))
	if b := OCRImage(small).Bounds(); b != small.Bounds() {
		t.Errorf("640x400 became %v", b)
	}
}

// fakeTesseract puts a tesseract on PATH that records its arguments, its
// OMP_THREAD_LIMIT and its niceness in dir/record, then runs body.
func fakeTesseract(t *testing.T, body string) (dir string) {
	t.Helper()
	if runtime.GOOS == "windows" {
		t.Skip("shell script stand-in")
	}
	dir = t.TempDir()
	script := "#!/bin/sh\necho \"$@\" > " + filepath.Join(dir, "record") + "\necho \"omp=$OMP_THREAD_LIMIT nice=$(nice)\" >> " + filepath.Join(dir, "record") + "\ncat > /dev/null\n" + body + "\n"
	if err := os.WriteFile(filepath.Join(dir, "tesseract"), []byte(script), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Setenv("PATH", dir+string(os.PathListSeparator)+os.Getenv("PATH"))
	return dir
}

func TestOCRRunsTesseractNicedSingleThreaded(t *testing.T) {
	dir := fakeTesseract(t, "printf 'how to\\nkill myself\\n'")
	o, err := NewOCR()
	if err != nil {
		t.Fatal(err)
	}
	if o.Tesseract != filepath.Join(dir, "tesseract") {
		t.Fatalf("tesseract %q", o.Tesseract)
	}
	r, err := o.Read(context.Background(), image.NewRGBA(image.Rect(0, 0, 1920, 1080)))
	if err != nil {
		t.Fatal(err)
	}
	if r.Text != "how to\nkill myself\n" {
		t.Errorf("text %q", r.Text)
	}
	rec, _ := os.ReadFile(filepath.Join(dir, "record"))
	lines := strings.Split(strings.TrimSpace(string(rec)), "\n")
	if lines[0] != "stdin stdout -l eng --psm 3" {
		t.Errorf("arguments %q", lines[0])
	}
	wantNice := "nice="
	if o.Nice != "" {
		out, err := exec.Command(o.Nice).Output()
		if err != nil {
			t.Fatal(err)
		}
		base, _ := strconv.Atoi(strings.TrimSpace(string(out)))
		wantNice += strconv.Itoa(min(base+10, 19))
	}
	if !strings.HasPrefix(lines[1], "omp=1 ") || !strings.Contains(lines[1], wantNice) {
		t.Errorf("environment %q, want OMP_THREAD_LIMIT=1 and %s", lines[1], wantNice)
	}
	if r.Wall <= 0 || r.Prep <= 0 {
		t.Errorf("times %+v", r)
	}
}

func TestOCRTimeoutAndFailure(t *testing.T) {
	fakeTesseract(t, "exec sleep 30")
	o, err := NewOCR()
	if err != nil {
		t.Fatal(err)
	}
	o.Timeout = 300 * time.Millisecond
	t0 := time.Now()
	if _, err := o.ReadPNG(context.Background(), []byte("x")); err == nil || !strings.Contains(err.Error(), "deadline") {
		t.Errorf("err %v, want a timeout", err)
	}
	// Well under the fake's 30 s, so the process was killed at the
	// timeout, yet loose enough for a loaded machine.
	if d := time.Since(t0); d > 20*time.Second {
		t.Errorf("timeout took %v", d)
	}

	fakeTesseract(t, "echo 'Error opening data file eng.traineddata' >&2; exit 1")
	o, _ = NewOCR()
	if _, err := o.ReadPNG(context.Background(), []byte("x")); err == nil || !strings.Contains(err.Error(), "traineddata") {
		t.Errorf("err %v, want tesseract's message", err)
	}
}

func TestOCROutputCapped(t *testing.T) {
	fakeTesseract(t, "head -c 100000 /dev/zero | tr '\\0' 'a'")
	o, _ := NewOCR()
	o.MaxText = 1000
	r, err := o.ReadPNG(context.Background(), []byte("x"))
	if err != nil {
		t.Fatal(err)
	}
	if len(r.Text) != 1000 {
		t.Errorf("%d bytes kept, want 1000", len(r.Text))
	}
}

func TestNoTesseract(t *testing.T) {
	t.Setenv("PATH", t.TempDir())
	if _, err := NewOCR(); err == nil || !strings.Contains(err.Error(), "OCR unavailable") {
		t.Errorf("err %v", err)
	}
}
