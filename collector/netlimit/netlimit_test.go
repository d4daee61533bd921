package netlimit

import (
	"errors"
	"io"
	"net"
	"sync"
	"testing"
	"time"
)

// served accepts on a wrapped loopback listener and keeps what it accepts.
type served struct {
	l     *Listener
	mu    sync.Mutex
	conns []net.Conn
}

func serve(t *testing.T, cfg Config) *served {
	t.Helper()
	raw, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &served{l: Wrap(raw, cfg)}
	done := make(chan struct{})
	go func() {
		defer close(done)
		for {
			c, err := s.l.Accept()
			if err != nil {
				return
			}
			s.mu.Lock()
			s.conns = append(s.conns, c)
			s.mu.Unlock()
		}
	}()
	t.Cleanup(func() {
		s.l.Close()
		<-done
		s.mu.Lock()
		for _, c := range s.conns {
			c.Close()
		}
		s.mu.Unlock()
	})
	return s
}

func dialFrom(t *testing.T, addr, src string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// refusedAt reports whether a new connection from src is closed by the
// server (the reset may arrive before the dial returns).
func refusedAt(t *testing.T, addr, src string) bool {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		return true
	}
	defer c.Close()
	return closedByPeer(c, 10*time.Second)
}

// closedByPeer reports whether the server closed c within d.
func closedByPeer(c net.Conn, d time.Duration) bool {
	c.SetReadDeadline(time.Now().Add(d))
	_, err := c.Read(make([]byte, 1))
	var ne net.Error
	return err != nil && !(errors.As(err, &ne) && ne.Timeout())
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(30 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestPerSourceCap(t *testing.T) {
	var mu sync.Mutex
	reasons := map[string]int{}
	s := serve(t, Config{MaxUnauthPerSource: 3, OnRefuse: func(r string) { mu.Lock(); reasons[r]++; mu.Unlock() }})
	addr := s.l.Addr().String()
	var a []net.Conn
	for i := 0; i < 3; i++ {
		a = append(a, dialFrom(t, addr, "127.0.0.1"))
	}
	waitFor(t, "three accepted", func() bool { open, _ := s.l.Stats(); return open == 3 })
	if !refusedAt(t, addr, "127.0.0.1") {
		t.Fatal("fourth connection from one source was not closed")
	}
	// Another source has its own allowance.
	dialFrom(t, addr, "127.0.0.2")
	waitFor(t, "other source accepted", func() bool { open, _ := s.l.Stats(); return open == 4 })
	// Authenticating one frees its source's slot.
	s.mu.Lock()
	Authenticated(s.conns[0])
	s.mu.Unlock()
	again := dialFrom(t, addr, "127.0.0.1")
	waitFor(t, "slot reused", func() bool { open, unauth := s.l.Stats(); return open == 5 && unauth == 4 })
	if closedByPeer(again, 200*time.Millisecond) {
		t.Fatal("connection after a slot was freed was closed")
	}
	for _, c := range a[:2] {
		if closedByPeer(c, 50*time.Millisecond) {
			t.Fatal("an admitted connection was closed")
		}
	}
	mu.Lock()
	defer mu.Unlock()
	if reasons[ReasonUnauthSource] != 1 {
		t.Errorf("refusals %v, want one %s", reasons, ReasonUnauthSource)
	}
}

func TestUnauthPoolEvictsOldest(t *testing.T) {
	s := serve(t, Config{MaxUnauth: 4})
	addr := s.l.Addr().String()
	var cs []net.Conn
	for i := 0; i < 4; i++ {
		cs = append(cs, dialFrom(t, addr, "127.0.0.1"))
		n := i + 1
		waitFor(t, "accepted in order", func() bool { open, _ := s.l.Stats(); return open == n })
	}
	// An authenticated connection is never evicted.
	s.mu.Lock()
	Authenticated(s.conns[1])
	s.mu.Unlock()
	cs = append(cs, dialFrom(t, addr, "127.0.0.1"), dialFrom(t, addr, "127.0.0.1"))
	if !closedByPeer(cs[0], 10*time.Second) {
		t.Fatal("the oldest unauthenticated connection was not evicted")
	}
	waitFor(t, "pool stays at its cap", func() bool { _, unauth := s.l.Stats(); return unauth == 4 })
	if closedByPeer(cs[1], 100*time.Millisecond) {
		t.Fatal("an authenticated connection was evicted")
	}
	if closedByPeer(cs[5], 100*time.Millisecond) {
		t.Fatal("the newcomer was closed")
	}
}

func TestTotalCapAndLifetime(t *testing.T) {
	s := serve(t, Config{MaxConns: 2, UnauthLifetime: 300 * time.Millisecond})
	addr := s.l.Addr().String()
	a, b := dialFrom(t, addr, "127.0.0.1"), dialFrom(t, addr, "127.0.0.1")
	waitFor(t, "two accepted", func() bool { open, _ := s.l.Stats(); return open == 2 })
	s.mu.Lock()
	Authenticated(s.conns[0])
	s.mu.Unlock()
	if !refusedAt(t, addr, "127.0.0.1") {
		t.Fatal("connection over the total cap was not closed")
	}
	// b never authenticates: closed after its lifetime; a stays.
	if !closedByPeer(b, 10*time.Second) {
		t.Fatal("unauthenticated connection outlived its lifetime")
	}
	if closedByPeer(a, 500*time.Millisecond) {
		t.Fatal("authenticated connection was closed")
	}
	waitFor(t, "count released", func() bool { open, unauth := s.l.Stats(); return open == 1 && unauth == 0 })
	s.mu.Lock()
	s.conns[0].Close()
	s.mu.Unlock()
	waitFor(t, "all released", func() bool { open, _ := s.l.Stats(); return open == 0 })
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := a.Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("after server close: %v, want EOF", err)
	}
}
