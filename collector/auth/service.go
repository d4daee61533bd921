package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Store is what accounts and sessions need of collector/store.
type Store interface {
	CreateUser(store.User) error
	GetUser(username string) (store.User, error)
	UpdateUser(username string, fn func(*store.User) error) (store.User, error)
	Users() ([]store.User, error)
	PutSession(hash string, sess store.Session, idle time.Duration) error
	GetSession(hash string) (store.Session, error)
	DeleteSession(hash string) error
	DeleteUserSessions(username, keep string) (int, error)
}

// Config for New.
type Config struct {
	Store  Store
	Logger *slog.Logger
	Now    func() time.Time
	// SessionIdle is how long an unused session lives (default 12 h).
	SessionIdle time.Duration
	// PasswordWorkers and PasswordQueue bound password hashing (HashPool):
	// default DefaultHashWorkers() and 8.
	PasswordWorkers, PasswordQueue int
	// InitialPasswordFile is DATA/initial-admin-password, removed when the
	// first admin sets their own password (empty: nothing to remove).
	InitialPasswordFile string
}

// Service is local sign-in, sessions and the account lifecycle.
type Service struct {
	st          Store
	log         *slog.Logger
	now         func() time.Time
	idle        time.Duration
	initialFile string

	// Pool bounds hashing; Hasher does it (bcrypt). Tests replace both
	// before the first request.
	Pool    *HashPool
	Hasher  Hasher
	limiter *RateLimiter
	totp    *TOTPVerifier

	dummyOnce sync.Once
	dummy     []byte // see dummyHash

	shedMu     sync.Mutex
	shedLogged time.Time // logShed
	shedLast   uint64
}

// New returns the service over cfg.Store.
func New(cfg Config) *Service {
	s := &Service{st: cfg.Store, log: cfg.Logger, now: cfg.Now, idle: cfg.SessionIdle, initialFile: cfg.InitialPasswordFile,
		Hasher: Bcrypt{}, limiter: NewRateLimiter(5, 15*time.Minute), totp: NewTOTPVerifier()}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	if s.idle <= 0 {
		s.idle = 12 * time.Hour
	}
	if cfg.PasswordWorkers <= 0 {
		cfg.PasswordWorkers = DefaultHashWorkers()
	}
	if cfg.PasswordQueue <= 0 {
		cfg.PasswordQueue = 8
	}
	s.Pool = NewHashPool(cfg.PasswordWorkers, cfg.PasswordQueue)
	return s
}

// Errors a caller maps to its answers. Messages are shown to people.
var (
	ErrWrongPassword = errors.New("wrong username or password")
	ErrTOTPRequired  = errors.New("enter the code from your authenticator app")
	ErrTOTPWrong     = errors.New("wrong or reused authenticator code")
	ErrNoSession     = errors.New("no session")
	ErrNoAccount     = errors.New("no such account")
)

// LimitedError: too many failed attempts; try again after Wait.
type LimitedError struct{ Wait time.Duration }

func (e *LimitedError) Error() string {
	return "too many failed attempts; try again in " + HumanWait(e.Wait)
}

// InvalidError: the request breaks a rule (a weak password, say).
type InvalidError struct{ Msg string }

func (e *InvalidError) Error() string { return e.Msg }

// ConflictError: the request is refused in the account's present state
// (disabling your own account, or the last admin).
type ConflictError struct{ Msg string }

func (e *ConflictError) Error() string { return e.Msg }

// HumanWait says how long in words a person reads at a glance: "15
// minutes", "1 minute", "40 seconds" (issue 10 item 7: "882 seconds").
func HumanWait(d time.Duration) string {
	s := int((d + time.Second - 1) / time.Second)
	switch {
	case s <= 1:
		return "1 second"
	case s < 60:
		return fmt.Sprintf("%d seconds", s)
	}
	m := (s + 59) / 60
	if m == 1 {
		return "1 minute"
	}
	return fmt.Sprintf("%d minutes", m)
}

// Hash runs fn in the hashing pool; ErrHashBusy when it is full.
func (s *Service) Hash(ctx context.Context, fn func()) error {
	err := s.Pool.Do(ctx, fn)
	if errors.Is(err, ErrHashBusy) {
		s.logShed()
	}
	return err
}

// logShed logs refusals by the hash pool at most once a minute, with their
// count, so a spray of sign-ins cannot flood the log.
func (s *Service) logShed() {
	now := s.now()
	s.shedMu.Lock()
	defer s.shedMu.Unlock()
	if now.Sub(s.shedLogged) < time.Minute {
		return
	}
	total := s.Pool.Shed()
	s.log.Warn("console: sign-ins refused while password hashing was busy (possible password spray)",
		"refused", total-s.shedLast, "refused_total", total)
	s.shedLogged, s.shedLast = now, total
}

// dummyHash is what unknown names are compared against. It is made at the
// first unknown name, inside the pool like every hash (not in New: every
// collector start would pay a bcrypt for it), and with bcrypt directly, not
// the test seam, so held test hashers see only comparisons.
func (s *Service) dummyHash() []byte {
	s.dummyOnce.Do(func() {
		s.dummy, _ = bcrypt.GenerateFromPassword([]byte("vigil-no-such-user"), BcryptCost)
	})
	return s.dummy
}

