package winpipe

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/windows"
)

// Conn is one end of a connected pipe.
type Conn struct {
	*os.File
	path string
	pid  uint32 // the client's process id, on the server's end
}

type addr string

func (a addr) Network() string { return "pipe" }
func (a addr) String() string  { return string(a) }

func (c *Conn) LocalAddr() net.Addr  { return addr(c.path) }
func (c *Conn) RemoteAddr() net.Addr { return addr(c.path) }

// ClientProcessID is the id of the process that opened the client end, as
// GetNamedPipeClientProcessId said when the connection was accepted (0 on a
// dialled connection).
func (c *Conn) ClientProcessID() uint32 { return c.pid }

// Listener accepts connections on a named pipe.
type Listener struct {
	path   string
	path16 *uint16
	sa     *windows.SecurityAttributes
	bufSz  uint32

	acceptMu sync.Mutex // one ConnectNamedPipe at a time on next
	connEv   windows.Handle
	closeEv  windows.Handle // set by Close to end a waiting Accept

	mu     sync.Mutex
	next   windows.Handle // the instance the next client connects to
	closed bool
}

// Listen creates the pipe path (\\.\pipe\NAME) with the security
// descriptor sddl (the DACL decides who may open it) and buffers of bufSize
// bytes each way. Remote (SMB) clients are rejected.
func Listen(path, sddl string, bufSize int) (*Listener, error) {
	sd, err := windows.SecurityDescriptorFromString(sddl)
	if err != nil {
		return nil, fmt.Errorf("pipe security descriptor %q: %w", sddl, err)
	}
	p16, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, fmt.Errorf("pipe name %q: %w", path, err)
	}
	l := &Listener{path: path, path16: p16, bufSz: uint32(bufSize),
		sa: &windows.SecurityAttributes{SecurityDescriptor: sd}}
	l.sa.Length = uint32(unsafe.Sizeof(*l.sa))
	if l.next, err = l.instance(true); err != nil {
		return nil, err
	}
	if l.connEv, err = windows.CreateEvent(nil, 1, 0, nil); err != nil {
		windows.CloseHandle(l.next)
		return nil, fmt.Errorf("create pipe connect event: %w", err)
	}
	if l.closeEv, err = windows.CreateEvent(nil, 1, 0, nil); err != nil {
		windows.CloseHandle(l.next)
		windows.CloseHandle(l.connEv)
		return nil, fmt.Errorf("create pipe close event: %w", err)
	}
	return l, nil
}

func (l *Listener) instance(first bool) (windows.Handle, error) {
	flags := uint32(windows.PIPE_ACCESS_DUPLEX | windows.FILE_FLAG_OVERLAPPED)
	if first {
		flags |= windows.FILE_FLAG_FIRST_PIPE_INSTANCE
	}
	mode := uint32(windows.PIPE_TYPE_BYTE | windows.PIPE_READMODE_BYTE | windows.PIPE_WAIT | windows.PIPE_REJECT_REMOTE_CLIENTS)
	h, err := windows.CreateNamedPipe(l.path16, flags, mode, windows.PIPE_UNLIMITED_INSTANCES, l.bufSz, l.bufSz, 0, l.sa)
	if err != nil {
		return windows.InvalidHandle, fmt.Errorf("create named pipe %s: %w", l.path, err)
	}
	return h, nil
}

// Accept waits for a client on the current instance and returns it as a
// *Conn; a new instance takes its place first.
func (l *Listener) Accept() (net.Conn, error) {
	l.acceptMu.Lock()
	defer l.acceptMu.Unlock()
	for {
		l.mu.Lock()
		h, closed := l.next, l.closed
		l.mu.Unlock()
		if closed {
			return nil, net.ErrClosed
		}
		err := l.connect(h)
		if errors.Is(err, windows.ERROR_NO_DATA) {
			// The client came and went before we saw it: make the
			// instance listen again.
			windows.DisconnectNamedPipe(h)
			continue
		}
		if err != nil {
			return nil, err
		}
		var pid uint32
		if err := windows.GetNamedPipeClientProcessId(h, &pid); err != nil {
			windows.DisconnectNamedPipe(h)
			return nil, fmt.Errorf("GetNamedPipeClientProcessId on %s: %w", l.path, err)
		}
		nh, err := l.instance(false)
		if err != nil {
			// h stays l.next: closing it would free the name.
			windows.DisconnectNamedPipe(h)
			return nil, err
		}
		l.mu.Lock()
		l.next = nh
		l.mu.Unlock()
		return &Conn{File: os.NewFile(uintptr(h), l.path), path: l.path, pid: pid}, nil
	}
}

