package auth

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"runtime"
	"strings"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// BcryptCost is the cost of password hashes; tests lower it.
var BcryptCost = 12

// MinPasswordLen is the shortest password accepted for an account.
const MinPasswordLen = 10

// HashPassword hashes a password for storage.
func HashPassword(pw string) ([]byte, error) {
	if len(pw) > 72 {
		return nil, errors.New("password longer than 72 bytes")
	}
	return bcrypt.GenerateFromPassword([]byte(pw), BcryptCost)
}

// Hasher is the CPU-heavy work HashPool bounds. It is a seam so tests can
// count (and hold) every hash the console computes.
type Hasher interface {
	Compare(hash, password []byte) error
	Hash(password string) ([]byte, error)
}

// Bcrypt is the Hasher used in production.
type Bcrypt struct{}

func (Bcrypt) Compare(hash, password []byte) error {
	return bcrypt.CompareHashAndPassword(hash, password)
}
func (Bcrypt) Hash(password string) ([]byte, error) { return HashPassword(password) }

// ErrHashBusy: the password-hashing pool and its queue are full.
var ErrHashBusy = errors.New("the console is busy checking other passwords")

// HashPool bounds the CPU that password hashing takes. One bcrypt at cost
// 12 is a quarter of a second of a core, and a school server has two to
// four: without a bound, 300 sign-ins with made-up names took every core
// and the agents' acks slowed from 0.2 s to 18.8 s (issue 8 item 5). At
// most workers hashes run at once and at most queue more wait; the rest
// are refused at once (429), which costs the server next to nothing.
type HashPool struct {
	admit chan struct{} // cap workers+queue: running or waiting
	run   chan struct{} // cap workers: running
	shed  atomic.Uint64
}

// NewHashPool makes a pool of workers with a queue of queue.
func NewHashPool(workers, queue int) *HashPool {
	return &HashPool{admit: make(chan struct{}, workers+queue), run: make(chan struct{}, workers)}
}

// Do runs fn when a worker is free; ErrHashBusy when the queue is full, or
// ctx's error when the caller gave up while waiting.
func (p *HashPool) Do(ctx context.Context, fn func()) error {
	select {
	case p.admit <- struct{}{}:
	default:
		p.shed.Add(1)
		return ErrHashBusy
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

// Admitted is how many calls are running or waiting (tests wait on it).
func (p *HashPool) Admitted() int { return len(p.admit) }

// Shed is how many calls were refused since the start.
func (p *HashPool) Shed() uint64 { return p.shed.Load() }

// DefaultHashWorkers leaves most cores to ingest: one hash at a time on a
// machine of up to four cores, two above.
func DefaultHashWorkers() int {
	if runtime.GOMAXPROCS(0) > 4 {
		return 2
	}
	return 1
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

// CheckPassword is the password policy: at least MinPasswordLen
// characters, at most 72 bytes (bcrypt's limit), not the username.
func CheckPassword(username, password string) error {
	if len(password) < MinPasswordLen {
		return fmt.Errorf("password: at least %d characters", MinPasswordLen)
	}
	if strings.EqualFold(password, username) {
		return errors.New("password must not be the username")
	}
	if len(password) > 72 {
		return errors.New("password longer than 72 bytes")
	}
	return nil
}

// NewUser validates and builds an account record (hashing the password).
func NewUser(username, displayName, role, password, email string, chair bool, now time.Time) (store.User, error) {
	u, err := NewUserUnhashed(username, displayName, role, password, email, chair, now)
	if err != nil {
		return store.User{}, err
	}
	if u.PasswordHash, err = HashPassword(password); err != nil {
		return store.User{}, err
	}
	return u, nil
}

// NewUserUnhashed is NewUser without the hash, for callers that hash in
// the pool.
func NewUserUnhashed(username, displayName, role, password, email string, chair bool, now time.Time) (store.User, error) {
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
	if err := CheckPassword(username, password); err != nil {
		return store.User{}, err
	}
	if email != "" && (!strings.Contains(email, "@") || strings.ContainsAny(email, "\r\n<>, ")) {
		return store.User{}, fmt.Errorf("email %q is not an address", email)
	}
	if displayName == "" {
		displayName = username
	}
	return store.User{Username: username, DisplayName: strings.TrimSpace(displayName), Role: role, Email: email,
		Chair: chair, Created: now.UTC(), PasswordChanged: now.UTC()}, nil
}

const passwordAlphabet = "abcdefghijkmnpqrstuvwxyzABCDEFGHJKLMNPQRSTUVWXYZ23456789"

// RandomPassword is n characters without look-alikes (0/O, 1/l/I), for
// passwords someone must read off a screen or a file and type.
func RandomPassword(n int) string {
	out := make([]byte, n)
	buf := make([]byte, 1)
	for i := 0; i < n; {
		rand.Read(buf)
		if int(buf[0]) >= 256-256%len(passwordAlphabet) {
			continue // reject to keep the choice uniform
		}
		out[i] = passwordAlphabet[int(buf[0])%len(passwordAlphabet)]
		i++
	}
	return string(out)
}

// RandomToken is 256 random bits, URL-safe.
func RandomToken() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// TokenHash is what a session token is stored under.
func TokenHash(tok string) string {
	sum := sha256.Sum256([]byte(tok))
	return hex.EncodeToString(sum[:])
}
