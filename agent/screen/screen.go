// Package screen watches the active window of one user's desktop session and
// captures screenshots as evidence for keyword-triggered safeguarding alerts.
//
// A Source reports the window the user has in front of them (its title, which
// for browsers carries the page title or the search query, its class, process
// ID and process name) every time the active window or its title changes, and
// grabs the whole screen on demand. Evidence is downscaled (Downscale),
// encoded (EncodePNG) and encrypted to the collector's age X25519 recipient
// (Encrypt) so that nothing on the device can read the spooled evidence.
//
// Platforms:
//
//   - Linux, X11 (Xorg): pure Go (github.com/jezek/xgb, CGO_ENABLED=0).
//     Event-driven: PropertyNotify on the root window's _NET_ACTIVE_WINDOW and on
//     the active window's _NET_WM_NAME / WM_NAME; no polling. Needs an
//     EWMH window manager (every desktop environment has one); until one sets
//     _NET_ACTIVE_WINDOW, Watch reports an empty Window. Screenshots use
//     GetImage on the root window. Must run inside the user's session (it needs
//     DISPLAY and access to the X authority cookie), not in the system service.
//   - Linux, Wayland: a Wayland compositor deliberately does not let one client
//     read another client's window titles or pixels. Only XWayland (legacy X11)
//     windows are visible through the XWayland display, and the root
//     window of XWayland does not show native Wayland windows, so the X11 code
//     would silently miss most activity (GNOME and KDE run browsers natively on
//     Wayland). Screenshots through the xdg-desktop-portal (GNOME, KDE) require
//     the user's interactive consent for each capture, which is unusable for
//     background monitoring. Open therefore returns an error wrapping
//     ErrUnavailable ("screen monitoring unavailable") in a Wayland session
//     (WAYLAND_DISPLAY set or XDG_SESSION_TYPE=wayland) rather than pretending
//     to monitor.
//   - Windows: SetWinEventHook (EVENT_SYSTEM_FOREGROUND, EVENT_OBJECT_NAMECHANGE)
//     on a locked OS thread with a message loop, and a once-a-second reread of
//     the foreground window for changes no WinEvent announced; screenshots with
//     GDI BitBlt of the virtual screen. Must run in the interactive user session
//     (a service in session 0 sees no desktop). Tested under Wine 8 on Xvfb
//     (scripts/wine-test.sh), where no WinEvents arrive and the reread reports.
//   - macOS: polls osascript (System Events) once per second for the
//     frontmost application and its front window title, and shells out to
//     screencapture. Needs the user's Accessibility consent (titles) and Screen
//     Recording consent (screenshots, otherwise only the desktop background
//     and menu bar are captured). Not event-driven, not tested by the project.
//   - Other systems: Open returns an error wrapping ErrUnavailable.
package screen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/draw"
	"image/png"
	"unicode/utf8"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/internal/contract"
)

// ErrUnavailable is wrapped by the error Open returns when screen monitoring
// cannot work on this platform or in this session (for example a Wayland
// session, or no display at all). Callers should report "screen monitoring
// unavailable" to the collector instead of retrying.
var ErrUnavailable = errors.New("screen monitoring unavailable")

// Window is what the user has in front of them.
type Window struct {
	Title   string // window title (_NET_WM_NAME, else WM_NAME, on X11)
	Class   string // WM_CLASS class part on X11 (e.g. "XTerm", "firefox"); window class on Windows; bundle identifier on macOS
	PID     int    // process ID (_NET_WM_PID on X11), 0 if unknown
	Process string // executable name (/proc/PID/comm on Linux) when PID is known
	ID      uint32 // platform window ID (X11 window, Windows HWND), 0 if none or unknown
	// TitleRaw and ProcessRaw keep, escaped (contract.Escape), a title or
	// process name that was not valid UTF-8: the session socket speaks
	// JSON, which would replace those bytes before the service sees them.
	// Set by the session helper (Window.KeepRaw).
	TitleRaw   string `json:",omitempty"`
	ProcessRaw string `json:",omitempty"`
}

// KeepRaw fills TitleRaw and ProcessRaw for strings that are not valid
// UTF-8, so the original bytes survive the trip to the service.
func (w *Window) KeepRaw() {
	if !utf8.ValidString(w.Title) {
		w.TitleRaw = contract.Truncate(contract.Escape(w.Title), 16<<10)
	}
	if !utf8.ValidString(w.Process) {
		w.ProcessRaw = contract.Truncate(contract.Escape(w.Process), 1024)
	}
}

