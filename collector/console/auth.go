package console

import (
	"context"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base32"
	"encoding/base64"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// BcryptCost is the cost of password hashes; tests lower it.
var BcryptCost = 12

// CookieName is the session cookie.
const CookieName = "vigil_session"

// MinPasswordLen is the shortest password accepted for an account.
const MinPasswordLen = 10

// HashPassword hashes a password for storage.
func HashPassword(pw string) ([]byte, error) {
	if len(pw) > 72 {
		return nil, errors.New("password longer than 72 bytes")
	}
	return bcrypt.GenerateFromPassword([]byte(pw), BcryptCost)
}

// passwordHasher is the CPU-heavy work hashPool bounds. It is a seam so
// tests can count (and hold) every hash the console computes.
type passwordHasher interface {
	Compare(hash, password []byte) error
	Hash(password string) ([]byte, error)
}

type bcryptHasher struct{}

func (bcryptHasher) Compare(hash, password []byte) error {
	return bcrypt.CompareHashAndPassword(hash, password)
}
func (bcryptHasher) Hash(password string) ([]byte, error) { return HashPassword(password) }

// errHashBusy: the password-hashing pool and its queue are full.
var errHashBusy = errors.New("the console is busy checking other passwords")

// hashPool bounds the CPU that password hashing takes. One bcrypt at cost
// 12 is a quarter of a second of a core, and a school server has two to
// four: without a bound, 300 sign-ins with made-up names took every core
// and the agents' acks slowed from 0.2 s to 18.8 s (issue 8 item 5). At
// most workers hashes run at once and at most queue more wait; the rest
// are refused at once (429), which costs the server next to nothing.
type hashPool struct {
	admit chan struct{} // cap workers+queue: running or waiting
	run   chan struct{} // cap workers: running
	shed  atomic.Uint64
}

func newHashPool(workers, queue int) *hashPool {
	return &hashPool{admit: make(chan struct{}, workers+queue), run: make(chan struct{}, workers)}
}

// do runs fn when a worker is free; errHashBusy when the queue is full, or
// ctx's error when the caller gave up while waiting.
func (p *hashPool) do(ctx context.Context, fn func()) error {
	select {
	case p.admit <- struct{}{}:
	default:
		p.shed.Add(1)
		return errHashBusy
	}
	defer func() { <-p.admit }()
	select {
	case p.run <- struct{}{}:
	case <-ctx.Done():
		return ctx.Err()
	}
	defer func() { <-p.run }()
	fn()
	return nil
}

// admitted is how many calls are running or waiting (tests wait on it).
func (p *hashPool) admitted() int { return len(p.admit) }

// defaultHashWorkers leaves most cores to ingest: one hash at a time on a
// machine of up to four cores, two above.
func defaultHashWorkers() int {
	if runtime.GOMAXPROCS(0) > 4 {
		return 2
	}
	return 1
}

// hash runs a password hash or comparison in the pool, answering the
// request itself when it cannot (429 when busy); it reports whether fn ran.
func (s *Server) hash(w http.ResponseWriter, r *http.Request, fn func()) bool {
	err := s.pool.do(r.Context(), fn)
	switch {
	case err == nil:
		return true
	case errors.Is(err, errHashBusy):
		s.logShed()
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": err.Error() + "; try again in a moment", "busy": true})
	default:
		// The client went away while queued: nobody reads an answer.
		jsonError(w, http.StatusServiceUnavailable, "request cancelled")
	}
	return false
}

// dummyHash is what unknown names are compared against. It is made at the
// first unknown name, inside the pool like every hash (not in New: every
// collector start would pay a bcrypt for it), and with bcrypt directly, not
// the test seam, so held test hashers see only comparisons.
func (s *Server) dummyHash() []byte {
	s.dummyOnce.Do(func() {
		s.dummy, _ = bcrypt.GenerateFromPassword([]byte("vigil-no-such-user"), BcryptCost)
	})
	return s.dummy
}

// logShed logs refusals by the hash pool at most once a minute, with their
// count, so a spray of sign-ins cannot flood the log.
func (s *Server) logShed() {
	now := s.now()
	s.shedMu.Lock()
	defer s.shedMu.Unlock()
	if now.Sub(s.shedLogged) < time.Minute {
		return
	}
	total := s.pool.shed.Load()
	s.log.Warn("console: sign-ins refused while password hashing was busy (possible password spray)",
		"refused", total-s.shedLast, "refused_total", total)
	s.shedLogged, s.shedLast = now, total
}

// ValidUsername: 1-64 of a-z 0-9 . _ @ -, starting with a letter or digit.
func ValidUsername(u string) bool {
	if u == "" || len(u) > 64 {
		return false
	}
	for i, c := range u {
		ok := c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || i > 0 && (c == '.' || c == '_' || c == '@' || c == '-')
		if !ok {
			return false
		}
	}
	return true
}

// NewUser validates and builds an account record (hashing the password).
func NewUser(username, displayName, role, password, email string, chair bool, now time.Time) (store.User, error) {
	u, err := newUserUnhashed(username, displayName, role, password, email, chair, now)
	if err != nil {
		return store.User{}, err
	}
	if u.PasswordHash, err = HashPassword(password); err != nil {
		return store.User{}, err
	}
	return u, nil
}

// newUserUnhashed is NewUser without the hash, for callers that hash in
// the pool.
func newUserUnhashed(username, displayName, role, password, email string, chair bool, now time.Time) (store.User, error) {
	username = strings.ToLower(strings.TrimSpace(username))
	if !ValidUsername(username) {
		return store.User{}, fmt.Errorf("username %q: use 1-64 of a-z 0-9 . _ @ - (starting with a letter or digit)", username)
	}
	if !ValidRole(role) {
		return store.User{}, fmt.Errorf("role %q: want one of %s", role, strings.Join(Roles, ", "))
	}
	if chair && role != RoleGovernor {
		return store.User{}, errors.New("only a governor can be the chair of governors")
	}
	if len(password) < MinPasswordLen {
		return store.User{}, fmt.Errorf("password: at least %d characters", MinPasswordLen)
	}
	if strings.EqualFold(password, username) {
		return store.User{}, errors.New("password must not be the username")
	}
	if email != "" && (!strings.Contains(email, "@") || strings.ContainsAny(email, "\r\n<>, ")) {
		return store.User{}, fmt.Errorf("email %q is not an address", email)
	}
	if len(password) > 72 {
		return store.User{}, errors.New("password longer than 72 bytes")
	}
	if displayName == "" {
		displayName = username
	}
	return store.User{Username: username, DisplayName: strings.TrimSpace(displayName), Role: role, Email: email,
		Chair: chair, Created: now.UTC()}, nil
}

func randomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

func tokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}

