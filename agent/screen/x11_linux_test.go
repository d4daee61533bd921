//go:build linux

package screen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"runtime"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"github.com/jezek/xgb"
	"github.com/jezek/xgb/xproto"
)

// watch runs src.Watch in a goroutine; stop cancels it and waits (bounded)
// for Watch to return, failing on an error.
func watch(t *testing.T, src Source) (rec *recorder, stop func()) {
	t.Helper()
	rec = newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() {
		err := src.Watch(ctx, rec.fn)
		rec.end(err)
		done <- err
	}()
	stopped := false
	stop = func() {
		if stopped {
			return
		}
		stopped = true
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Watch returned %v after cancel, want nil", err)
			}
		case <-time.After(liveness):
			t.Errorf("Watch did not return within %v of cancel", liveness)
		}
	}
	t.Cleanup(stop)
	return rec, stop
}

func titleIs(s string) func(Window) bool { return func(w Window) bool { return w.Title == s } }

// setTitle sets _NET_WM_NAME from a second X connection, as a browser does
// when the page title changes.
func setTitle(c *xgb.Conn, win uint32, netWMName, utf8 xproto.Atom, title string) {
	xproto.ChangeProperty(c, xproto.PropModeReplace, xproto.Window(win), netWMName, utf8, 8, uint32(len(title)), []byte(title))
}

