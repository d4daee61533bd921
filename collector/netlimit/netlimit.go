// Package netlimit bounds the connections a listener holds, so that no
// client without credentials can use up the collector's file descriptors:
// a total cap kept below the process's descriptor limit (leaving a reserve
// for the store), and caps on connections that have not authenticated, per
// source address and in all, each of which is also closed if it has not
// authenticated within a lifetime. A connection over the total or
// per-source cap is closed at once with a reset; the accept loop never
// stops.
//
// When the pool of unauthenticated connections is full, the oldest of them
// is closed to make room rather than the newcomer refused: before its TLS
// handshake a real agent cannot be told from an attacker, so refusing
// newcomers would let a flood from many addresses lock every agent out,
// while evicting the oldest means a flood must outpace a handshake (a few
// milliseconds on a school network) to starve anyone.
//
// What "authenticated" means is the server's business: it calls
// Authenticated on the connection once a verified client certificate (or
// anything else it trusts) has been seen. Until then the connection counts
// as unauthenticated, including while its TLS handshake runs.
package netlimit

import (
	"container/list"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"
)

// Refusal reasons passed to Config.OnRefuse.
const (
	ReasonTotal        = "total_limit"
	ReasonUnauthTotal  = "unauthenticated_limit_evicted"
	ReasonUnauthSource = "unauthenticated_per_source_limit"
	ReasonUnauthExpiry = "unauthenticated_lifetime"
)

// Config for Wrap. A zero cap means no cap of that kind.
type Config struct {
	MaxConns           int
	MaxUnauth          int
	MaxUnauthPerSource int
	// UnauthLifetime closes a connection still unauthenticated this long
	// after it was accepted (a handshake that never finishes, an enrollment
	// connection left open).
	UnauthLifetime time.Duration
	// OnRefuse, if set, is called for every connection closed by a limit.
	OnRefuse func(reason string)
}

// Listener is a net.Listener with the limits of Config.
type Listener struct {
	net.Listener
	cfg Config

	mu        sync.Mutex
	open      int
	unauth    int
	perSource map[netip.Addr]int
	oldest    *list.List // of *Conn still unauthenticated, oldest first
}

// Wrap applies cfg to l.
func Wrap(l net.Listener, cfg Config) *Listener {
	return &Listener{Listener: l, cfg: cfg, perSource: map[netip.Addr]int{}, oldest: list.New()}
}

// SetMaxConns changes the total cap (the daemon lowers it as the store
// opens more files). Connections already held are kept.
func (l *Listener) SetMaxConns(n int) {
	l.mu.Lock()
	l.cfg.MaxConns = n
	l.mu.Unlock()
}

// MaxConns is the current total cap.
func (l *Listener) MaxConns() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.cfg.MaxConns
}

// Stats reports the connections held: all of them, and how many have not
// authenticated.
func (l *Listener) Stats() (open, unauthenticated int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.open, l.unauth
}

// OldestUnauthenticated is how long the oldest connection still without
// authentication has been held (0 when there is none). It should never
// much exceed Config.UnauthLifetime.
func (l *Listener) OldestUnauthenticated() time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	if f := l.oldest.Front(); f != nil {
		return time.Since(f.Value.(*Conn).accepted)
	}
	return 0
}

// Accept returns the next connection within the limits, closing the ones
// over them.
func (l *Listener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		src := addrOf(c.RemoteAddr())
		lc := &Conn{Conn: c, l: l, src: src, accepted: time.Now()}
		reason, victim := l.admit(lc)
		if reason != "" {
			reset(c)
			l.refused(reason)
			continue
		}
		if victim != nil {
			l.refused(ReasonUnauthTotal)
			victim.Close()
		}
		if l.cfg.UnauthLifetime > 0 {
			lc.tmu.Lock()
			lc.timer = time.AfterFunc(l.cfg.UnauthLifetime, lc.expire)
			lc.tmu.Unlock()
		}
		return lc, nil
	}
}

func (l *Listener) refused(reason string) {
	if l.cfg.OnRefuse != nil {
		l.cfg.OnRefuse(reason)
	}
}

// admit takes c into the counts, or says why not; victim, if not nil, is
// the oldest unauthenticated connection, to be closed to make room.
func (l *Listener) admit(c *Conn) (reason string, victim *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	switch {
	case l.cfg.MaxConns > 0 && l.open >= l.cfg.MaxConns:
		return ReasonTotal, nil
	case l.cfg.MaxUnauthPerSource > 0 && l.perSource[c.src] >= l.cfg.MaxUnauthPerSource:
		return ReasonUnauthSource, nil
	}
	if l.cfg.MaxUnauth > 0 && l.unauth >= l.cfg.MaxUnauth {
		if front := l.oldest.Front(); front != nil {
			victim = front.Value.(*Conn)
			l.oldest.Remove(front)
			victim.elem = nil
		}
	}
	l.open++
	l.unauth++
	l.perSource[c.src]++
	c.elem = l.oldest.PushBack(c)
	return "", victim
}

// leaveUnauth moves a connection out of the unauthenticated counts.
func (l *Listener) leaveUnauth(c *Conn) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.unauth--
	if l.perSource[c.src]--; l.perSource[c.src] <= 0 {
		delete(l.perSource, c.src)
	}
	if c.elem != nil {
		l.oldest.Remove(c.elem)
		c.elem = nil
	}
}

func (l *Listener) closed(c *Conn, wasUnauth bool) {
	if wasUnauth {
		l.leaveUnauth(c)
	}
	l.mu.Lock()
	l.open--
	l.mu.Unlock()
}

// Conn is a connection accepted by a Listener.
type Conn struct {
	net.Conn
	l        *Listener
	src      netip.Addr
	accepted time.Time
	tmu      sync.Mutex
	timer    *time.Timer
	elem     *list.Element // in l.oldest while unauthenticated; guarded by l.mu

	// state: 0 unauthenticated, 1 authenticated, 2 closed.
	state     atomic.Int32
	closeOnce sync.Once
}

// Authenticated marks c as authenticated (no longer subject to the
// unauthenticated caps and lifetime). c may be any net.Conn; only a Conn
// from a Listener is affected.
func Authenticated(c net.Conn) {
	lc, ok := c.(*Conn)
	if !ok {
		return
	}
	if lc.state.CompareAndSwap(0, 1) {
		lc.stopTimer()
		lc.l.leaveUnauth(lc)
	}
}

func (c *Conn) stopTimer() {
	c.tmu.Lock()
	defer c.tmu.Unlock()
	if c.timer != nil {
		c.timer.Stop()
	}
}

func (c *Conn) expire() {
	if c.state.Load() == 0 {
		c.l.refused(ReasonUnauthExpiry)
		c.Close()
	}
}

// Close closes the connection and releases its place.
func (c *Conn) Close() error {
	err := c.Conn.Close()
	c.closeOnce.Do(func() {
		c.stopTimer()
		prev := c.state.Swap(2)
		c.l.closed(c, prev == 0)
	})
	return err
}

// reset closes c with RST rather than FIN, so a refused connection leaves
// no TIME_WAIT state behind on the server.
func reset(c net.Conn) {
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
	c.Close()
}

func addrOf(a net.Addr) netip.Addr {
	if ta, ok := a.(*net.TCPAddr); ok {
		ip, _ := netip.AddrFromSlice(ta.IP)
		return ip.Unmap()
	}
	if ap, err := netip.ParseAddrPort(a.String()); err == nil {
		return ap.Addr().Unmap()
	}
	return netip.Addr{}
}
