package daemon_test

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/vigil-safeguarding/vigil/collector/daemon"
	"github.com/vigil-safeguarding/vigil/internal/backoff"
)

// floodStats counts what the flood did; updated atomically as it goes.
type floodStats struct {
	Connects       int64 // TCP connections made (silent and TLS kinds)
	DialFailures   int64
	Handshakes     int64 // TLS handshakes completed without a certificate
	ClosedByServer int64
	HeldTooLong    int64 // connections open longer than heldLimit, as the flooder saw them
	MaxHeldMillis  int64 // longest one was open (closed or still open at the end)
	IdleGRPC       int64 // certificate-less gRPC client connections kept idle
}

// heldLimit is the flooder's own "held too long" mark (reported, not
// asserted: it includes time in the kernel's accept backlog).
const heldLimit = 20 * time.Second

// flood keeps slots connections to addr for d, from eight loopback
// sources, in three kinds: silent TCP; TLS without a client certificate
// that then says nothing; and an idle gRPC client connection without a
// certificate (it answers keepalive pings, as the 19,980 connections of the
// original report did). A silent or TLS connection the server closes is
// reopened after 2 s; the gRPC client reconnects by itself.
func flood(addr string, slots int, d time.Duration, st *floodStats) {
	end := time.Now().Add(d)
	var wg sync.WaitGroup
	held := func(since time.Time) {
		h := time.Since(since)
		if h > heldLimit {
			atomic.AddInt64(&st.HeldTooLong, 1)
		}
		for {
			old := atomic.LoadInt64(&st.MaxHeldMillis)
			if h.Milliseconds() <= old || atomic.CompareAndSwapInt64(&st.MaxHeldMillis, old, h.Milliseconds()) {
				return
			}
		}
	}
	for i := 0; i < slots; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(2+i%8))}
			dialer := func(ctx context.Context, a string) (net.Conn, error) {
				d := net.Dialer{LocalAddr: src, Timeout: 2 * time.Second}
				return d.DialContext(ctx, "tcp", a)
			}
			if i%3 == 2 {
				conn, err := grpc.NewClient(addr, grpc.WithContextDialer(dialer),
					grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})))
				if err != nil {
					return
				}
				conn.Connect()
				atomic.AddInt64(&st.IdleGRPC, 1)
				time.Sleep(time.Until(end))
				conn.Close()
				return
			}
			for time.Now().Before(end) {
				c, err := dialer(context.Background(), addr)
				if err != nil {
					atomic.AddInt64(&st.DialFailures, 1)
					time.Sleep(2 * time.Second)
					continue
				}
				atomic.AddInt64(&st.Connects, 1)
				start := time.Now()
				var conn net.Conn = c
				if i%3 == 1 {
					tc := tls.Client(c, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13})
					tc.SetDeadline(end)
					if tc.Handshake() == nil {
						atomic.AddInt64(&st.Handshakes, 1)
					}
					conn = tc
				}
				conn.SetReadDeadline(end)
				_, err = io.Copy(io.Discard, conn)
				var ne net.Error
				if !(errors.As(err, &ne) && ne.Timeout()) {
					atomic.AddInt64(&st.ClosedByServer, 1)
				}
				held(start)
				c.Close()
				time.Sleep(2 * time.Second)
			}
		}(i)
	}
	wg.Wait()
}