func TestWatchX11(t *testing.T) {
	x := startX(t)
	a := x.xterm(t, "vigil alpha window")
	x.activate(t, a)

	src, err := Open(x.Display)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rec, stop := watch(t, src)

	// 1. The active xterm now.
	e, err := rec.waitFor(0, liveness, titleIs("vigil alpha window"))
	if err != nil {
		t.Fatalf("initial active window: %v; got %+v", err, rec.since(0))
	}
	if e.w.ID != a.id || e.w.PID != a.pid || e.w.Process != "xterm" || e.w.Class != "XTerm" {
		t.Errorf("initial window = %+v, want ID %d PID %d Process xterm Class XTerm", e.w, a.id, a.pid)
	}

	// 2. A title change with xdotool (includes starting xdotool).
	from := rec.mark()
	t0 := time.Now()
	x.run(t, "xdotool", "set_window", "--name", "new title", a.String())
	e, err = rec.waitFor(from, liveness, titleIs("new title"))
	if err != nil {
		t.Fatalf("title change not reported: %v; got %+v", err, rec.since(from))
	}
	t.Logf("latency: xdotool set_window --name -> Watch report: %v", e.at.Sub(t0))
	if e.w.ID != a.id || e.w.PID != a.pid {
		t.Errorf("renamed window = %+v", e.w)
	}

	// 2b. The same from Go (no process start): pure X round trip latency.
	c := x.conn(t)
	defer c.Close()
	netWMName, utf8 := internAtom(t, c, "_NET_WM_NAME"), internAtom(t, c, "UTF8_STRING")
	var lat []time.Duration
	for i := range 5 {
		title := fmt.Sprintf("how to bypass the filter %d", i)
		from = rec.mark()
		t0 = time.Now()
		setTitle(c, a.id, netWMName, utf8, title)
		e, err = rec.waitFor(from, liveness, titleIs(title))
		if err != nil {
			t.Fatalf("title %q not reported: %v", title, err)
		}
		lat = append(lat, e.at.Sub(t0))
	}
	t.Logf("latency: ChangeProperty(_NET_WM_NAME) -> Watch report: %v", lat)

	// 2c. WM_NAME (Latin-1) is the fallback when there is no _NET_WM_NAME.
	xproto.DeleteProperty(c, xproto.Window(a.id), netWMName)
	from = rec.mark()
	latin := []byte("caf\xe9 menu")
	xproto.ChangeProperty(c, xproto.PropModeReplace, xproto.Window(a.id), xproto.AtomWmName, xproto.AtomString, 8, uint32(len(latin)), latin)
	if _, err := rec.waitFor(from, liveness, titleIs("café menu")); err != nil {
		t.Errorf("WM_NAME Latin-1 fallback: %v; got %+v", err, rec.since(from))
	}

	// 3. Activating a second xterm reports it with its title, PID and process.
	b := x.xterm(t, "vigil beta window")
	from = rec.mark()
	t0 = time.Now()
	x.activate(t, b)
	e, err = rec.waitFor(0, liveness, func(w Window) bool { return w.ID == b.id && w.Title == "vigil beta window" })
	if err != nil {
		t.Fatalf("second xterm not reported: %v; got %+v", err, rec.since(from))
	}
	if d := e.at.Sub(t0); d < 0 {
		t.Logf("second xterm reported %v before windowactivate: openbox focused it when it was mapped", -d)
	} else {
		t.Logf("latency: xdotool windowactivate --sync -> Watch report: %v", d)
	}
	if e.w.PID != b.pid || e.w.Process != "xterm" || e.w.Class != "XTerm" {
		t.Errorf("second window = %+v, want PID %d Process xterm Class XTerm", e.w, b.pid)
	}

	// 4. Interest in the old window is dropped: its title change is not
	// reported. The X server orders events, so if we still listened to A, A's
	// change would be reported before B's.
	from = rec.mark()
	setTitle(c, a.id, netWMName, utf8, "inactive window renamed")
	setTitle(c, b.id, netWMName, utf8, "active window renamed")
	if _, err := rec.waitFor(from, liveness, titleIs("active window renamed")); err != nil {
		t.Fatalf("active rename not reported: %v", err)
	}
	for _, e := range rec.since(from) {
		if e.w.Title == "inactive window renamed" || e.w.ID != b.id {
			t.Errorf("reported a change of an inactive window: %+v", e.w)
		}
	}

	// 5. Back to A: reported with A's current title.
	from = rec.mark()
	t0 = time.Now()
	x.activate(t, a)
	e, err = rec.waitFor(from, liveness, func(w Window) bool { return w.ID == a.id && w.Title == "inactive window renamed" })
	if err != nil {
		t.Fatalf("re-activation of A: %v; got %+v", err, rec.since(from))
	}
	t.Logf("latency: start of xdotool windowactivate --sync (A again) -> Watch report: %v", e.at.Sub(t0))

	// 6. Activation from Go through the WM (_NET_ACTIVE_WINDOW client message,
	// as a pager or taskbar does): pure X latency of an activation.
	from = rec.mark()
	t0 = time.Now()
	requestActivate(t, c, b.id)
	e, err = rec.waitFor(from, liveness, func(w Window) bool { return w.ID == b.id })
	if err != nil {
		t.Fatalf("activation via _NET_ACTIVE_WINDOW message not reported: %v", err)
	}
	t.Logf("latency: _NET_ACTIVE_WINDOW request -> openbox -> Watch report: %v", e.at.Sub(t0))

	// 7. The active window disappears: the next active window (or none) is
	// reported, and the BadWindow from dropping interest in it is ignored.
	from = rec.mark()
	x.run(t, "xdotool", "windowkill", b.String())
	e, err = rec.waitFor(from, liveness, func(w Window) bool { return w.ID != b.id })
	if err != nil {
		t.Fatalf("closing the active window not reported: %v; got %+v", err, rec.since(from))
	}
	t.Logf("after closing the active xterm: %+v", e.w)
	from = rec.mark()
	setTitle(c, a.id, netWMName, utf8, "still watching")
	if e.w.ID == a.id {
		if _, err := rec.waitFor(from, liveness, titleIs("still watching")); err != nil {
			t.Errorf("Watch stopped working after the active window vanished: %v", err)
		}
	}
	stop()
}