// viewer is the signed-in user of a request.
type viewer struct {
	store.User
	csrf string
	hash string
}

type ctxKey struct{}

type apiHandler func(w http.ResponseWriter, r *http.Request, v *viewer)

// api wraps an endpoint: a live session (else 401), the CSRF token on
// state-changing requests (else 403), the role (else 403).
func (s *Server) api(ok allow, h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := s.viewerOf(r)
		if err != nil {
			jsonError(w, http.StatusUnauthorized, "sign in first")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				jsonError(w, http.StatusForbidden, "cross-origin request refused")
				return
			}
			got := r.Header.Get("X-CSRF-Token")
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(v.csrf)) != 1 {
				jsonError(w, http.StatusForbidden, "missing or wrong X-CSRF-Token")
				return
			}
		}
		if !ok(&v.User) {
			jsonError(w, http.StatusForbidden, "your role (%s) may not do this", v.Role)
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, v)), v)
	})
}

// sameOrigin refuses a browser request whose Origin names another site.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func (s *Server) viewerOf(r *http.Request) (*viewer, error) {
	c, err := r.Cookie(CookieName)
	if err != nil || c.Value == "" || len(c.Value) > 100 {
		return nil, errors.New("no session")
	}
	h := tokenHash(c.Value)
	sess, err := s.st.GetSession(h)
	if err != nil {
		return nil, err
	}
	u, err := s.st.GetUser(sess.Username)
	if err != nil || u.Disabled {
		return nil, errors.New("no such user")
	}
	now := s.now()
	if now.Sub(sess.Touched) > time.Minute {
		// Sliding idle expiry: rewrite with a fresh TTL at most once a minute.
		sess.Touched = now
		if err := s.st.PutSession(h, sess, s.idle); err != nil {
			s.log.Warn("console: refresh session", "err", err)
		}
	}
	return &viewer{User: u, csrf: sess.CSRF, hash: h}, nil
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	TOTP     string `json:"totp"`
}

type meResponse struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Role        string `json:"role"`
	Chair       bool   `json:"chair"`
	CSRFToken   string `json:"csrf_token"`
}

// clientIP is the address a request is attributed to; every use goes
// through here so the trusted-proxy rule (proxy.go) holds for all of them.
func (s *Server) clientIP(r *http.Request) string { return s.proxies.ClientIP(r) }