// TestConnectionFloodWithoutCredentials reproduces issue 8 item 6: idle
// connections without a client certificate were never closed, the collector
// reached its file limit and agents, the admin CLI and the console all timed
// out. Here the collector runs as its own process under a 1024-descriptor
// limit while this process keeps 3000 such connections going from eight
// addresses for 15 s. Throughout, an enrolled agent keeps streaming and can
// open new connections, /healthz and the admin socket answer, the collector
// never holds more unauthenticated connections than its cap nor gets near
// the descriptor limit, and every flooding connection is closed within the
// handshake timeout / unauthenticated lifetime.
func TestConnectionFloodWithoutCredentials(t *testing.T) {
	if testing.Short() {
		t.Skip("15 s flood")
	}
	const slots, seconds, fdLimit = 3000, 25, 1024
	c := startCollectorProcess(t, fdLimit, 2*time.Second, 4*time.Second)
	a := c.mustEnroll(t, "year-7", "host-flood")
	s, err := a.openStream(t, "agent-1")
	if err != nil {
		t.Fatal(err)
	}
	seq := uint64(1)
	batch := func(what string) {
		t.Helper()
		if ack, err := s.batch(seq, findings(seq*10, seq*10+9)); err != nil || ack.Stored != 10 {
			t.Fatalf("%s: ack %v, err %v", what, ack, err)
		}
		seq++
	}
	batch("before the flood")
	limit, _ := c.scrape(t).value("vigil_connection_limit", "listener", "grpc")
	t.Logf("agent connection cap under a %d limit: %v", fdLimit, limit)

	var st floodStats
	floodDone := make(chan struct{})
	go func() { defer close(floodDone); flood(c.grpcAddr, slots, seconds*time.Second, &st) }()
	refused := func(m scrape) float64 {
		var n float64
		for _, mt := range m["vigil_refused_connections_total"].GetMetric() {
			n += mt.GetCounter().GetValue()
		}
		return n
	}
	waitFor(t, "the flood to be under way", 60*time.Second, func() bool {
		// every slot has tried once
		return atomic.LoadInt64(&st.Connects)+atomic.LoadInt64(&st.DialFailures)+atomic.LoadInt64(&st.IdleGRPC) >= slots
	})
	// Sample the collector's own figures throughout (a scrape is itself a
	// proof that the console still answers).
	var sampleMu sync.Mutex
	var maxUnauth, maxFDs, maxAge float64
	var samples int
	sampling, stopSampling := context.WithCancel(context.Background())
	sampled := make(chan struct{})
	go func() {
		defer close(sampled)
		for sampling.Err() == nil {
			if code, body, err := c.get("/metrics", 10*time.Second); err == nil && code == 200 {
				u, f := metricLine(body, `vigil_open_connections{listener="grpc",state="unauthenticated"}`), metricLine(body, "process_open_fds")
				age := metricLine(body, `vigil_oldest_unauthenticated_connection_seconds{listener="grpc"}`)
				sampleMu.Lock()
				maxUnauth, maxFDs, maxAge, samples = max(maxUnauth, u), max(maxFDs, f), max(maxAge, age), samples+1
				sampleMu.Unlock()
			}
			time.Sleep(50 * time.Millisecond)
		}
	}()
	rounds := 0
	for done := false; !done; {
		rounds++
		batch(fmt.Sprintf("round %d: existing stream", rounds))
		// A new connection with a certificate gets through (retrying as
		// the agent would), and replaces the old stream as a restarted
		// agent's would.
		waitFor(t, "a new agent connection during the flood", 30*time.Second, func() bool {
			s2, err := a.openStream(t, "agent-1") // the same agent process reconnecting
			if err != nil {
				t.Logf("new stream during the flood: %v", err)
				return false
			}
			s.cancel()
			s = s2
			return true
		})
		if code, body, err := c.get("/healthz", 10*time.Second); err != nil || code != 200 {
			t.Fatalf("round %d: /healthz %d %v %s", rounds, code, err, body)
		}
		if err := c.cliWithin(t, 30*time.Second, "devices", "list"); err != nil {
			t.Fatalf("round %d: admin socket: %v", rounds, err)
		}
		select {
		case <-floodDone:
			done = true
		case <-time.After(500 * time.Millisecond):
		}
	}
	stopSampling()
	<-sampled
	m := c.scrape(t)
	for _, mt := range m["vigil_refused_connections_total"].GetMetric() {
		t.Logf("refused %v: %v", mt.GetLabel(), mt.GetCounter().GetValue())
	}
	t.Logf("flood: %+v; the collector held at most %v unauthenticated connections and %v descriptors, the oldest for %.1f s (%d samples); %d rounds of checks; refused %v",
		st, maxUnauth, maxFDs, maxAge, samples, rounds, refused(m))
	if st.Connects < fdLimit/2 || st.IdleGRPC < slots/4 {
		t.Errorf("the flood made only %d connections (and %d idle gRPC clients)", st.Connects, st.IdleGRPC)
	}
	if maxFDs >= fdLimit-100 {
		t.Errorf("the collector reached %v of %d descriptors", maxFDs, fdLimit)
	}
	if maxUnauth > limit/4+1 {
		t.Errorf("the collector held %v unauthenticated connections, cap %v", maxUnauth, limit/4)
	}
	// Bounded in time: the collector held nothing without credentials
	// much past the 4 s lifetime. (Measured by the collector from accept:
	// what the flooder sees also includes time queued in the kernel's
	// accept backlog, which costs the collector no descriptor.)
	if maxAge > 10 || samples == 0 {
		t.Errorf("an unauthenticated connection was held %.1f s (%d samples)", maxAge, samples)
	}
	if st.ClosedByServer == 0 {
		t.Error("the collector closed no flooding connection")
	}
	waitFor(t, "flood connections released", 30*time.Second, func() bool {
		u, _ := c.scrape(t).value("vigil_open_connections", "listener", "grpc", "state", "unauthenticated")
		return u == 0
	})
	batch("after the flood")
}