func TestWatchRapidTitles(t *testing.T) {
	x := startX(t)
	a := x.xterm(t, "vigil rapid")
	x.activate(t, a)
	c := x.conn(t)
	netWMName, utf8 := internAtom(t, c, "_NET_WM_NAME"), internAtom(t, c, "UTF8_STRING")

	base := runtime.NumGoroutine()
	src, err := Open(x.Display)
	if err != nil {
		t.Fatal(err)
	}
	rec, stop := watch(t, src)
	if _, err := rec.waitFor(0, liveness, titleIs("vigil rapid")); err != nil {
		t.Fatalf("initial: %v; got %+v (xterm %d)", err, rec.since(0), a.id)
	}

	const n = 200
	from := rec.mark()
	t0 := time.Now()
	for i := range n {
		setTitle(c, a.id, netWMName, utf8, fmt.Sprintf("rapid %03d", i))
	}
	xproto.GetInputFocus(c).Reply() // flush: all changes are on the server
	sent := time.Since(t0)
	last := fmt.Sprintf("rapid %03d", n-1)
	e, err := rec.waitFor(from, liveness, titleIs(last))
	if err != nil {
		got := rec.since(from)
		t.Fatalf("last title not reported: %v; %d reports, last %+v", err, len(got), got[len(got)-1:])
	}
	got := rec.since(from)
	t.Logf("%d title changes sent in %v; last reported %v after the first; %d distinct reports", n, sent, e.at.Sub(t0), len(got))
	prev := -1
	for _, e := range got {
		var i int
		if _, err := fmt.Sscanf(e.w.Title, "rapid %d", &i); err != nil || i <= prev {
			t.Errorf("reports out of order or unexpected: %q after %d", e.w.Title, prev)
			break
		}
		prev = i
	}

	// The same with xdotool in a loop (each change starts a process, so
	// Watch usually reports every title).
	const m = 20
	from = rec.mark()
	t0 = time.Now()
	for i := range m {
		x.run(t, "xdotool", "set_window", "--name", fmt.Sprintf("xdotool %02d", i), a.String())
	}
	if _, err := rec.waitFor(from, liveness, titleIs(fmt.Sprintf("xdotool %02d", m-1))); err != nil {
		t.Fatalf("last xdotool title not reported: %v", err)
	}
	t.Logf("%d xdotool set_window in %v: %d distinct reports", m, time.Since(t0), len(rec.since(from)))

	stop()
	src.Close()
	c.Close()
	// No goroutine leak: Watch's and Open's X connections are gone.
	deadline := time.Now().Add(liveness)
	for runtime.NumGoroutine() > base {
		if time.Now().After(deadline) {
			buf := make([]byte, 1<<20)
			t.Fatalf("goroutines: %d after close, %d before Open:\n%s", runtime.NumGoroutine(), base, buf[:runtime.Stack(buf, true)])
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestWatchSourceCloseEndsWatch(t *testing.T) {
	x := startX(t)
	src, err := Open(x.Display)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	rec := newRecorder()
	go func() { done <- src.Watch(context.Background(), rec.fn) }()
	if _, err := rec.waitFor(0, liveness, func(Window) bool { return true }); err != nil {
		t.Fatal(err)
	}
	src.Close()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("Watch after Close = %v, want nil", err)
		}
	case <-time.After(liveness):
		t.Fatal("Watch did not return after Close")
	}
}

func TestWatchXServerLost(t *testing.T) {
	x := startX(t)
	a := x.xterm(t, "vigil lost")
	x.activate(t, a)
	src, err := Open(x.Display)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	rec := newRecorder()
	done := make(chan error, 1)
	go func() { done <- src.Watch(context.Background(), rec.fn) }()
	if _, err := rec.waitFor(0, liveness, titleIs("vigil lost")); err != nil {
		t.Fatal(err)
	}
	x.killServer()
	select {
	case err := <-done:
		if err == nil {
			t.Fatal("Watch returned nil after the X server died, want an error")
		}
		t.Logf("Watch: %v", err)
	case <-time.After(liveness):
		t.Fatalf("Watch did not return within %v of the X server dying", liveness)
	}
	ctx, cancel := context.WithTimeout(context.Background(), liveness)
	defer cancel()
	if _, err := src.Screenshot(ctx); err == nil {
		t.Error("Screenshot succeeded without an X server")
	}
}

func TestOpenNoDisplay(t *testing.T) {
	t.Setenv("WAYLAND_DISPLAY", "")
	t.Setenv("XDG_SESSION_TYPE", "")
	t.Setenv("DISPLAY", "")
	if _, err := Open(""); !errors.Is(err, ErrUnavailable) {
		t.Errorf("Open with no DISPLAY = %v, want ErrUnavailable", err)
	}
}

func TestOpenWaylandUnavailable(t *testing.T) {
	for _, env := range [][2]string{{"WAYLAND_DISPLAY", "wayland-0"}, {"XDG_SESSION_TYPE", "wayland"}} {
		t.Run(env[0], func(t *testing.T) {
			t.Setenv("WAYLAND_DISPLAY", "")
			t.Setenv("XDG_SESSION_TYPE", "x11")
			t.Setenv(env[0], env[1])
			src, err := Open(":0")
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), "screen monitoring unavailable") {
				t.Errorf("Open in a Wayland session = %v, %v; want ErrUnavailable", src, err)
			}
		})
	}
}