// connect runs an overlapped ConnectNamedPipe on h, waiting on an event
// (the handle is not on the runtime's completion port yet) or on Close.
func (l *Listener) connect(h windows.Handle) error {
	if err := windows.ResetEvent(l.connEv); err != nil {
		return fmt.Errorf("reset pipe connect event: %w", err)
	}
	ov := windows.Overlapped{HEvent: l.connEv}
	err := windows.ConnectNamedPipe(h, &ov)
	switch {
	case err == nil, errors.Is(err, windows.ERROR_PIPE_CONNECTED):
		return nil
	case !errors.Is(err, windows.ERROR_IO_PENDING):
		return fmt.Errorf("ConnectNamedPipe on %s: %w", l.path, err)
	}
	ev, err := windows.WaitForMultipleObjects([]windows.Handle{l.connEv, l.closeEv}, false, windows.INFINITE)
	var n uint32
	if err != nil || ev != windows.WAIT_OBJECT_0 {
		windows.CancelIoEx(h, &ov)
		windows.GetOverlappedResult(h, &ov, &n, true)
		if err != nil {
			return fmt.Errorf("wait for a client on %s: %w", l.path, err)
		}
		return net.ErrClosed
	}
	if err := windows.GetOverlappedResult(h, &ov, &n, false); err != nil && !errors.Is(err, windows.ERROR_PIPE_CONNECTED) {
		return fmt.Errorf("ConnectNamedPipe on %s: %w", l.path, err)
	}
	return nil
}

// Close stops accepting; connections already accepted stay open. Once it
// returns the name is free.
func (l *Listener) Close() error {
	l.mu.Lock()
	if l.closed {
		l.mu.Unlock()
		return nil
	}
	l.closed = true
	l.mu.Unlock()
	windows.SetEvent(l.closeEv)
	l.acceptMu.Lock() // a waiting Accept has seen closeEv and cancelled
	defer l.acceptMu.Unlock()
	windows.CloseHandle(l.next)
	windows.CloseHandle(l.connEv)
	windows.CloseHandle(l.closeEv)
	return nil
}

func (l *Listener) Addr() net.Addr { return addr(l.path) }

// Dial opens the client end of path, waiting (until ctx ends) while every
// instance is busy. The client allows the server no impersonation
// (SECURITY_ANONYMOUS): it identifies the client by process id and token.
func Dial(ctx context.Context, path string) (*Conn, error) {
	p16, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return nil, fmt.Errorf("pipe name %q: %w", path, err)
	}
	for {
		h, err := windows.CreateFile(p16, windows.GENERIC_READ|windows.GENERIC_WRITE, 0, nil, windows.OPEN_EXISTING,
			windows.FILE_FLAG_OVERLAPPED|windows.SECURITY_SQOS_PRESENT|windows.SECURITY_ANONYMOUS, 0)
		if err == nil {
			return &Conn{File: os.NewFile(uintptr(h), path), path: path}, nil
		}
		if !errors.Is(err, windows.ERROR_PIPE_BUSY) {
			return nil, &os.PathError{Op: "open", Path: path, Err: err}
		}
		// Between a client's connect and the server's next instance there
		// is no free instance; that gap is short.
		t := time.NewTimer(10 * time.Millisecond)
		select {
		case <-ctx.Done():
			t.Stop()
			return nil, fmt.Errorf("open %s: all pipe instances busy: %w", path, ctx.Err())
		case <-t.C:
		}
	}
}
