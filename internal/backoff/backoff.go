// Package backoff implements full-jitter exponential backoff and the gRPC
// RetryInfo detail the collector uses to ask agents to wait.
package backoff

import (
	"math/rand/v2"
	"time"
)

// Backoff is full-jitter exponential backoff: the n-th wait is uniform in
// [0, min(Max, Base·2^n)), which spreads a fleet's reconnects after a
// collector restart instead of synchronising them.
type Backoff struct {
	Base, Max time.Duration
	attempt   int
	rnd       func(n int64) int64
}

// New returns a Backoff with the given base and cap.
func New(base, max time.Duration) *Backoff {
	return &Backoff{Base: base, Max: max, rnd: rand.Int64N}
}

// Next returns the next wait, at least floor (a server's RetryInfo); with a
// floor the jitter is added on top so agents told the same delay still
// spread out.
func (b *Backoff) Next(floor time.Duration) time.Duration {
	ceil := b.Base << min(b.attempt, 30)
	if ceil > b.Max || ceil <= 0 {
		ceil = b.Max
	}
	b.attempt++
	if floor > 0 {
		return floor + time.Duration(b.rnd(int64(floor)+1))
	}
	// Never zero: a zero wait in a reconnect loop is a hot loop.
	return time.Millisecond + time.Duration(b.rnd(int64(ceil)))
}

// Reset starts over after a healthy period.
func (b *Backoff) Reset() { b.attempt = 0 }

// Attempt is the number of waits since the last Reset.
func (b *Backoff) Attempt() int { return b.attempt }
