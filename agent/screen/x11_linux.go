//go:build linux

package screen

import (
	"context"
	"errors"
	"fmt"
	"image"
	"os"
	"strconv"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// maxTitleLen bounds how much of a title property is read, in 32-bit units
// (64 KiB); longer titles are truncated.
const maxTitleLen = 1 << 14

// Open connects to the X display ("" means $DISPLAY). In a Wayland session it
// returns an error wrapping ErrUnavailable: see the package documentation.
func Open(display string) (Source, error) {
	if reason := waylandSession(); reason != "" {
		return nil, fmt.Errorf("%w: Wayland session (%s): window titles and screenshots of other applications are not available", ErrUnavailable, reason)
	}
	if display == "" {
		display = os.Getenv("DISPLAY")
	}
	if display == "" {
		return nil, fmt.Errorf("%w: no X display (DISPLAY is empty)", ErrUnavailable)
	}
	c, err := xgb.NewConnDisplay(display)
	if err != nil {
		return nil, fmt.Errorf("screen: connect to X display %q: %w", display, err)
	}
	atoms, err := internAtoms(c)
	if err != nil {
		c.Close()
		return nil, err
	}
	setup := xproto.Setup(c)
	return &x11Source{
		display: display,
		conn:    c,
		setup:   setup,
		screen:  setup.DefaultScreen(c),
		atoms:   atoms,
		closed:  make(chan struct{}),
		watches: make(map[*xgb.Conn]struct{}),
	}, nil
}

// waylandSession returns why this looks like a Wayland session, or "".
func waylandSession() string {
	if v := os.Getenv("WAYLAND_DISPLAY"); v != "" {
		return "WAYLAND_DISPLAY=" + v
	}
	if strings.EqualFold(os.Getenv("XDG_SESSION_TYPE"), "wayland") {
		return "XDG_SESSION_TYPE=wayland"
	}
	return ""
}

type x11Atoms struct {
	netActiveWindow, netWMName, utf8String, netWMPID, wmClass, wmName, netSupportingWMCheck xproto.Atom
}

func internAtoms(c *xgb.Conn) (x11Atoms, error) {
	names := []string{"_NET_ACTIVE_WINDOW", "_NET_WM_NAME", "UTF8_STRING", "_NET_WM_PID", "WM_CLASS", "WM_NAME", "_NET_SUPPORTING_WM_CHECK"}
	cookies := make([]xproto.InternAtomCookie, len(names))
	for i, n := range names {
		cookies[i] = xproto.InternAtom(c, false, uint16(len(n)), n)
	}
	ids := make([]xproto.Atom, len(names))
	for i, ck := range cookies {
		r, err := ck.Reply()
		if err != nil {
			return x11Atoms{}, fmt.Errorf("screen: intern X atom %s: %w", names[i], err)
		}
		ids[i] = r.Atom
	}
	return x11Atoms{ids[0], ids[1], ids[2], ids[3], ids[4], ids[5], ids[6]}, nil
}

type x11Source struct {
	display string
	conn    *xgb.Conn // screenshots; each Watch has its own connection (own event queue)
	setup   *xproto.SetupInfo
	screen  *xproto.ScreenInfo
	atoms   x11Atoms

	mu        sync.Mutex
	closed    chan struct{}
	closeOnce sync.Once
	watches   map[*xgb.Conn]struct{}
}

func (s *x11Source) Close() error {
	s.closeOnce.Do(func() {
		s.mu.Lock()
		close(s.closed)
		for c := range s.watches {
			c.Close()
		}
		s.mu.Unlock()
		s.conn.Close()
	})
	return nil
}

// Watch implements Source. It uses its own X connection so that its events
// are not mixed with anyone else's, and so that ending ctx can unblock it by
// closing that connection.
func (s *x11Source) Watch(ctx context.Context, fn func(Window)) error {
	if watchDone(ctx, s.closed) {
		return nil
	}
	c, err := xgb.NewConnDisplay(s.display)
	if err != nil {
		return fmt.Errorf("screen: connect to X display %q: %w", s.display, err)
	}
	s.mu.Lock()
	select {
	case <-s.closed:
		s.mu.Unlock()
		c.Close()
		return nil
	default:
	}
	s.watches[c] = struct{}{}
	s.mu.Unlock()
	stop := context.AfterFunc(ctx, c.Close)
	defer func() {
		stop()
		s.mu.Lock()
		delete(s.watches, c)
		s.mu.Unlock()
		c.Close()
	}()

	w := &x11Watch{c: c, root: s.screen.Root, atoms: s.atoms}
	err = w.run(fn)
	if watchDone(ctx, s.closed) {
		return nil
	}
	return err
}

type x11Watch struct {
	c      *xgb.Conn
	root   xproto.Window
	atoms  x11Atoms
	active xproto.Window // window whose PropertyNotify events we receive, 0 if none
	cur    Window
}

var errXClosed = errors.New("screen: X connection lost")

func (w *x11Watch) run(fn func(Window)) error {
	// Select PropertyChange on the root before the first read, so that no
	// change between the read and the selection can be missed.
	if err := xproto.ChangeWindowAttributesChecked(w.c, w.root, xproto.CwEventMask,
		[]uint32{xproto.EventMaskPropertyChange}).Check(); err != nil {
		return fmt.Errorf("screen: select events on the X root window: %w", err)
	}
	if err := w.activeChanged(); err != nil {
		return err
	}
	fn(w.cur)
	last := w.cur
	for {
		ev, xerr := w.c.WaitForEvent()
		if ev == nil && xerr == nil {
			return errXClosed
		}
		// Take whatever else is already queued: every property read below is
		// answered after the server generated those events, so it returns a
		// value at least as new as the newest queued notification; reading once
		// per batch therefore loses no observable title.
		var activeDirty, titleDirty bool
		for ev != nil || xerr != nil {
			// X errors (xerr) are expected: e.g. BadWindow when the window we
			// stop listening to was already destroyed. They are ignored.
			if pn, ok := ev.(xproto.PropertyNotifyEvent); ok {
				switch {
				case pn.Window == w.root && pn.Atom == w.atoms.netActiveWindow:
					activeDirty = true
				case pn.Window == w.active && w.active != 0 &&
					(pn.Atom == w.atoms.netWMName || pn.Atom == w.atoms.wmName):
					titleDirty = true
				}
			}
			ev, xerr = w.c.PollForEvent()
		}
		var err error
		switch {
		case activeDirty:
			err = w.activeChanged()
		case titleDirty:
			w.cur.Title, err = w.title(w.active)
		}
		if err != nil {
			return err
		}
		if w.cur != last {
			last = w.cur
			fn(w.cur)
		}
	}
}

// activeChanged reads _NET_ACTIVE_WINDOW and, if it names a new window, moves
// our PropertyChange interest to it and describes it.
func (w *x11Watch) activeChanged() error {
	id, err := w.activeWindow()
	if err != nil {
		return err
	}
	if id == w.active {
		// The root property was rewritten with the same value; refresh the
		// title anyway in case we raced with a change.
		if id != 0 {
			w.cur.Title, err = w.title(id)
		}
		return err
	}
	if w.active != 0 {
		// Unchecked: the old window may be gone (BadWindow arrives as an
		// ignored event-queue error).
		xproto.ChangeWindowAttributes(w.c, w.active, xproto.CwEventMask, []uint32{xproto.EventMaskNoEvent})
	}
	w.active = id
	if id == 0 {
		w.cur = Window{}
		return nil
	}
	// Select before reading so that a title change right after the read is
	// still notified.
	xproto.ChangeWindowAttributes(w.c, id, xproto.CwEventMask, []uint32{xproto.EventMaskPropertyChange})
	win, err := w.describe(id)
	if err != nil {
		return err
	}
	w.cur = win
	return nil
}

func (w *x11Watch) activeWindow() (xproto.Window, error) {
	r, err := xproto.GetProperty(w.c, false, w.root, w.atoms.netActiveWindow, xproto.AtomWindow, 0, 1).Reply()
	if err != nil {
		return 0, connErr(err)
	}
	if r == nil || r.Format != 32 || len(r.Value) < 4 {
		return 0, nil // no EWMH window manager (yet), or nothing active
	}
	return xproto.Window(xgb.Get32(r.Value)), nil
}

// describe reads title, class and PID of window id, pipelining the requests.
func (w *x11Watch) describe(id xproto.Window) (Window, error) {
	netName := xproto.GetProperty(w.c, false, id, w.atoms.netWMName, w.atoms.utf8String, 0, maxTitleLen)
	name := xproto.GetProperty(w.c, false, id, w.atoms.wmName, xproto.GetPropertyTypeAny, 0, maxTitleLen)
	class := xproto.GetProperty(w.c, false, id, w.atoms.wmClass, xproto.AtomString, 0, 256)
	pid := xproto.GetProperty(w.c, false, id, w.atoms.netWMPID, xproto.AtomCardinal, 0, 1)

	win := Window{ID: uint32(id)}
	var err error
	if win.Title, err = w.titleFrom(netName, name); err != nil {
		return Window{}, err
	}
	if r, err := class.Reply(); err != nil {
		if isConnErr(err) {
			return Window{}, connErr(err)
		}
	} else if r != nil && r.Format == 8 {
		win.Class = wmClass(r.Value)
	}
	if r, err := pid.Reply(); err != nil {
		if isConnErr(err) {
			return Window{}, connErr(err)
		}
	} else if r != nil && r.Format == 32 && len(r.Value) >= 4 {
		win.PID = int(xgb.Get32(r.Value))
		win.Process = processName(win.PID)
	}
	return win, nil
}

func (w *x11Watch) title(id xproto.Window) (string, error) {
	netName := xproto.GetProperty(w.c, false, id, w.atoms.netWMName, w.atoms.utf8String, 0, maxTitleLen)
	name := xproto.GetProperty(w.c, false, id, w.atoms.wmName, xproto.GetPropertyTypeAny, 0, maxTitleLen)
	return w.titleFrom(netName, name)
}

// titleFrom prefers _NET_WM_NAME (UTF-8) and falls back to WM_NAME (Latin-1
// STRING, or UTF8_STRING as some toolkits set it). A window that vanished
// (BadWindow) has an empty title; only a lost connection is an error.
func (w *x11Watch) titleFrom(netName, name xproto.GetPropertyCookie) (string, error) {
	nr, nerr := netName.Reply()
	r, err := name.Reply()
	if nerr != nil && isConnErr(nerr) {
		return "", connErr(nerr)
	}
	if err != nil && isConnErr(err) {
		return "", connErr(err)
	}
	if nerr == nil && nr != nil && nr.Format == 8 && nr.ValueLen > 0 {
		return strings.ToValidUTF8(string(nr.Value), "\uFFFD"), nil
	}
	if err != nil || r == nil || r.Format != 8 {
		return "", nil
	}
	if r.Type == w.atoms.utf8String {
		return strings.ToValidUTF8(string(r.Value), "\uFFFD"), nil
	}
	return latin1(r.Value), nil
}

// isConnErr tells a lost connection (io.EOF from xgb) from an X protocol
// error such as BadWindow (an xgb.Error).
func isConnErr(err error) bool {
	var xe xgb.Error
	return err != nil && !errors.As(err, &xe)
}

func connErr(err error) error {
	if isConnErr(err) {
		return fmt.Errorf("%w: %v", errXClosed, err)
	}
	return nil
}

func latin1(b []byte) string {
	var sb strings.Builder
	sb.Grow(len(b))
	for _, c := range b {
		if c < utf8.RuneSelf {
			sb.WriteByte(c)
		} else {
			sb.WriteRune(rune(c))
		}
	}
	return sb.String()
}

// wmClass returns the class part of WM_CLASS ("instance\0class\0"), or the
// instance part if there is no class.
func wmClass(v []byte) string {
	parts := strings.Split(strings.TrimRight(string(v), "\x00"), "\x00")
	if len(parts) >= 2 && parts[1] != "" {
		return latin1([]byte(parts[1]))
	}
	return latin1([]byte(parts[0]))
}

// processName reads /proc/PID/comm. _NET_WM_PID is only meaningful for local
// clients; a remote client's PID would name an unrelated local process, which
// this does not detect (remote X clients are not expected on school devices).
func processName(pid int) string {
	if pid <= 0 {
		return ""
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/comm")
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(b))
}

// Screenshot implements Source: GetImage (ZPixmap) of the whole root window.
func (s *x11Source) Screenshot(ctx context.Context) (image.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	select {
	case <-s.closed:
		return nil, errors.New("screen: source closed")
	default:
	}
	type result struct {
		img image.Image
		err error
	}
	ch := make(chan result, 1)
	go func() {
		img, err := s.grab()
		ch <- result{img, err}
	}()
	select {
	case r := <-ch:
		return r.img, r.err
	case <-ctx.Done():
		// The grab goroutine finishes on its own when the reply arrives or
		// the connection closes.
		return nil, ctx.Err()
	}
}

func (s *x11Source) grab() (image.Image, error) {
	root := s.screen.Root
	// The root's size is read every time: it changes with xrandr.
	geo, err := xproto.GetGeometry(s.conn, xproto.Drawable(root)).Reply()
	if err != nil {
		return nil, fmt.Errorf("screen: X root geometry: %w", err)
	}
	r, err := xproto.GetImage(s.conn, xproto.ImageFormatZPixmap, xproto.Drawable(root),
		0, 0, geo.Width, geo.Height, 0xffffffff).Reply()
	if err != nil {
		return nil, fmt.Errorf("screen: X GetImage: %w", err)
	}
	if r == nil {
		return nil, errors.New("screen: X GetImage: no reply")
	}
	pf, err := s.pixelFormat(r.Depth, r.Visual, int(geo.Width))
	if err != nil {
		return nil, err
	}
	return convertZPixmap(r.Data, int(geo.Width), int(geo.Height), pf)
}

// pixelFormat describes ZPixmap data of the given depth and visual.
type pixelFormat struct {
	bpp              int  // bits per pixel: 16, 24 or 32
	stride           int  // bytes per scanline
	msbFirst         bool // image byte order
	red, green, blue uint32
}

func (s *x11Source) pixelFormat(depth byte, visual xproto.Visualid, width int) (pixelFormat, error) {
	pf := pixelFormat{msbFirst: s.setup.ImageByteOrder == xproto.ImageOrderMSBFirst}
	pad := 0
	for _, f := range s.setup.PixmapFormats {
		if f.Depth == depth {
			pf.bpp, pad = int(f.BitsPerPixel), int(f.ScanlinePad)
		}
	}
	if pf.bpp == 0 {
		return pf, fmt.Errorf("screen: no X pixmap format for depth %d", depth)
	}
	found := false
	for _, d := range s.screen.AllowedDepths {
		for _, v := range d.Visuals {
			if v.VisualId == visual {
				pf.red, pf.green, pf.blue = v.RedMask, v.GreenMask, v.BlueMask
				found = v.Class == xproto.VisualClassTrueColor || v.Class == xproto.VisualClassDirectColor
			}
		}
	}
	if !found {
		return pf, fmt.Errorf("screen: unsupported X visual 0x%x (only TrueColor/DirectColor)", visual)
	}
	if pf.bpp != 16 && pf.bpp != 24 && pf.bpp != 32 {
		return pf, fmt.Errorf("screen: unsupported X pixmap format: %d bits per pixel", pf.bpp)
	}
	if pad < 8 {
		pad = 8
	}
	bits := width * pf.bpp
	pf.stride = (bits + pad - 1) / pad * pad / 8
	return pf, nil
}

// convertZPixmap converts ZPixmap scanlines to an opaque RGBA image.
func convertZPixmap(data []byte, w, h int, pf pixelFormat) (*image.RGBA, error) {
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("screen: empty screen %dx%d", w, h)
	}
	if len(data) < pf.stride*(h-1)+w*pf.bpp/8 {
		return nil, fmt.Errorf("screen: X image data too short: %d bytes for %dx%d at %d bpp", len(data), w, h, pf.bpp)
	}
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	bytesPP := pf.bpp / 8
	// Fast path: the usual little-endian BGRX (Xorg, Xvfb 24/32).
	if bytesPP >= 3 && !pf.msbFirst && pf.red == 0xff0000 && pf.green == 0xff00 && pf.blue == 0xff {
		for y := 0; y < h; y++ {
			src := data[y*pf.stride:]
			dst := img.Pix[y*img.Stride : y*img.Stride+w*4]
			for x, i := 0, 0; x < w*4; x, i = x+4, i+bytesPP {
				dst[x] = src[i+2]
				dst[x+1] = src[i+1]
				dst[x+2] = src[i]
				dst[x+3] = 0xff
			}
		}
		return img, nil
	}
	rs, rb := maskShift(pf.red)
	gs, gb := maskShift(pf.green)
	bs, bb := maskShift(pf.blue)
	for y := 0; y < h; y++ {
		src := data[y*pf.stride:]
		dst := img.Pix[y*img.Stride : y*img.Stride+w*4]
		for x := 0; x < w; x++ {
			p := src[x*bytesPP : x*bytesPP+bytesPP]
			var v uint32
			if pf.msbFirst {
				for _, c := range p {
					v = v<<8 | uint32(c)
				}
			} else {
				for i := len(p) - 1; i >= 0; i-- {
					v = v<<8 | uint32(p[i])
				}
			}
			dst[x*4] = scale8((v&pf.red)>>rs, rb)
			dst[x*4+1] = scale8((v&pf.green)>>gs, gb)
			dst[x*4+2] = scale8((v&pf.blue)>>bs, bb)
			dst[x*4+3] = 0xff
		}
	}
	return img, nil
}

// maskShift returns the position of the lowest set bit of m and the number of
// contiguous bits.
func maskShift(m uint32) (shift, bits uint) {
	if m == 0 {
		return 0, 0
	}
	for m&1 == 0 {
		m >>= 1
		shift++
	}
	for m&1 == 1 {
		m >>= 1
		bits++
	}
	return shift, bits
}

// scale8 scales a bits-wide channel value to 0..255.
func scale8(v uint32, bits uint) uint8 {
	switch {
	case bits == 0:
		return 0
	case bits >= 8:
		return uint8(v >> (bits - 8))
	default:
		full := uint32(1)<<bits - 1
		return uint8((v*255 + full/2) / full)
	}
}