func TestScreenshotX11(t *testing.T) {
	x := startX(t)
	want := color.RGBA{0xff, 0x80, 0x40, 0xff} // distinct channels: catches byte-order mistakes
	w := x.xterm(t, "vigil colour", "-bg", "#ff8040", "-geometry", "60x20+100+120")
	x.activate(t, w)

	c := x.conn(t)
	defer c.Close()
	geo, err := xproto.GetGeometry(c, xproto.Drawable(w.id)).Reply()
	if err != nil {
		t.Fatal(err)
	}
	root := xproto.Setup(c).DefaultScreen(c).Root
	tr, err := xproto.TranslateCoordinates(c, xproto.Window(w.id), root, 0, 0).Reply()
	if err != nil {
		t.Fatal(err)
	}
	win := image.Rect(int(tr.DstX), int(tr.DstY), int(tr.DstX)+int(geo.Width), int(tr.DstY)+int(geo.Height))
	// Stay clear of the cursor block in the top-left corner.
	probe := image.Rect(win.Min.X+win.Dx()/4, win.Min.Y+win.Dy()/4, win.Max.X-win.Dx()/4, win.Max.Y-win.Dy()/4)
	t.Logf("xterm at %v, probing %v", win, probe)

	src, err := Open(x.Display)
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), 2*liveness)
	defer cancel()

	var img image.Image
	deadline := time.Now().Add(liveness)
	for {
		t0 := time.Now()
		img, err = src.Screenshot(ctx)
		if err != nil {
			t.Fatal(err)
		}
		t.Logf("Screenshot %v in %v", img.Bounds(), time.Since(t0))
		if countColour(img, probe, want) == probe.Dx()*probe.Dy() {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("probe region %v not %v: pixel at centre %v", probe, want, img.At(probe.Min.X+probe.Dx()/2, probe.Min.Y+probe.Dy()/2))
		}
		time.Sleep(50 * time.Millisecond) // the xterm has not drawn yet
	}
	if got := img.Bounds(); got != image.Rect(0, 0, 1280, 800) {
		t.Fatalf("screenshot bounds %v, want 1280x800", got)
	}

	small := Downscale(img, 640)
	if got := small.Bounds(); got != image.Rect(0, 0, 640, 400) {
		t.Fatalf("Downscale(640) bounds %v, want 640x400", got)
	}
	half := image.Rect(probe.Min.X/2+1, probe.Min.Y/2+1, probe.Max.X/2-1, probe.Max.Y/2-1)
	if n := countColour(small, half, want); n != half.Dx()*half.Dy() {
		t.Errorf("downscaled region %v: %d of %d pixels are %v", half, n, half.Dx()*half.Dy(), want)
	}

	data, err := EncodePNG(small)
	if err != nil {
		t.Fatal(err)
	}
	dec, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		t.Fatal(err)
	}
	if dec.Bounds() != small.Bounds() {
		t.Fatalf("decoded PNG bounds %v", dec.Bounds())
	}
	if n := countColour(dec, half, want); n != half.Dx()*half.Dy() {
		t.Errorf("decoded PNG region: %d of %d pixels are %v", n, half.Dx()*half.Dy(), want)
	}
	t.Logf("PNG of 640x400 evidence: %d bytes", len(data))

	// Cancelled context: no grab.
	cctx, ccancel := context.WithCancel(context.Background())
	ccancel()
	if _, err := src.Screenshot(cctx); !errors.Is(err, context.Canceled) {
		t.Errorf("Screenshot with cancelled ctx = %v", err)
	}
}

