package screen

import (
	"bytes"
	"errors"
	"image"
	"image/color"
	"image/jpeg"
	"image/png"
	"math/rand/v2"
	"testing"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/internal/contract"
)

// photo is a photo-like image: smooth gradients and shapes under sensor
// noise, the class that PNG cannot compress (a 720x477 photo on screen was
// about 1.4 MiB with the agent's PNG settings).
func photo(w, h int, noise int) *image.RGBA {
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	rng := rand.New(rand.NewPCG(1, 2))
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			base := [3]int{x * 255 / w, y * 255 / h, (x + y) * 127 / (w + h)}
			if (x-w/3)*(x-w/3)+(y-h/2)*(y-h/2) < h*h/9 {
				base = [3]int{200, 120, 90}
			}
			var c [3]uint8
			for i := range c {
				v := base[i] + rng.IntN(2*noise+1) - noise
				c[i] = uint8(min(255, max(0, v)))
			}
			img.SetRGBA(x, y, color.RGBA{c[0], c[1], c[2], 255})
		}
	}
	return img
}

// TestFitPhotoOfTheReportedClass: the screenshot that blocked a device (a
// photo on a 1280x800 screen, about 1.4 MiB as PNG at the rule's 960
// pixels) fits the evidence budget as JPEG at full width, and encrypted it
// still fits what the collector accepts.
func TestFitPhotoOfTheReportedClass(t *testing.T) {
	img := photo(1280, 800, 40)
	raw, err := EncodePNG(Downscale(img, 960))
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("1280x800 photo-like screen at 960 pixels as PNG: %d bytes", len(raw))
	if len(raw) < 1300<<10 {
		t.Fatalf("test image encodes to %d bytes as PNG; it is not of the reported ~1.4 MiB class", len(raw))
	}
	budget := PlainBudget(contract.MaxEvidenceBytes)
	data, mt, err := Fit(img, 960, budget)
	if err != nil {
		t.Fatal(err)
	}
	if mt != MediaJPEG || len(data) > budget {
		t.Fatalf("fitted to %s of %d bytes, budget %d", mt, len(data), budget)
	}
	got, err := jpeg.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if got.Bounds().Dx() != 960 {
		t.Errorf("fitted at %d pixels wide; the photo fits as JPEG without shrinking", got.Bounds().Dx())
	}
	t.Logf("fitted: %s, %d bytes, %v", mt, len(data), got.Bounds())
	id, _ := age.GenerateX25519Identity()
	ct, err := Encrypt(id.Recipient().String(), data)
	if err != nil {
		t.Fatal(err)
	}
	if len(ct) > contract.MaxEvidenceBytes {
		t.Errorf("encrypted evidence %d bytes, over the collector's %d", len(ct), contract.MaxEvidenceBytes)
	}
}

// TestFitKeepsTextLossless: a screen of flat colour and text stays PNG.
func TestFitKeepsTextLossless(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 1280, 800))
	for y := 0; y < 800; y++ {
		for x := 0; x < 1280; x++ {
			c := color.RGBA{250, 250, 250, 255}
			if y%20 < 12 && x%9 < 5 && (x/9+y/20)%7 != 0 {
				c = color.RGBA{20, 20, 20, 255}
			}
			img.SetRGBA(x, y, c)
		}
	}
	data, mt, err := Fit(img, 960, PlainBudget(contract.MaxEvidenceBytes))
	if err != nil || mt != MediaPNG {
		t.Fatalf("text screen: %s, %v", mt, err)
	}
	got, err := png.Decode(bytes.NewReader(data))
	if err != nil || got.Bounds().Dx() != 960 {
		t.Fatalf("decoded %v, %v", got.Bounds(), err)
	}
}

// TestFitShrinksThenGivesUp: a bigger noisier screen is shrunk until it
// fits; pure noise under a tiny budget does not fit at all, and says so.
func TestFitShrinksThenGivesUp(t *testing.T) {
	img := photo(1280, 800, 90)
	data, mt, err := Fit(img, 960, 60<<10)
	if err != nil {
		t.Fatal(err)
	}
	got, _ := jpeg.Decode(bytes.NewReader(data))
	if mt != MediaJPEG || len(data) > 60<<10 || got.Bounds().Dx() >= 960 || got.Bounds().Dx() < minFitWidth {
		t.Fatalf("fitted %s %d bytes %v", mt, len(data), got.Bounds())
	}
	_, _, err = Fit(img, 960, 4<<10)
	if !errors.Is(err, ErrTooLarge) {
		t.Fatalf("4 KiB budget: %v, want ErrTooLarge", err)
	}
	t.Log(err)
}

// BenchmarkEvidence compares the evidence encoding of a 1280x800 screen at
// 960 pixels: the old path (PNG whatever the content) against Fit, for a
// screen of text and one showing a photograph. Report Fit as a ratio of the
// PNG baseline of the same image in the same run.
func BenchmarkEvidence(b *testing.B) {
	text := image.NewRGBA(image.Rect(0, 0, 1280, 800))
	for y := 0; y < 800; y++ {
		for x := 0; x < 1280; x++ {
			c := color.RGBA{250, 250, 250, 255}
			if y%20 < 12 && x%9 < 5 && (x/9+y/20)%7 != 0 {
				c = color.RGBA{20, 20, 20, 255}
			}
			text.SetRGBA(x, y, c)
		}
	}
	budget := PlainBudget(contract.MaxEvidenceBytes)
	for _, c := range []struct {
		name string
		img  image.Image
	}{{"text", text}, {"photo", photo(1280, 800, 40)}} {
		b.Run(c.name+"/png-baseline", func(b *testing.B) {
			for b.Loop() {
				out, err := EncodePNG(Downscale(c.img, 960))
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(len(out)), "bytes")
			}
		})
		b.Run(c.name+"/fit", func(b *testing.B) {
			for b.Loop() {
				out, _, err := Fit(c.img, 960, budget)
				if err != nil {
					b.Fatal(err)
				}
				b.ReportMetric(float64(len(out)), "bytes")
			}
		})
	}
}
