package auth

import (
	"sync"
	"time"
)

// RateLimiter counts sign-in attempts per key (username+IP) in a sliding
// window: failed ones, and ones still being checked.
type RateLimiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	fails  map[string][]attempt
	nextID uint64
}

type attempt struct {
	at time.Time
	id uint64
}

// NewRateLimiter allows max attempts per key per window.
func NewRateLimiter(max int, window time.Duration) *RateLimiter {
	return &RateLimiter{max: max, window: window, fails: map[string][]attempt{}}
}

func (l *RateLimiter) prune(key string, now time.Time) []attempt {
	list := l.fails[key]
	i := 0
	for i < len(list) && now.Sub(list[i].at) >= l.window {
		i++
	}
	list = list[i:]
	if len(list) == 0 {
		delete(l.fails, key)
	} else {
		l.fails[key] = list
	}
	return list
}

// Reservation is an attempt counted against its key before its password
// was checked.
type Reservation struct {
	l   *RateLimiter
	key string
	id  uint64
}

// Reserve counts an attempt against key, in the same critical section as
// the check of the limit, so at most max attempts per window are ever
// checked however many arrive at once. It returns how long key must wait
// (and no reservation) when the limit is reached. The attempt counts as a
// failure until it is released (it was not a guess) or the key is reset
// (the password was right).
func (l *RateLimiter) Reserve(key string, now time.Time) (Reservation, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) > 100_000 { // bound memory under a spray of names
		for k := range l.fails {
			l.prune(k, now)
		}
	}
	list := l.prune(key, now)
	if len(list) >= l.max {
		return Reservation{}, max(list[len(list)-l.max].at.Add(l.window).Sub(now), time.Second)
	}
	l.nextID++
	l.fails[key] = append(list, attempt{at: now, id: l.nextID})
	return Reservation{l: l, key: key, id: l.nextID}, 0
}

// Release uncounts an attempt whose password was never checked, or was
// right but needs its second factor.
func (r Reservation) Release() {
	if r.l == nil {
		return
	}
	r.l.mu.Lock()
	defer r.l.mu.Unlock()
	list := r.l.fails[r.key]
	for i, a := range list {
		if a.id == r.id {
			list = append(list[:i:i], list[i+1:]...)
			break
		}
	}
	if len(list) == 0 {
		delete(r.l.fails, r.key)
	} else {
		r.l.fails[r.key] = list
	}
}

// Reset forgets key's attempts (its password was right).
func (l *RateLimiter) Reset(key string) {
	l.mu.Lock()
	delete(l.fails, key)
	l.mu.Unlock()
}
