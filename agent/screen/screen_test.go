package screen

import (
	"bytes"
	"image"
	"image/color"
	"image/png"
	"io"
	"strings"
	"testing"

	"filippo.io/age"
)

func TestDownscaleNoOp(t *testing.T) {
	img := image.NewRGBA(image.Rect(0, 0, 640, 400))
	if got := Downscale(img, 640); got != image.Image(img) {
		t.Error("Downscale to the same width should return the image itself")
	}
	if got := Downscale(img, 0); got != image.Image(img) {
		t.Error("Downscale with maxWidth 0 should return the image itself")
	}
}

func TestDownscaleBoxFilter(t *testing.T) {
	// A 1-pixel black/white checkerboard averages to mid grey at half size.
	src := image.NewRGBA(image.Rect(0, 0, 1280, 800))
	for y := 0; y < 800; y++ {
		for x := 0; x < 1280; x++ {
			if (x+y)%2 == 0 {
				src.Set(x, y, color.White)
			} else {
				src.Set(x, y, color.Black)
			}
		}
	}
	dst := Downscale(src, 640)
	if got := dst.Bounds(); got != image.Rect(0, 0, 640, 400) {
		t.Fatalf("bounds %v, want 640x400", got)
	}
	for _, p := range []image.Point{{0, 0}, {639, 399}, {320, 200}} {
		c := color.RGBAModel.Convert(dst.At(p.X, p.Y)).(color.RGBA)
		if c.R < 127 || c.R > 128 || c.R != c.G || c.G != c.B || c.A != 255 {
			t.Errorf("pixel %v = %v, want mid grey", p, c)
		}
	}
}

func TestDownscaleOddSizesAndTypes(t *testing.T) {
	cases := []struct {
		img    image.Image
		max    int
		wantWH image.Point
	}{
		{image.NewRGBA(image.Rect(0, 0, 1001, 3)), 100, image.Point{100, 1}},
		{image.NewRGBA(image.Rect(10, 20, 1930, 1100)), 640, image.Point{640, 360}},
		{image.NewGray(image.Rect(0, 0, 333, 777)), 100, image.Point{100, 233}},
		{image.NewNRGBA(image.Rect(0, 0, 3, 2)), 1, image.Point{1, 1}},
	}
	for _, c := range cases {
		got := Downscale(c.img, c.max)
		if got.Bounds().Size() != c.wantWH {
			t.Errorf("Downscale(%v, %d) = %v, want %v", c.img.Bounds(), c.max, got.Bounds().Size(), c.wantWH)
		}
	}
	// Non-RGBA input with a non-zero origin keeps its colours.
	g := image.NewNRGBA(image.Rect(5, 5, 405, 205))
	for y := 5; y < 205; y++ {
		for x := 5; x < 405; x++ {
			g.SetNRGBA(x, y, color.NRGBA{10, 200, 30, 255})
		}
	}
	if c := color.RGBAModel.Convert(Downscale(g, 100).At(50, 25)).(color.RGBA); c != (color.RGBA{10, 200, 30, 255}) {
		t.Errorf("colour after downscale = %v", c)
	}
}

func TestEncodePNGRoundTrip(t *testing.T) {
	src := image.NewRGBA(image.Rect(0, 0, 64, 40))
	for i := range src.Pix {
		src.Pix[i] = byte(i * 7)
	}
	for i := 3; i < len(src.Pix); i += 4 {
		src.Pix[i] = 255
	}
	data, err := EncodePNG(src)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	for y := 0; y < 40; y++ {
		for x := 0; x < 64; x++ {
			if a, b := color.RGBAModel.Convert(dec.At(x, y)), src.At(x, y); a != b {
				t.Fatalf("pixel %d,%d: %v != %v", x, y, a, b)
			}
		}
	}
}

func TestEncrypt(t *testing.T) {
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	plain := []byte("\x89PNG evidence: how to bypass the school filter")
	ct, err := Encrypt(id.Recipient().String(), plain)
	if err != nil {
		t.Fatal(err)
	}
	if bytes.Contains(ct, []byte("bypass")) {
		t.Error("ciphertext contains plaintext")
	}
	r, err := age.Decrypt(bytes.NewReader(ct), id)
	if err != nil {
		t.Fatal(err)
	}
	got, err := io.ReadAll(r)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(got, plain) {
		t.Errorf("decrypted %q, want %q", got, plain)
	}

	wrong, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	if r, err := age.Decrypt(bytes.NewReader(ct), wrong); err == nil {
		if _, err := io.ReadAll(r); err == nil {
			t.Error("decryption with the wrong identity succeeded")
		}
	}

	for _, bad := range []string{"", "age1notarecipient", id.String()} {
		if _, err := Encrypt(bad, plain); err == nil {
			t.Errorf("Encrypt to %q succeeded", strings.TrimSpace(bad))
		}
	}
}
