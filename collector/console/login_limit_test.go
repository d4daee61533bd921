package console

import (
	"fmt"
	"github.com/vigil-safeguarding/vigil/collector/auth"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"
)

// heldHasher wraps the real hasher, counting every hash the console
// computes and how many run at once; while held, each one waits for
// release, so a test can keep the pool busy without relying on timing.
type heldHasher struct {
	inner auth.Hasher

	mu               sync.Mutex
	cond             *sync.Cond
	held             bool
	inFlight, maxPar int
	compares, hashes int
}

func newHeldHasher(inner auth.Hasher) *heldHasher {
	h := &heldHasher{inner: inner, held: true}
	h.cond = sync.NewCond(&h.mu)
	return h
}

func (h *heldHasher) enter(compare bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if compare {
		h.compares++
	} else {
		h.hashes++
	}
	h.inFlight++
	h.maxPar = max(h.maxPar, h.inFlight)
	h.cond.Broadcast()
	for h.held {
		h.cond.Wait()
	}
}

func (h *heldHasher) leave() {
	h.mu.Lock()
	h.inFlight--
	h.mu.Unlock()
}

func (h *heldHasher) Compare(hash, pw []byte) error {
	h.enter(true)
	defer h.leave()
	return h.inner.Compare(hash, pw)
}

func (h *heldHasher) Hash(pw string) ([]byte, error) {
	h.enter(false)
	defer h.leave()
	return h.inner.Hash(pw)
}

func (h *heldHasher) release() {
	h.mu.Lock()
	h.held = false
	h.cond.Broadcast()
	h.mu.Unlock()
}

func (h *heldHasher) stats() (inFlight, maxPar, compares, hashes int) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.inFlight, h.maxPar, h.compares, h.hashes
}