// secure: the browser reached the console over HTTPS, so cookies are Secure.
func (s *Server) secure(r *http.Request) bool { return s.proxies.Secure(r) }

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		jsonError(w, http.StatusForbidden, "cross-origin request refused")
		return
	}
	var req loginRequest
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	username := strings.ToLower(strings.TrimSpace(req.Username))
	key := username + "|" + s.clientIP(r)
	now := s.now()
	// The attempt is counted before the password is checked, under the
	// lock of the check: when the check came first and the failure was
	// recorded after bcrypt, 60 parallel guesses all passed a 5-attempt
	// limit (issue 8 item 5). It stays counted as a failure unless the
	// password turns out right or is never checked.
	res, wait := s.limiter.reserve(key, now)
	if wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds()+0.999)))
		jsonError(w, http.StatusTooManyRequests, "too many failed sign-ins; try again later")
		return
	}
	u, err := s.st.GetUser(username)
	known := err == nil && !u.Disabled && ValidUsername(username)
	var wrong bool
	if !s.hash(w, r, func() {
		if known {
			wrong = s.hasher.Compare(u.PasswordHash, []byte(req.Password)) != nil
		} else {
			// An unknown name costs what a wrong password costs, in
			// the same pool, so timing does not tell which names exist.
			s.hasher.Compare(s.dummyHash(), []byte(req.Password))
		}
	}) {
		res.release()
		return
	}
	if !known || wrong {
		s.log.Warn("console: failed sign-in", "username", username, "ip", s.clientIP(r))
		jsonError(w, http.StatusUnauthorized, "wrong username or password")
		return
	}
	if u.TOTPSecret != "" {
		if strings.TrimSpace(req.TOTP) == "" {
			res.release() // the right password, asked for the second factor
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "enter the code from your authenticator app", "totp_required": true})
			return
		}
		if !s.checkTOTP(u, strings.TrimSpace(req.TOTP), now) {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "wrong or reused authenticator code", "totp_required": true})
			return
		}
	}
	s.limiter.reset(key)
	tok, csrf := randomToken(), randomToken()
	sess := store.Session{Username: u.Username, CSRF: csrf, Created: now.UTC(), Touched: now.UTC()}
	if err := s.st.PutSession(tokenHash(tok), sess, s.idle); err != nil {
		s.internal(w, "create session", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: tok, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
	s.log.Info("console: signed in", "username", u.Username, "role", u.Role)
	writeJSON(w, http.StatusOK, meResponse{Username: u.Username, DisplayName: u.DisplayName, Role: u.Role, Chair: u.Chair, CSRFToken: csrf})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, v *viewer) {
	if err := s.st.DeleteSession(v.hash); err != nil {
		s.internal(w, "end session", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, v *viewer) {
	writeJSON(w, http.StatusOK, meResponse{Username: v.Username, DisplayName: v.DisplayName, Role: v.Role, Chair: v.Chair, CSRFToken: v.csrf})
}

// rateLimiter counts sign-in attempts per username+IP in a sliding
// window: failed ones, and ones still being checked.
type rateLimiter struct {
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

func newRateLimiter(max int, window time.Duration) *rateLimiter {
	return &rateLimiter{max: max, window: window, fails: map[string][]attempt{}}
}

func (l *rateLimiter) prune(key string, now time.Time) []attempt {
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

// reservation is an attempt counted against its key before its password
// was checked.
type reservation struct {
	l   *rateLimiter
	key string
	id  uint64
}

// reserve counts an attempt against key, in the same critical section as
// the check of the limit, so at most max attempts per window are ever
// checked however many arrive at once. It returns how long key must wait
// (and no reservation) when the limit is reached. The attempt counts as a
// failure until it is released (it was not a guess) or the key is reset
// (the password was right).
func (l *rateLimiter) reserve(key string, now time.Time) (reservation, time.Duration) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) > 100_000 { // bound memory under a spray of names
		for k := range l.fails {
			l.prune(k, now)
		}
	}
	list := l.prune(key, now)
	if len(list) >= l.max {
		return reservation{}, max(list[len(list)-l.max].at.Add(l.window).Sub(now), time.Second)
	}
	l.nextID++
	l.fails[key] = append(list, attempt{at: now, id: l.nextID})
	return reservation{l: l, key: key, id: l.nextID}, 0
}

// release uncounts an attempt whose password was never checked, or was
// right but needs its second factor.
func (r reservation) release() {
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

func (l *rateLimiter) reset(key string) {
	l.mu.Lock()
	delete(l.fails, key)
	l.mu.Unlock()
}

// TOTP (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits).

// NewTOTPSecret returns a random base32 secret (160 bits).
func NewTOTPSecret() string {
	b := make([]byte, 20)
	rand.Read(b)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}

// TOTPURI is the otpauth:// URI an authenticator app scans.
func TOTPURI(secret, username string) string {
	return "otpauth://totp/" + url.PathEscape("Vigil:"+username) + "?secret=" + secret + "&issuer=Vigil&algorithm=SHA1&digits=6&period=30"
}

// TOTPCode computes the code for a time step.
func TOTPCode(secret string, step int64) (string, error) {
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(strings.TrimRight(secret, "=")))
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha1.New, key)
	binary.Write(mac, binary.BigEndian, uint64(step))
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	n := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", n%1_000_000), nil
}

// checkTOTP accepts the code for now ±1 step, once.
func (s *Server) checkTOTP(u store.User, code string, now time.Time) bool {
	step := now.Unix() / 30
	s.totpMu.Lock()
	defer s.totpMu.Unlock()
	for d := int64(-1); d <= 1; d++ {
		want, err := TOTPCode(u.TOTPSecret, step+d)
		if err != nil {
			return false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			if step+d <= s.totpUsed[u.Username] {
				return false
			}
			s.totpUsed[u.Username] = step + d
			return true
		}
	}
	return false
}
