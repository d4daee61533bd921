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
	"net"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"sync"
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

// dummyHash is compared against for unknown users so that an unknown name
// takes as long as a wrong password.
var dummyHash = sync.OnceValue(func() []byte {
	h, _ := bcrypt.GenerateFromPassword([]byte("vigil-no-such-user"), BcryptCost)
	return h
})

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
	if displayName == "" {
		displayName = username
	}
	h, err := HashPassword(password)
	if err != nil {
		return store.User{}, err
	}
	return store.User{Username: username, DisplayName: strings.TrimSpace(displayName), Role: role, Email: email,
		Chair: chair, PasswordHash: h, Created: now.UTC()}, nil
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

func clientIP(r *http.Request) string {
	host, _, err := net.SplitHostPort(r.RemoteAddr)
	if err != nil {
		return r.RemoteAddr
	}
	return host
}

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
	key := username + "|" + clientIP(r)
	now := s.now()
	if wait := s.limiter.blocked(key, now); wait > 0 {
		w.Header().Set("Retry-After", strconv.Itoa(int(wait.Seconds()+0.999)))
		jsonError(w, http.StatusTooManyRequests, "too many failed sign-ins; try again later")
		return
	}
	u, err := s.st.GetUser(username)
	if err != nil || u.Disabled || !ValidUsername(username) {
		bcrypt.CompareHashAndPassword(dummyHash(), []byte(req.Password))
		s.limiter.fail(key, now)
		s.log.Warn("console: failed sign-in", "username", username, "ip", clientIP(r))
		jsonError(w, http.StatusUnauthorized, "wrong username or password")
		return
	}
	if bcrypt.CompareHashAndPassword(u.PasswordHash, []byte(req.Password)) != nil {
		s.limiter.fail(key, now)
		s.log.Warn("console: failed sign-in", "username", username, "ip", clientIP(r))
		jsonError(w, http.StatusUnauthorized, "wrong username or password")
		return
	}
	if u.TOTPSecret != "" {
		if strings.TrimSpace(req.TOTP) == "" {
			writeJSON(w, http.StatusUnauthorized, map[string]any{"error": "enter the code from your authenticator app", "totp_required": true})
			return
		}
		if !s.checkTOTP(u, strings.TrimSpace(req.TOTP), now) {
			s.limiter.fail(key, now)
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
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	s.log.Info("console: signed in", "username", u.Username, "role", u.Role)
	writeJSON(w, http.StatusOK, meResponse{Username: u.Username, DisplayName: u.DisplayName, Role: u.Role, Chair: u.Chair, CSRFToken: csrf})
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, v *viewer) {
	if err := s.st.DeleteSession(v.hash); err != nil {
		s.internal(w, "end session", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: r.TLS != nil})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, v *viewer) {
	writeJSON(w, http.StatusOK, meResponse{Username: v.Username, DisplayName: v.DisplayName, Role: v.Role, Chair: v.Chair, CSRFToken: v.csrf})
}

// rateLimiter counts failed sign-ins per username+IP in a sliding window.
type rateLimiter struct {
	mu     sync.Mutex
	max    int
	window time.Duration
	fails  map[string][]time.Time
}

func newRateLimiter(max int, window time.Duration) *rateLimiter {
	return &rateLimiter{max: max, window: window, fails: map[string][]time.Time{}}
}

func (l *rateLimiter) prune(key string, now time.Time) []time.Time {
	list := l.fails[key]
	i := 0
	for i < len(list) && now.Sub(list[i]) >= l.window {
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

// blocked returns how long key must wait, or 0.
func (l *rateLimiter) blocked(key string, now time.Time) time.Duration {
	l.mu.Lock()
	defer l.mu.Unlock()
	list := l.prune(key, now)
	if len(list) < l.max {
		return 0
	}
	return list[len(list)-l.max].Add(l.window).Sub(now)
}

func (l *rateLimiter) fail(key string, now time.Time) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if len(l.fails) > 100_000 { // bound memory under a spray of names
		for k := range l.fails {
			l.prune(k, now)
		}
	}
	l.fails[key] = append(l.prune(key, now), now)
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
