package server

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"sort"
	"strings"
	"sync"
	"time"

	"golang.org/x/time/rate"
	"google.golang.org/grpc/peer"
)

// failLimiter is a token bucket per source address that only failures
// drain: a source may fail burst times at once and then once per
// 1/rate seconds. Successful enrollments cost nothing, so a whole school
// behind one NAT enrolling with good tokens is never slowed; a source
// guessing tokens is.
type failLimiter struct {
	mu      sync.Mutex
	rate    rate.Limit
	burst   int
	now     func() time.Time
	buckets map[netip.Addr]*rate.Limiter
}

// maxTrackedSources bounds the limiter's memory under a spoofed-source or
// many-address flood; full buckets are forgotten first.
const maxTrackedSources = 65536

func newFailLimiter(perMinute float64, burst int, now func() time.Time) *failLimiter {
	return &failLimiter{rate: rate.Limit(perMinute / 60), burst: burst, now: now, buckets: map[netip.Addr]*rate.Limiter{}}
}

// wait returns how long src must wait before its next attempt (0: may try).
func (l *failLimiter) wait(src netip.Addr) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	b, ok := l.buckets[src]
	if !ok {
		return 0
	}
	tokens := b.TokensAt(l.now())
	if tokens >= 1 {
		return 0
	}
	return time.Duration((1 - tokens) / float64(l.rate) * float64(time.Second))
}

// failed spends one token of src, going into debt when it has none, so a
// source that keeps failing keeps waiting.
func (l *failLimiter) failed(src netip.Addr) {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	b, ok := l.buckets[src]
	if !ok {
		if len(l.buckets) >= maxTrackedSources {
			l.prune(now)
		}
		b = rate.NewLimiter(l.rate, l.burst)
		l.buckets[src] = b
	}
	b.ReserveN(now, 1)
}

func (l *failLimiter) prune(now time.Time) {
	for a, b := range l.buckets {
		if b.TokensAt(now) >= float64(l.burst) {
			delete(l.buckets, a)
		}
	}
	// Still full: drop arbitrary entries rather than grow without bound.
	for a := range l.buckets {
		if len(l.buckets) < maxTrackedSources/2 {
			break
		}
		delete(l.buckets, a)
	}
}

// sourceAddr is the caller's IP, unmapped, or the zero Addr when unknown.
func sourceAddr(ctx context.Context) netip.Addr {
	p, ok := peer.FromContext(ctx)
	if !ok || p.Addr == nil {
		return netip.Addr{}
	}
	if ta, ok := p.Addr.(*net.TCPAddr); ok {
		a, _ := netip.AddrFromSlice(ta.IP)
		return a.Unmap()
	}
	ap, err := netip.ParseAddrPort(p.Addr.String())
	if err != nil {
		return netip.Addr{}
	}
	return ap.Addr().Unmap()
}

// refusalLog keeps a flood of refused enrollments from flooding the log:
// the first refusal after a quiet interval is logged at once with its
// details; the ones that follow within the interval are counted and
// written as one line per interval with counts by reason.
type refusalLog struct {
	log      *slog.Logger
	interval time.Duration

	mu      sync.Mutex
	timer   *time.Timer
	total   int
	reasons map[string]int
	sources map[netip.Addr]int
}

// maxLoggedSources bounds the per-interval source tally.
const maxLoggedSources = 1024

func newRefusalLog(log *slog.Logger, interval time.Duration) *refusalLog {
	return &refusalLog{log: log, interval: interval, reasons: map[string]int{}, sources: map[netip.Addr]int{}}
}

func (r *refusalLog) refused(src netip.Addr, reason string, attrs ...any) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.timer == nil {
		r.log.Warn("enrollment refused", append([]any{"source", src.String(), "reason", reason}, attrs...)...)
		r.timer = time.AfterFunc(r.interval, r.flush)
		return
	}
	r.total++
	r.reasons[reason]++
	if _, ok := r.sources[src]; ok || len(r.sources) < maxLoggedSources {
		r.sources[src]++
	}
}

func (r *refusalLog) flush() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.total == 0 {
		r.timer = nil
		return
	}
	reasons := make([]string, 0, len(r.reasons))
	for k, n := range r.reasons {
		reasons = append(reasons, fmt.Sprintf("%s=%d", k, n))
	}
	sort.Strings(reasons)
	var top netip.Addr
	for a, n := range r.sources {
		if n > r.sources[top] {
			top = a
		}
	}
	r.log.Warn("enrollments refused (aggregated)", "count", r.total, "interval", r.interval,
		"reasons", strings.Join(reasons, ","), "sources", len(r.sources), "top_source", top.String(), "top_source_count", r.sources[top])
	r.total = 0
	r.reasons = map[string]int{}
	r.sources = map[netip.Addr]int{}
	r.timer = time.AfterFunc(r.interval, r.flush)
}
