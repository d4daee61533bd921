package winwindow

import (
	"bufio"
	"errors"
	"fmt"
	"image"
	"io"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/windows"
)

var (
	user32   = windows.NewLazySystemDLL("user32.dll")
	gdi32    = windows.NewLazySystemDLL("gdi32.dll")
	kernel32 = windows.NewLazySystemDLL("kernel32.dll")

	procRegisterClassExW = user32.NewProc("RegisterClassExW")
	procCreateWindowExW  = user32.NewProc("CreateWindowExW")
	procDefWindowProcW   = user32.NewProc("DefWindowProcW")
	procShowWindow       = user32.NewProc("ShowWindow")
	procUpdateWindow     = user32.NewProc("UpdateWindow")
	procSetForegroundWin = user32.NewProc("SetForegroundWindow")
	procGetMessageW      = user32.NewProc("GetMessageW")
	procTranslateMessage = user32.NewProc("TranslateMessage")
	procDispatchMessageW = user32.NewProc("DispatchMessageW")
	procPostMessageW     = user32.NewProc("PostMessageW")
	procPostQuitMessage  = user32.NewProc("PostQuitMessage")
	procSetWindowTextW   = user32.NewProc("SetWindowTextW")
	procGetClientRect    = user32.NewProc("GetClientRect")
	procClientToScreen   = user32.NewProc("ClientToScreen")
	procCreateSolidBrush = gdi32.NewProc("CreateSolidBrush")
	procGetModuleHandleW = kernel32.NewProc("GetModuleHandleW")
	procGetForegroundWin = user32.NewProc("GetForegroundWindow")
	procBringWindowToTop = user32.NewProc("BringWindowToTop")
	procSetActiveWindow  = user32.NewProc("SetActiveWindow")
	procSetWindowPos     = user32.NewProc("SetWindowPos")
	procRedrawWindow     = user32.NewProc("RedrawWindow")
)

const (
	wsOverlappedWindow = 0x00CF0000
	wsVisible          = 0x10000000
	wsExTopmost        = 0x00000008
	swShow             = 5
	wmClose            = 0x0010
	wmDestroy          = 0x0002
	hwndTopmost        = ^uintptr(0) // (HWND)-1
	swpNoMove          = 0x0002
	swpNoSize          = 0x0001
	swpShowWindow      = 0x0040
	rdwInvalidate      = 0x0001
	rdwErase           = 0x0004
	rdwUpdateNow       = 0x0100
)

type wndClassEx struct {
	size       uint32
	style      uint32
	wndProc    uintptr
	clsExtra   int32
	wndExtra   int32
	instance   uintptr
	icon       uintptr
	cursor     uintptr
	background uintptr
	menuName   *uint16
	className  *uint16
	iconSm     uintptr
}

type winMsg struct {
	hwnd    uintptr
	message uint32
	wParam  uintptr
	lParam  uintptr
	time    uint32
	pt      struct{ x, y int32 }
	private uint32
}

// The window procedure is one callback for the process: callbacks are a
// limited resource that Go never frees.
var (
	procOnce sync.Once
	wndProc  uintptr
	classSeq atomic.Uint32
)

func windowProc(hwnd, msg, wp, lp uintptr) uintptr {
	if msg == wmDestroy {
		procPostQuitMessage.Call(0)
		return 0
	}
	r, _, _ := procDefWindowProcW.Call(hwnd, msg, wp, lp)
	return r
}

// Window is an open test window, run by its own locked OS thread.
type Window struct {
	HWND uintptr
	done chan error
}