// SignIn checks a password (and TOTP code, if the account has one) for a
// sign-in from ip. Errors: *LimitedError, ErrHashBusy, ErrWrongPassword,
// ErrTOTPRequired, ErrTOTPWrong, or ctx's.
func (s *Service) SignIn(ctx context.Context, username, password, totp, ip string) (store.User, error) {
	username = strings.ToLower(strings.TrimSpace(username))
	key := username + "|" + ip
	now := s.now()
	// The attempt is counted before the password is checked, under the
	// lock of the check: when the check came first and the failure was
	// recorded after bcrypt, 60 parallel guesses all passed a 5-attempt
	// limit (issue 8 item 5). It stays counted as a failure unless the
	// password turns out right or is never checked.
	res, wait := s.limiter.Reserve(key, now)
	if wait > 0 {
		return store.User{}, &LimitedError{Wait: wait}
	}
	u, err := s.st.GetUser(username)
	known := err == nil && !u.Disabled && ValidUsername(username)
	var wrong bool
	if err := s.Hash(ctx, func() {
		if known {
			wrong = s.Hasher.Compare(u.PasswordHash, []byte(password)) != nil
		} else {
			// An unknown name costs what a wrong password costs, in
			// the same pool, so timing does not tell which names exist.
			s.Hasher.Compare(s.dummyHash(), []byte(password))
		}
	}); err != nil {
		res.Release()
		return store.User{}, err
	}
	if !known || wrong {
		s.log.Warn("console: failed sign-in", "username", username, "ip", ip)
		return store.User{}, ErrWrongPassword
	}
	if u.TOTPSecret != "" {
		code := strings.TrimSpace(totp)
		if code == "" {
			res.Release() // the right password, asked for the second factor
			return store.User{}, ErrTOTPRequired
		}
		if !s.totp.Check(u.Username, u.TOTPSecret, code, now) {
			return store.User{}, ErrTOTPWrong
		}
	}
	s.limiter.Reset(key)
	return u, nil
}

// ResetLimit forgets the failed attempts of a username+IP key (tests).
func (s *Service) ResetLimit(key string) { s.limiter.Reset(key) }

// Session is a live session and its account.
type Session struct {
	User store.User
	CSRF string
	Hash string // the token's hash: the session's key
}

// StartSession creates a session for u (password or OIDC sign-in) and
// records the sign-in; it returns the token for the cookie and the CSRF
// token.
func (s *Service) StartSession(u store.User) (token, csrf string, err error) {
	now := s.now()
	token, csrf = RandomToken(), RandomToken()
	sess := store.Session{Username: u.Username, CSRF: csrf, Created: now.UTC(), Touched: now.UTC()}
	if err := s.st.PutSession(TokenHash(token), sess, s.idle); err != nil {
		return "", "", fmt.Errorf("create session: %w", err)
	}
	if _, err := s.st.UpdateUser(u.Username, func(x *store.User) error { x.LastSignIn = now.UTC(); return nil }); err != nil {
		// The sign-in stands; only the "last signed in" column is stale.
		s.log.Warn("console: record last sign-in", "username", u.Username, "err", err)
	}
	return token, csrf, nil
}

// Lookup finds the live session of a token and its account; ErrNoSession
// when there is none, the account is gone or disabled. A session is
// refreshed (sliding idle expiry) at most once a minute.
func (s *Service) Lookup(token string) (Session, error) {
	if token == "" || len(token) > 100 {
		return Session{}, ErrNoSession
	}
	h := TokenHash(token)
	sess, err := s.st.GetSession(h)
	if err != nil {
		return Session{}, ErrNoSession
	}
	u, err := s.st.GetUser(sess.Username)
	if err != nil || u.Disabled {
		return Session{}, ErrNoSession
	}
	now := s.now()
	if now.Sub(sess.Touched) > time.Minute {
		sess.Touched = now
		if err := s.st.PutSession(h, sess, s.idle); err != nil {
			s.log.Warn("console: refresh session", "err", err)
		}
	}
	return Session{User: u, CSRF: sess.CSRF, Hash: h}, nil
}

// EndSession signs a session out.
func (s *Service) EndSession(hash string) error { return s.st.DeleteSession(hash) }

// UserByEmail finds the one enabled or disabled account whose e-mail
// address is email, ignoring case (OIDC sign-in). Accounts are few (staff
// with console access), so a scan is enough.
func (s *Service) UserByEmail(email string) (store.User, error) {
	users, err := s.st.Users()
	if err != nil {
		return store.User{}, err
	}
	var found []store.User
	for _, u := range users {
		if u.Email != "" && strings.EqualFold(strings.TrimSpace(u.Email), email) {
			found = append(found, u)
		}
	}
	switch len(found) {
	case 0:
		return store.User{}, ErrNoEmail
	case 1:
		return found[0], nil
	}
	return store.User{}, ErrAmbiguousEmail
}

// Errors of UserByEmail.
var (
	ErrNoEmail        = errors.New("no account has this e-mail address")
	ErrAmbiguousEmail = errors.New("several accounts have this e-mail address")
)

// PrepareUnknownNameHash makes the hash unknown names are compared with
// now rather than at the first unknown name (benchmarks measure without it).
func (s *Service) PrepareUnknownNameHash() { s.dummyHash() }
