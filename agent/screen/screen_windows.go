//go:build windows

// Windows implementation. Run by TestWindowsSource under Wine 8 on Xvfb
// (scripts/wine-test.sh): a window of another process, its retitle and a
// screenshot. Wine delivers no WinEvents to an out-of-context hook, so there
// the poll below is what reports; on Windows the hooks report at once.

package screen

import (
	"context"
	"errors"
	"fmt"
	"image"
	"path/filepath"
	"runtime"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

var (
	user32 = windows.NewLazySystemDLL("user32.dll")
	gdi32  = windows.NewLazySystemDLL("gdi32.dll")

	procGetForegroundWindow      = user32.NewProc("GetForegroundWindow")
	procGetWindowTextW           = user32.NewProc("GetWindowTextW")
	procGetWindowTextLengthW     = user32.NewProc("GetWindowTextLengthW")
	procGetWindowThreadProcessId = user32.NewProc("GetWindowThreadProcessId")
	procGetClassNameW            = user32.NewProc("GetClassNameW")
	procSetWinEventHook          = user32.NewProc("SetWinEventHook")
	procUnhookWinEvent           = user32.NewProc("UnhookWinEvent")
	procGetMessageW              = user32.NewProc("GetMessageW")
	procPeekMessageW             = user32.NewProc("PeekMessageW")
	procTranslateMessage         = user32.NewProc("TranslateMessage")
	procDispatchMessageW         = user32.NewProc("DispatchMessageW")
	procPostThreadMessageW       = user32.NewProc("PostThreadMessageW")
	procGetSystemMetrics         = user32.NewProc("GetSystemMetrics")
	procGetDC                    = user32.NewProc("GetDC")
	procReleaseDC                = user32.NewProc("ReleaseDC")
	procSetProcessDPIAware       = user32.NewProc("SetProcessDPIAware")

	procCreateCompatibleDC     = gdi32.NewProc("CreateCompatibleDC")
	procCreateCompatibleBitmap = gdi32.NewProc("CreateCompatibleBitmap")
	procSelectObject           = gdi32.NewProc("SelectObject")
	procBitBlt                 = gdi32.NewProc("BitBlt")
	procGetDIBits              = gdi32.NewProc("GetDIBits")
	procDeleteObject           = gdi32.NewProc("DeleteObject")
	procDeleteDC               = gdi32.NewProc("DeleteDC")
)

const (
	eventSystemForeground  = 0x0003
	eventObjectNameChange  = 0x800C
	winEventOutOfContext   = 0x0000
	winEventSkipOwnProcess = 0x0002
	objidWindow            = 0
	childidSelf            = 0

	wmQuit     = 0x0012
	wmUser     = 0x0400
	pmNoRemove = 0x0000

	smXVirtualScreen  = 76
	smYVirtualScreen  = 77
	smCXVirtualScreen = 78
	smCYVirtualScreen = 79

	srcCopy     = 0x00CC0020
	captureBlt  = 0x40000000
	biRGB       = 0
	dibRGBColor = 0
)

type winMsg struct {
	hwnd    uintptr
	message uint32
	wParam  uintptr
	lParam  uintptr
	time    uint32
	pt      struct{ x, y int32 }
	private uint32
}

type bitmapInfoHeader struct {
	Size          uint32
	Width         int32
	Height        int32
	Planes        uint16
	BitCount      uint16
	Compression   uint32
	SizeImage     uint32
	XPelsPerMeter int32
	YPelsPerMeter int32
	ClrUsed       uint32
	ClrImportant  uint32
}

// bitmapInfo is BITMAPINFO with room for three BI_BITFIELDS masks.
type bitmapInfo struct {
	Header bitmapInfoHeader
	Colors [4]uint32
}

// The WinEvent callback is created once (callbacks are a limited resource)
// and dispatches by hook handle to the Watch that installed it.
var (
	hookOnce     sync.Once
	hookCallback uintptr
	hookMu       sync.Mutex
	hookTargets  = map[uintptr]chan struct{}{}
)

func winEventProc(hook, event, hwnd, idObject, idChild, idEventThread, eventTime uintptr) uintptr {
	if event == eventObjectNameChange && (int32(idObject) != objidWindow || int32(idChild) != childidSelf) {
		return 0 // a control inside a window was renamed, not a window title
	}
	hookMu.Lock()
	ch := hookTargets[hook]
	hookMu.Unlock()
	if ch != nil {
		select {
		case ch <- struct{}{}:
		default: // a wake-up is already pending; Watch reads the current state
		}
	}
	return 0
}

// foregroundPoll is how often Watch rereads the foreground window in case
// no WinEvent said it changed.
const foregroundPoll = time.Second

var dpiOnce sync.Once

// Open checks that this process runs in an interactive session. display is
// ignored on Windows.
func Open(display string) (Source, error) {
	for _, p := range []*windows.LazyProc{procGetForegroundWindow, procGetWindowTextW, procSetWinEventHook, procBitBlt, procGetDIBits} {
		if err := p.Find(); err != nil {
			return nil, fmt.Errorf("%w: %v", ErrUnavailable, err)
		}
	}
	var session uint32
	if err := windows.ProcessIdToSessionId(windows.GetCurrentProcessId(), &session); err == nil && session == 0 {
		return nil, fmt.Errorf("%w: running in session 0 (a service); start the screen helper in the user's session", ErrUnavailable)
	}
	// Physical pixels for screenshots on scaled displays. Best effort; it
	// affects the whole process, which is the per-user helper.
	dpiOnce.Do(func() {
		if procSetProcessDPIAware.Find() == nil {
			procSetProcessDPIAware.Call()
		}
	})
	return &winSource{closed: make(chan struct{})}, nil
}

type winSource struct {
	closeOnce sync.Once
	closed    chan struct{}
}

func (s *winSource) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// Watch implements Source with two WinEvent hooks on a locked OS thread that
// runs a message loop (out-of-context hooks are delivered during GetMessage).
func (s *winSource) Watch(ctx context.Context, fn func(Window)) error {
	if watchDone(ctx, s.closed) {
		return nil
	}
	hookOnce.Do(func() { hookCallback = windows.NewCallback(winEventProc) })

	notify := make(chan struct{}, 1)
	ready := make(chan uint32, 1)
	loopErr := make(chan error, 1)
	go func() {
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
		var m winMsg
		// Force creation of this thread's message queue so that
		// PostThreadMessageW(WM_QUIT) cannot be lost.
		procPeekMessageW.Call(uintptr(unsafe.Pointer(&m)), 0, wmUser, wmUser, pmNoRemove)
		var hooks []uintptr
		defer func() {
			hookMu.Lock()
			for _, h := range hooks {
				delete(hookTargets, h)
			}
			hookMu.Unlock()
			for _, h := range hooks {
				procUnhookWinEvent.Call(h)
			}
		}()
		for _, ev := range []uintptr{eventSystemForeground, eventObjectNameChange} {
			h, _, err := procSetWinEventHook.Call(ev, ev, 0, hookCallback, 0, 0, winEventOutOfContext|winEventSkipOwnProcess)
			if h == 0 {
				loopErr <- fmt.Errorf("screen: SetWinEventHook(0x%x): %w", ev, err)
				return
			}
			hookMu.Lock()
			hookTargets[h] = notify
			hookMu.Unlock()
			hooks = append(hooks, h)
		}
		ready <- windows.GetCurrentThreadId()
		for {
			r, _, err := procGetMessageW.Call(uintptr(unsafe.Pointer(&m)), 0, 0, 0)
			switch int32(r) {
			case 0: // WM_QUIT
				loopErr <- nil
				return
			case -1:
				loopErr <- fmt.Errorf("screen: GetMessageW: %w", err)
				return
			}
			procTranslateMessage.Call(uintptr(unsafe.Pointer(&m)))
			procDispatchMessageW.Call(uintptr(unsafe.Pointer(&m)))
		}
	}()

	var tid uint32
	select {
	case tid = <-ready:
	case err := <-loopErr:
		return err
	}
	defer func() {
		procPostThreadMessageW.Call(uintptr(tid), wmQuit, 0, 0)
		<-loopErr
	}()

	last := foregroundWindow(Window{})
	fn(last)
	// The hooks miss changes where no WinEvent reaches an out-of-context
	// hook (Wine 8 sends none; on Windows, windows of a desktop the helper
	// is not on). A slow poll of the foreground window bounds how long a
	// change can go unseen; it costs three user32 calls a second.
	poll := time.NewTicker(foregroundPoll)
	defer poll.Stop()
	for {
		select {
		case <-poll.C:
			w := foregroundWindow(last)
			if w != last {
				last = w
				fn(w)
			}
		case <-ctx.Done():
			return nil
		case <-s.closed:
			return nil
		case err := <-loopErr:
			loopErr <- err // for the deferred wait
			if err == nil {
				err = errors.New("screen: WinEvent message loop ended")
			}
			return err
		case <-notify:
			w := foregroundWindow(last)
			if w != last {
				last = w
				fn(w)
			}
		}
	}
}

// foregroundWindow describes the foreground window; prev avoids reopening the
// process when only the title changed.
func foregroundWindow(prev Window) Window {
	hwnd, _, _ := procGetForegroundWindow.Call()
	if hwnd == 0 {
		return Window{}
	}
	w := Window{ID: uint32(hwnd), Title: windowText(hwnd), Class: className(hwnd)}
	var pid uint32
	procGetWindowThreadProcessId.Call(hwnd, uintptr(unsafe.Pointer(&pid)))
	w.PID = int(pid)
	if w.PID != 0 && w.PID == prev.PID && w.ID == prev.ID {
		w.Process = prev.Process
	} else {
		w.Process = processName(pid)
	}
	return w
}

func windowText(hwnd uintptr) string {
	n, _, _ := procGetWindowTextLengthW.Call(hwnd)
	if n == 0 {
		return ""
	}
	if n > 1<<15 {
		n = 1 << 15
	}
	buf := make([]uint16, n+1)
	r, _, _ := procGetWindowTextW.Call(hwnd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	return windows.UTF16ToString(buf[:r])
}

func className(hwnd uintptr) string {
	buf := make([]uint16, 256)
	r, _, _ := procGetClassNameW.Call(hwnd, uintptr(unsafe.Pointer(&buf[0])), uintptr(len(buf)))
	return windows.UTF16ToString(buf[:r])
}

func processName(pid uint32) string {
	if pid == 0 {
		return ""
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return ""
	}
	defer windows.CloseHandle(h)
	buf := make([]uint16, windows.MAX_LONG_PATH)
	n := uint32(len(buf))
	if err := windows.QueryFullProcessImageName(h, 0, &buf[0], &n); err != nil {
		return ""
	}
	return filepath.Base(windows.UTF16ToString(buf[:n]))
}

// Screenshot implements Source: GDI BitBlt of the whole virtual screen (all
// monitors) into a 32-bit top-down DIB.
func (s *winSource) Screenshot(ctx context.Context) (image.Image, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	x, _, _ := procGetSystemMetrics.Call(smXVirtualScreen)
	y, _, _ := procGetSystemMetrics.Call(smYVirtualScreen)
	wr, _, _ := procGetSystemMetrics.Call(smCXVirtualScreen)
	hr, _, _ := procGetSystemMetrics.Call(smCYVirtualScreen)
	w, h := int(int32(wr)), int(int32(hr))
	if w <= 0 || h <= 0 {
		return nil, fmt.Errorf("screen: no desktop to capture (%dx%d)", w, h)
	}
	screenDC, _, err := procGetDC.Call(0)
	if screenDC == 0 {
		return nil, fmt.Errorf("screen: GetDC: %w", err)
	}
	defer procReleaseDC.Call(0, screenDC)
	memDC, _, err := procCreateCompatibleDC.Call(screenDC)
	if memDC == 0 {
		return nil, fmt.Errorf("screen: CreateCompatibleDC: %w", err)
	}
	defer procDeleteDC.Call(memDC)
	bmp, _, err := procCreateCompatibleBitmap.Call(screenDC, uintptr(w), uintptr(h))
	if bmp == 0 {
		return nil, fmt.Errorf("screen: CreateCompatibleBitmap: %w", err)
	}
	defer procDeleteObject.Call(bmp)
	old, _, _ := procSelectObject.Call(memDC, bmp)
	ok, _, err := procBitBlt.Call(memDC, 0, 0, uintptr(w), uintptr(h), screenDC, x, y, srcCopy|captureBlt)
	procSelectObject.Call(memDC, old) // GetDIBits wants the bitmap deselected
	if ok == 0 {
		return nil, fmt.Errorf("screen: BitBlt: %w", err)
	}
	bi := bitmapInfo{Header: bitmapInfoHeader{
		Width:       int32(w),
		Height:      -int32(h), // top-down rows
		Planes:      1,
		BitCount:    32,
		Compression: biRGB,
	}}
	bi.Header.Size = uint32(unsafe.Sizeof(bi.Header))
	img := image.NewRGBA(image.Rect(0, 0, w, h))
	lines, _, err := procGetDIBits.Call(memDC, bmp, 0, uintptr(h),
		uintptr(unsafe.Pointer(&img.Pix[0])), uintptr(unsafe.Pointer(&bi)), dibRGBColor)
	if int(lines) != h {
		return nil, fmt.Errorf("screen: GetDIBits copied %d of %d lines: %w", lines, h, err)
	}
	// BGRX -> RGBA in place.
	p := img.Pix
	for i := 0; i+3 < len(p); i += 4 {
		p[i], p[i+2], p[i+3] = p[i+2], p[i], 0xff
	}
	return img, nil
}