// Open creates a visible 400x300 window titled title whose client area is
// filled with the colour rgb (0x00BBGGRR, a COLORREF), raises it and makes
// it the foreground window.
func Open(title string, rgb uint32) (*Window, error) {
	procOnce.Do(func() { wndProc = windows.NewCallback(windowProc) })
	ready := make(chan error, 1)
	w := &Window{done: make(chan error, 1)}
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		inst, _, _ := procGetModuleHandleW.Call(0)
		brush, _, err := procCreateSolidBrush.Call(uintptr(rgb))
		if brush == 0 {
			ready <- fmt.Errorf("CreateSolidBrush: %w", err)
			return
		}
		cls, _ := windows.UTF16PtrFromString(fmt.Sprintf("VigilTestWindow%d", classSeq.Add(1)))
		wc := wndClassEx{wndProc: wndProc, instance: inst, background: brush, className: cls}
		wc.size = uint32(unsafe.Sizeof(wc))
		if a, _, err := procRegisterClassExW.Call(uintptr(unsafe.Pointer(&wc))); a == 0 {
			ready <- fmt.Errorf("RegisterClassExW: %w", err)
			return
		}
		t16, _ := windows.UTF16PtrFromString(title)
		hwnd, _, err := procCreateWindowExW.Call(wsExTopmost, uintptr(unsafe.Pointer(cls)), uintptr(unsafe.Pointer(t16)),
			wsOverlappedWindow|wsVisible, 100, 100, 400, 300, 0, 0, inst, 0)
		if hwnd == 0 {
			ready <- fmt.Errorf("CreateWindowExW: %w", err)
			return
		}
		w.HWND = hwnd
		procShowWindow.Call(hwnd, swShow)
		procSetWindowPos.Call(hwnd, hwndTopmost, 0, 0, 0, 0, swpNoMove|swpNoSize|swpShowWindow)
		procBringWindowToTop.Call(hwnd)
		procSetForegroundWin.Call(hwnd)
		procSetActiveWindow.Call(hwnd)
		procUpdateWindow.Call(hwnd)
		procRedrawWindow.Call(hwnd, 0, 0, rdwInvalidate|rdwErase|rdwUpdateNow)
		ready <- nil
		var m winMsg
		for {
			r, _, err := procGetMessageW.Call(uintptr(unsafe.Pointer(&m)), 0, 0, 0)
			switch int32(r) {
			case 0:
				w.done <- nil
				return
			case -1:
				w.done <- fmt.Errorf("GetMessageW: %w", err)
				return
			}
			procTranslateMessage.Call(uintptr(unsafe.Pointer(&m)))
			procDispatchMessageW.Call(uintptr(unsafe.Pointer(&m)))
		}
	}()
	if err := <-ready; err != nil {
		return nil, err
	}
	return w, nil
}

// SetTitle retitles the window (WM_SETTEXT, handled by its thread).
func (w *Window) SetTitle(title string) error {
	t16, err := windows.UTF16PtrFromString(title)
	if err != nil {
		return err
	}
	if r, _, err := procSetWindowTextW.Call(w.HWND, uintptr(unsafe.Pointer(t16))); r == 0 {
		return fmt.Errorf("SetWindowTextW: %w", err)
	}
	return nil
}

// Foreground reports whether the window is the foreground window.
func (w *Window) Foreground() bool {
	h, _, _ := procGetForegroundWin.Call()
	return h == w.HWND
}

// ClientRect is the client area in screen coordinates.
func (w *Window) ClientRect() (image.Rectangle, error) {
	var r struct{ left, top, right, bottom int32 }
	if ok, _, err := procGetClientRect.Call(w.HWND, uintptr(unsafe.Pointer(&r))); ok == 0 {
		return image.Rectangle{}, fmt.Errorf("GetClientRect: %w", err)
	}
	pt := struct{ x, y int32 }{}
	if ok, _, err := procClientToScreen.Call(w.HWND, uintptr(unsafe.Pointer(&pt))); ok == 0 {
		return image.Rectangle{}, fmt.Errorf("ClientToScreen: %w", err)
	}
	return image.Rect(int(pt.x), int(pt.y), int(pt.x+r.right), int(pt.y+r.bottom)), nil
}

// Close destroys the window and waits for its thread to end.
func (w *Window) Close() error {
	procPostMessageW.Call(w.HWND, wmClose, 0, 0)
	return <-w.done
}

// Serve opens a window titled title and answers commands read from r, one
// a line: "title NEW" retitles it, "rect" prints its client rectangle
// ("rect X0 Y0 X1 Y1"), "foreground" says whether it is the foreground
// window ("foreground true"); EOF closes it. It prints "ready HWND" once the
// window is up and "ok" after each retitle.
func Serve(r io.Reader, out io.Writer, title string, rgb uint32) error {
	w, err := Open(title, rgb)
	if err != nil {
		return err
	}
	defer w.Close()
	fmt.Fprintf(out, "ready %d\n", w.HWND)
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		cmd, arg, _ := strings.Cut(sc.Text(), " ")
		switch cmd {
		case "title":
			if err := w.SetTitle(arg); err != nil {
				return err
			}
			fmt.Fprintln(out, "ok")
		case "rect":
			rc, err := w.ClientRect()
			if err != nil {
				return err
			}
			fmt.Fprintf(out, "rect %d %d %d %d\n", rc.Min.X, rc.Min.Y, rc.Max.X, rc.Max.Y)
		case "foreground":
			fmt.Fprintf(out, "foreground %t\n", w.Foreground())
		default:
			return errors.New("winwindow: unknown command " + cmd)
		}
	}
	return sc.Err()
}
