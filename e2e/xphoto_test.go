package e2e

import (
	"fmt"
	"math/rand/v2"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// photoPixels is a photo-like w x h image as BGRX (the ZPixmap layout of a
// 24-bit TrueColor visual at 32 bits per pixel): gradients under sensor
// noise, which PNG cannot compress (about 1.4 MiB at 960x600).
func photoPixels(w, h int) []byte {
	rng := rand.New(rand.NewPCG(5, 6))
	px := make([]byte, w*h*4)
	for y := 0; y < h; y++ {
		for x := 0; x < w; x++ {
			n := func(v int) byte { return byte(min(255, max(0, v+rng.IntN(81)-40))) }
			i := (y*w + x) * 4
			px[i], px[i+1], px[i+2] = n((x+y)*127/(w+h)), n(y*255/h), n(x*255/w)
		}
	}
	return px
}

// mapPixmapWindow creates a top-level window of w x h whose background is a
// pixmap holding px, titles it and maps it. The window lives as long as the
// connection, which the caller closes.
func mapPixmapWindow(c *xgb.Conn, title string, w, h int, px []byte) (xproto.Window, error) {
	scr := xproto.Setup(c).DefaultScreen(c)
	if scr.RootDepth != 24 {
		return 0, fmt.Errorf("root depth %d, want 24", scr.RootDepth)
	}
	pix, err := xproto.NewPixmapId(c)
	if err != nil {
		return 0, err
	}
	if err := xproto.CreatePixmapChecked(c, scr.RootDepth, pix, xproto.Drawable(scr.Root), uint16(w), uint16(h)).Check(); err != nil {
		return 0, fmt.Errorf("create pixmap: %w", err)
	}
	gc, err := xproto.NewGcontextId(c)
	if err != nil {
		return 0, err
	}
	if err := xproto.CreateGCChecked(c, gc, xproto.Drawable(pix), 0, nil).Check(); err != nil {
		return 0, fmt.Errorf("create gc: %w", err)
	}
	// Strips well under the core protocol's 256 KiB request limit.
	const rows = 40
	for y := 0; y < h; y += rows {
		n := min(rows, h-y)
		if err := xproto.PutImageChecked(c, xproto.ImageFormatZPixmap, xproto.Drawable(pix), gc, uint16(w), uint16(n), 0, int16(y), 0, scr.RootDepth,
			px[y*w*4:(y+n)*w*4]).Check(); err != nil {
			return 0, fmt.Errorf("put image: %w", err)
		}
	}
	win, err := xproto.NewWindowId(c)
	if err != nil {
		return 0, err
	}
	if err := xproto.CreateWindowChecked(c, scr.RootDepth, win, scr.Root, 0, 0, uint16(w), uint16(h), 0,
		xproto.WindowClassInputOutput, scr.RootVisual, xproto.CwBackPixmap, []uint32{uint32(pix)}).Check(); err != nil {
		return 0, fmt.Errorf("create window: %w", err)
	}
	utf8, err := xproto.InternAtom(c, false, uint16(len("UTF8_STRING")), "UTF8_STRING").Reply()
	if err != nil {
		return 0, err
	}
	netName, err := xproto.InternAtom(c, false, uint16(len("_NET_WM_NAME")), "_NET_WM_NAME").Reply()
	if err != nil {
		return 0, err
	}
	xproto.ChangeProperty(c, xproto.PropModeReplace, win, xproto.AtomWmName, xproto.AtomString, 8, uint32(len(title)), []byte(title))
	xproto.ChangeProperty(c, xproto.PropModeReplace, win, netName.Atom, utf8.Atom, 8, uint32(len(title)), []byte(title))
	if err := xproto.MapWindowChecked(c, win).Check(); err != nil {
		return 0, fmt.Errorf("map window: %w", err)
	}
	return win, nil
}