// TestConsoleSlowClients: 100 connections trickling a request held the
// console for 40 s. Slow headers, slow bodies and idle keep-alive
// connections are now all closed by the server's timeouts while /healthz
// keeps answering.
func TestConsoleSlowClients(t *testing.T) {
	c := startCollector(t, daemon.Config{HTTP: daemon.HTTPLimits{
		ReadHeaderTimeout: time.Second, ReadTimeout: 2 * time.Second, IdleTimeout: 2 * time.Second}})
	const n = 100
	type result struct {
		kind string
		held time.Duration
		err  error
	}
	results := make(chan result, n)
	start := time.Now()
	tlsCfg, err := c.consoleTLS()
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < n; i++ {
		// no-handshake: a TCP connection that never starts TLS.
		kind := [...]string{"slow-header", "slow-body", "idle", "no-handshake"}[i%4]
		go func() {
			raw, err := net.DialTimeout("tcp", c.httpAddr, 10*time.Second)
			if err != nil {
				results <- result{kind, 0, err}
				return
			}
			defer raw.Close()
			conn := raw
			if kind != "no-handshake" {
				tc := tls.Client(raw, tlsCfg)
				if err := tc.Handshake(); err != nil {
					results <- result{kind, 0, err}
					return
				}
				conn = tc
			}
			t0 := time.Now()
			closed := make(chan struct{})
			go func() { io.Copy(io.Discard, conn); close(closed) }()
			var head, trickle string
			switch kind {
			case "slow-header":
				head, trickle = "GET /healthz HTTP/1.1\r\nHost: x\r\n", "X-Slow: aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa"
			case "slow-body":
				head = "POST /api/v1/session HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n"
				trickle = strings.Repeat(" ", 100000)
			case "idle":
				head = "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n"
			}
			conn.Write([]byte(head))
			for i := 0; i < len(trickle); i++ {
				select {
				case <-closed:
					results <- result{kind, time.Since(t0), nil}
					return
				case <-time.After(100 * time.Millisecond):
				}
				if _, err := conn.Write([]byte{trickle[i]}); err != nil {
					break
				}
			}
			select {
			case <-closed:
				results <- result{kind, time.Since(t0), nil}
			case <-time.After(60 * time.Second):
				results <- result{kind, time.Since(t0), errors.New("still open after 60 s")}
			}
		}()
	}
	// The console still serves others meanwhile.
	if code, body, err := c.get("/healthz", 10*time.Second); err != nil || code != 200 {
		t.Errorf("/healthz during slow clients: %d %v %s", code, err, body)
	}
	maxHeld := map[string]time.Duration{}
	for i := 0; i < n; i++ {
		r := <-results
		if r.err != nil {
			t.Errorf("%s: %v", r.kind, r.err)
			continue
		}
		maxHeld[r.kind] = max(maxHeld[r.kind], r.held)
	}
	t.Logf("slowest close by kind: %v (all within %s)", maxHeld, time.Since(start).Round(time.Millisecond))
	// Timeouts are 1-2 s; allow generous slack for a loaded machine, far
	// below the 100 s a slow body would take to finish (and the 40 s seen).
	for kind, d := range maxHeld {
		if d > 20*time.Second {
			t.Errorf("%s connection held %s", kind, d)
		}
	}
}

