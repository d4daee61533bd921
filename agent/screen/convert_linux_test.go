//go:build linux

package screen

import (
	"image/color"
	"testing"
)

// TestConvertZPixmap checks the pixel conversion for formats Xvfb does not
// give us in the integration tests.
func TestConvertZPixmap(t *testing.T) {
	want := [2]color.RGBA{{0xff, 0x80, 0x40, 0xff}, {0x01, 0x02, 0x03, 0xff}}
	cases := []struct {
		name string
		pf   pixelFormat
		data []byte // 2x2: row0 = want0 want1, row1 = want1 want0
	}{
		{"32bpp LSB BGRX", pixelFormat{bpp: 32, stride: 8, red: 0xff0000, green: 0xff00, blue: 0xff},
			[]byte{0x40, 0x80, 0xff, 0, 3, 2, 1, 0, 3, 2, 1, 0, 0x40, 0x80, 0xff, 0}},
		{"32bpp MSB XRGB", pixelFormat{bpp: 32, stride: 8, msbFirst: true, red: 0xff0000, green: 0xff00, blue: 0xff},
			[]byte{0, 0xff, 0x80, 0x40, 0, 1, 2, 3, 0, 1, 2, 3, 0, 0xff, 0x80, 0x40}},
		{"24bpp LSB packed, padded rows", pixelFormat{bpp: 24, stride: 8, red: 0xff0000, green: 0xff00, blue: 0xff},
			[]byte{0x40, 0x80, 0xff, 3, 2, 1, 9, 9, 3, 2, 1, 0x40, 0x80, 0xff, 9, 9}},
		{"32bpp LSB RGBX (swapped masks)", pixelFormat{bpp: 32, stride: 8, red: 0xff, green: 0xff00, blue: 0xff0000},
			[]byte{0xff, 0x80, 0x40, 0, 1, 2, 3, 0, 1, 2, 3, 0, 0xff, 0x80, 0x40, 0}},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			img, err := convertZPixmap(c.data, 2, 2, c.pf)
			if err != nil {
				t.Fatal(err)
			}
			for _, p := range []struct {
				x, y int
				c    color.RGBA
			}{{0, 0, want[0]}, {1, 0, want[1]}, {0, 1, want[1]}, {1, 1, want[0]}} {
				if got := img.RGBAAt(p.x, p.y); got != p.c {
					t.Errorf("pixel %d,%d = %v, want %v", p.x, p.y, got, p.c)
				}
			}
		})
	}

	// 16bpp RGB565, little-endian: pure red and pure white.
	pf := pixelFormat{bpp: 16, stride: 4, red: 0xf800, green: 0x07e0, blue: 0x001f}
	img, err := convertZPixmap([]byte{0x00, 0xf8, 0xff, 0xff}, 2, 1, pf)
	if err != nil {
		t.Fatal(err)
	}
	if got := img.RGBAAt(0, 0); got != (color.RGBA{255, 0, 0, 255}) {
		t.Errorf("565 red = %v", got)
	}
	if got := img.RGBAAt(1, 0); got != (color.RGBA{255, 255, 255, 255}) {
		t.Errorf("565 white = %v", got)
	}

	if _, err := convertZPixmap(make([]byte, 10), 2, 2, pixelFormat{bpp: 32, stride: 8}); err == nil {
		t.Error("short data accepted")
	}
}