// waitFor polls cond until true, failing after a generous bound (the suite
// runs on busy 2-core machines).
func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(60 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type loginResult struct {
	code       int
	retryAfter string
}

// spray sends the sign-ins concurrently, each on its own connection, and
// returns a channel of their answers.
func spray(e *env, bodies []map[string]string) <-chan loginResult {
	out := make(chan loginResult, len(bodies))
	for _, b := range bodies {
		go func() {
			c := e.anon()
			c.hc.Transport = &http.Transport{DisableKeepAlives: true}
			resp := c.req("POST", "/api/v1/session", b, nil)
			resp.Body.Close()
			out <- loginResult{resp.StatusCode, resp.Header.Get("Retry-After")}
		}()
	}
	return out
}

// TestLoginLimitHoldsUnderConcurrency reproduces issue 8 item 5 on
// loopback: 60 wrong passwords at once for one account from one address.
// The limit is 5 attempts per window, so at most 5 passwords may be
// checked and the rest are refused with 429; the right password sent
// afterwards is refused too, because the account is locked. Every check is
// held until all 60 have been answered or admitted, so a limiter that
// checks first and records the failure after bcrypt would let all 60 be
// evaluated.
func TestLoginLimitHoldsUnderConcurrency(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	e.srv.auth.Pool = auth.NewHashPool(2, 64) // room for every guess: only the limiter may refuse them
	h := newHeldHasher(e.srv.auth.Hasher)
	e.srv.auth.Hasher = h
	t.Cleanup(h.release) // before the server's Close, which waits for held requests
	const n = 60
	bodies := make([]map[string]string, n)
	for i := range bodies {
		bodies[i] = map[string]string{"username": "dsl1", "password": fmt.Sprintf("guess-%02d-wrong", i)}
	}
	results := spray(e, bodies)
	got := map[int]int{}
	answered := 0
	waitFor(t, "every guess answered or waiting for bcrypt", func() bool {
		for {
			select {
			case r := <-results:
				got[r.code]++
				answered++
				if r.code == 429 {
					if ra, err := strconv.Atoi(r.retryAfter); err != nil || ra <= 0 {
						t.Errorf("429 without a usable Retry-After: %q", r.retryAfter)
					}
				}
				continue
			default:
			}
			return answered+e.srv.auth.Pool.Admitted() == n
		}
	})
	h.release()
	for ; answered < n; answered++ {
		got[(<-results).code]++
	}
	_, maxPar, compares, _ := h.stats()
	if compares > 5 || got[401] > 5 {
		t.Errorf("%d passwords checked (%d answered 401) past a limit of 5", compares, got[401])
	}
	if got[401] != compares || got[429] != n-got[401] || got[200] != 0 {
		t.Errorf("answers %v for %d checks: want every check a 401 and the rest 429", got, compares)
	}
	if maxPar > 2 {
		t.Errorf("%d hashes ran at once, bound 2", maxPar)
	}
	// Locked: the right password is not even checked.
	c := e.anon()
	resp := c.req("POST", "/api/v1/session", map[string]string{"username": "dsl1", "password": testPassword}, nil)
	resp.Body.Close()
	if resp.StatusCode != 429 {
		t.Errorf("right password while locked: %d, want 429", resp.StatusCode)
	}
	if _, _, after, _ := h.stats(); after != compares {
		t.Errorf("the locked attempt was checked (%d checks, was %d)", after, compares)
	}
	// Once the window has passed the account signs in again.
	e.setNow(time.Now().Add(16 * time.Minute))
	e.login("dsl1")
}

// TestLoginSprayIsShed: 300 sign-ins with made-up names at once (each its
// own limiter key, so only the pool can bound them). Unknown names are
// compared against a dummy hash in the same pool, so they cost what a
// wrong password costs and cannot run beside it: with the pool's 2 workers
// held busy and its 3 queue places full, the other 295 are refused at once
// with 429 and Retry-After, no more than 2 hashes ever run together, and
// the console signs people in again as soon as the pool drains. Account
// creation hashes in the same pool.
func TestLoginSprayIsShed(t *testing.T) {
	e := newEnv(t)
	e.user("admin1", RoleAdmin, false, "")
	admin := e.login("admin1") // before the pool is held
	const workers, queue, n = 2, 3, 300
	e.srv.auth.Pool = auth.NewHashPool(workers, queue)
	h := newHeldHasher(e.srv.auth.Hasher)
	e.srv.auth.Hasher = h
	t.Cleanup(h.release) // before the server's Close, which waits for held requests
	bodies := make([]map[string]string, n)
	for i := range bodies {
		bodies[i] = map[string]string{"username": fmt.Sprintf("nobody%03d", i), "password": "spray-password"}
	}
	results := spray(e, bodies)
	got := map[int]int{}
	for i := 0; i < n-workers-queue; i++ {
		select {
		case r := <-results:
			got[r.code]++
			if r.code == 429 && r.retryAfter == "" {
				t.Errorf("429 without Retry-After")
			}
		case <-time.After(60 * time.Second):
			t.Fatalf("only %d of %d answered while the pool was held: %v", i, n-workers-queue, got)
		}
	}
	if got[429] != n-workers-queue {
		t.Errorf("while the pool was busy: %v, want %d x 429", got, n-workers-queue)
	}
	waitFor(t, "both workers busy", func() bool { in, _, _, _ := h.stats(); return in == workers })
	// Creating an account needs a hash too: refused while busy, not queued
	// behind the spray without bound.
	if code, b := admin.do("POST", "/api/v1/users", map[string]any{"username": "new1", "role": RoleDSL, "password": testPassword}); code != 429 {
		t.Errorf("account creation while hashing is busy: %d %s", code, b)
	}
	h.release()
	for i := 0; i < workers+queue; i++ {
		got[(<-results).code]++
	}
	_, maxPar, compares, _ := h.stats()
	if got[401] != workers+queue || got[429] != n-workers-queue {
		t.Errorf("answers %v", got)
	}
	if maxPar > workers {
		t.Errorf("%d hashes at once, bound %d", maxPar, workers)
	}
	// Each admitted unknown name cost one comparison (same as a wrong password).
	if compares != workers+queue {
		t.Errorf("%d comparisons for %d admitted unknown names", compares, workers+queue)
	}
	e.login("admin1")
	if code, b := admin.do("POST", "/api/v1/users", map[string]any{"username": "new1", "role": RoleDSL, "password": testPassword}); code != 201 {
		t.Errorf("account creation after the spray: %d %s", code, b)
	}
	if _, _, _, hashes := h.stats(); hashes < 1 {
		t.Errorf("account creation did not hash in the pool")
	}
}