// TestAtCapacityRefusesWithStatus: at its limits the collector refuses
// newcomers (RESOURCE_EXHAUSTED with a retry delay once streams are full, a
// reset once connections are) and keeps serving the agents it has; never a
// crash, and room is reused when agents leave.
func TestAtCapacityRefusesWithStatus(t *testing.T) {
	// 12 connections: streams = 12 - min(4, 12/10) = 11.
	c := startCollector(t, daemon.Config{MaxConns: 12, MaxUnauthConns: 4})
	const n = 14
	var agents []*agent
	for i := 0; i < n; i++ {
		agents = append(agents, c.mustEnroll(t, "year-7", fmt.Sprintf("host-cap-%d", i)))
	}
	type live struct {
		s    *stream
		conn io.Closer
	}
	var held []live
	var exhausted, reset int
	for i, a := range agents {
		conn := c.dial(t, &a.cert)
		s, err := a.openStreamOn(t, conn, "cap")
		switch {
		case err == nil:
			held = append(held, live{s, conn})
		case status.Code(err) == codes.ResourceExhausted:
			if d, ok := backoff.RetryDelay(err); !ok || d <= 0 {
				t.Errorf("agent %d: RESOURCE_EXHAUSTED without a retry delay: %v", i, err)
			}
			exhausted++
		case status.Code(err) == codes.Unavailable:
			reset++
			conn.Close()
		default:
			t.Fatalf("agent %d: %v", i, err)
		}
	}
	t.Logf("%d streams, %d told RESOURCE_EXHAUSTED, %d connections reset", len(held), exhausted, reset)
	if len(held) != 11 || exhausted == 0 || reset == 0 {
		t.Errorf("%d streams (want 11), %d exhausted, %d reset: want both kinds of refusal", len(held), exhausted, reset)
	}
	for i, h := range held {
		if ack, err := h.s.batch(1, findings(1, 5)); err != nil || ack.Stored != 5 {
			t.Fatalf("held stream %d at capacity: ack %v err %v", i, ack, err)
		}
	}
	// Agents leave; their places are reused.
	for _, h := range held[:3] {
		h.s.cancel()
		h.conn.Close()
	}
	last := agents[n-1]
	waitFor(t, "a place freed for a waiting agent", 30*time.Second, func() bool {
		conn := c.dial(t, &last.cert)
		s, err := last.openStreamOn(t, conn, "cap")
		if err != nil {
			conn.Close()
			return false
		}
		ack, err := s.batch(1, findings(1, 5))
		return err == nil && ack.Stored == 5
	})
	if code, _, err := c.get("/healthz", 10*time.Second); err != nil || code != 200 {
		t.Errorf("/healthz at capacity: %d %v", code, err)
	}
}

// metricLine reads the value of the series line starting with series.
func metricLine(body, series string) float64 {
	for _, l := range strings.Split(body, "\n") {
		if strings.HasPrefix(l, series+" ") {
			var v float64
			fmt.Sscan(strings.TrimPrefix(l, series+" "), &v)
			return v
		}
	}
	return 0
}