// requestActivate asks the window manager to activate win (EWMH
// _NET_ACTIVE_WINDOW client message, source indication 2 = pager).
func requestActivate(t *testing.T, c *xgb.Conn, win uint32) {
	t.Helper()
	root := xproto.Setup(c).DefaultScreen(c).Root
	ev := xproto.ClientMessageEvent{
		Format: 32,
		Window: xproto.Window(win),
		Type:   internAtom(t, c, "_NET_ACTIVE_WINDOW"),
		Data:   xproto.ClientMessageDataUnionData32New([]uint32{2, 0, 0, 0, 0}),
	}
	mask := uint32(xproto.EventMaskSubstructureRedirect | xproto.EventMaskSubstructureNotify)
	if err := xproto.SendEventChecked(c, false, root, mask, string(ev.Bytes())).Check(); err != nil {
		t.Fatal(err)
	}
}

func countColour(img image.Image, r image.Rectangle, want color.RGBA) int {
	n := 0
	for y := r.Min.Y; y < r.Max.Y; y++ {
		for x := r.Min.X; x < r.Max.X; x++ {
			if color.RGBAModel.Convert(img.At(x, y)).(color.RGBA) == want {
				n++
			}
		}
	}
	return n
}

// BenchmarkScreenshot measures the evidence pipeline under Xvfb 1280x800x24:
// grab + Downscale(640) + EncodePNG + Encrypt, with per-stage times.
func BenchmarkScreenshot(b *testing.B) {
	x := startX(b)
	w := x.xterm(b, "vigil bench", "-geometry", "120x40+0+0", "-e", "sh", "-c", "ls -l /usr/bin | head -40; sleep 600")
	x.activate(b, w)
	time.Sleep(300 * time.Millisecond) // let it draw
	src, err := Open(x.Display)
	if err != nil {
		b.Fatal(err)
	}
	defer src.Close()
	id, err := age.GenerateX25519Identity()
	if err != nil {
		b.Fatal(err)
	}
	recipient := id.Recipient().String()
	ctx := context.Background()
	var grab, scale, enc, crypt time.Duration
	var size int
	b.ResetTimer()
	for b.Loop() {
		t0 := time.Now()
		img, err := src.Screenshot(ctx)
		if err != nil {
			b.Fatal(err)
		}
		t1 := time.Now()
		small := Downscale(img, 640)
		t2 := time.Now()
		data, err := EncodePNG(small)
		if err != nil {
			b.Fatal(err)
		}
		t3 := time.Now()
		out, err := Encrypt(recipient, data)
		if err != nil {
			b.Fatal(err)
		}
		t4 := time.Now()
		grab, scale, enc, crypt = grab+t1.Sub(t0), scale+t2.Sub(t1), enc+t3.Sub(t2), crypt+t4.Sub(t3)
		size = len(out)
	}
	n := float64(b.N)
	b.ReportMetric(float64(grab.Microseconds())/n/1000, "grab-ms/op")
	b.ReportMetric(float64(scale.Microseconds())/n/1000, "downscale-ms/op")
	b.ReportMetric(float64(enc.Microseconds())/n/1000, "png-ms/op")
	b.ReportMetric(float64(crypt.Microseconds())/n/1000, "encrypt-ms/op")
	b.ReportMetric(float64(size), "evidence-bytes")
}