// Source watches the active window of one user's desktop session.
type Source interface {
	// Watch calls fn with the active window now and on every change of the
	// active window or of its title, until ctx ends. fn is called from the
	// goroutine running Watch, one call at a time; a slow fn delays the next
	// report but loses only titles that were already replaced. Watch returns
	// nil when ctx ends or the Source is closed, and an error when the
	// connection to the desktop is lost.
	Watch(ctx context.Context, fn func(Window)) error
	// Screenshot grabs the whole screen.
	Screenshot(ctx context.Context) (image.Image, error)
	// Close releases the Source; running Watch calls return.
	Close() error
}

// Downscale returns img scaled with a box filter (area average) so that it is
// at most maxWidth pixels wide, keeping the aspect ratio. It returns img
// itself when it is already narrow enough or maxWidth <= 0.
func Downscale(img image.Image, maxWidth int) image.Image {
	b := img.Bounds()
	sw, sh := b.Dx(), b.Dy()
	if maxWidth <= 0 || sw <= maxWidth || sh <= 0 {
		return img
	}
	dw := maxWidth
	dh := int((int64(sh)*int64(dw) + int64(sw)/2) / int64(sw))
	if dh < 1 {
		dh = 1
	}
	src, ok := img.(*image.RGBA)
	if !ok {
		src = image.NewRGBA(image.Rect(0, 0, sw, sh))
		draw.Draw(src, src.Rect, img, b.Min, draw.Src)
	}
	// Source column span [xs[x], xs[x+1]) for each destination column; every
	// span holds at least one source pixel because dw < sw.
	xs := make([]int, dw+1)
	for x := 0; x <= dw; x++ {
		xs[x] = x * sw / dw
	}
	dst := image.NewRGBA(image.Rect(0, 0, dw, dh))
	acc := make([]uint32, dw*4)
	for y := 0; y < dh; y++ {
		y0 := y * sh / dh
		y1 := (y + 1) * sh / dh
		if y1 <= y0 {
			y1 = y0 + 1
		}
		clear(acc)
		for sy := y0; sy < y1; sy++ {
			row := src.Pix[(sy)*src.Stride : (sy)*src.Stride+sw*4]
			for x := 0; x < dw; x++ {
				var r, g, bl, a uint32
				for i := xs[x] * 4; i < xs[x+1]*4; i += 4 {
					r += uint32(row[i])
					g += uint32(row[i+1])
					bl += uint32(row[i+2])
					a += uint32(row[i+3])
				}
				acc[x*4] += r
				acc[x*4+1] += g
				acc[x*4+2] += bl
				acc[x*4+3] += a
			}
		}
		out := dst.Pix[y*dst.Stride : y*dst.Stride+dw*4]
		rows := uint32(y1 - y0)
		for x := 0; x < dw; x++ {
			n := rows * uint32(xs[x+1]-xs[x])
			half := n / 2
			out[x*4] = uint8((acc[x*4] + half) / n)
			out[x*4+1] = uint8((acc[x*4+1] + half) / n)
			out[x*4+2] = uint8((acc[x*4+2] + half) / n)
			out[x*4+3] = uint8((acc[x*4+3] + half) / n)
		}
	}
	return dst
}

// EncodePNG encodes img as PNG, favouring speed over size (evidence is
// encrypted, so it does not compress further; screenshots are mostly flat
// colour and still compress well at the fastest level).
func EncodePNG(img image.Image) ([]byte, error) {
	var buf bytes.Buffer
	enc := png.Encoder{CompressionLevel: png.BestSpeed}
	if err := enc.Encode(&buf, img); err != nil {
		return nil, fmt.Errorf("screen: encode png: %w", err)
	}
	return buf.Bytes(), nil
}

// Encrypt encrypts plaintext to the collector's age X25519 recipient
// ("age1..."), so that spooled evidence cannot be read on the device: only the
// holder of the matching identity (the collector) can decrypt it.
func Encrypt(recipient string, plaintext []byte) ([]byte, error) {
	r, err := age.ParseX25519Recipient(recipient)
	if err != nil {
		return nil, fmt.Errorf("screen: evidence recipient: %w", err)
	}
	var buf bytes.Buffer
	buf.Grow(len(plaintext) + 256)
	w, err := age.Encrypt(&buf, r)
	if err != nil {
		return nil, fmt.Errorf("screen: encrypt evidence: %w", err)
	}
	if _, err := w.Write(plaintext); err != nil {
		return nil, fmt.Errorf("screen: encrypt evidence: %w", err)
	}
	if err := w.Close(); err != nil {
		return nil, fmt.Errorf("screen: encrypt evidence: %w", err)
	}
	return buf.Bytes(), nil
}

// watchDone reports whether a Watch loop should end quietly: ctx ended or the
// Source was closed.
func watchDone(ctx context.Context, closed <-chan struct{}) bool {
	if ctx.Err() != nil {
		return true
	}
	select {
	case <-closed:
		return true
	default:
		return false
	}
}
