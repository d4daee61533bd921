// Package tokens owns the collector's enrollment-token policy: how a group
// token is minted (ID, secret, CA pin), how it is described (never its
// secret) and how it is revoked. The admin socket (CLI) and the console both
// call it, so both paths mint and revoke the same way.
package tokens

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"regexp"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/identity"
)

// ErrNotFound: no token with that ID.
var ErrNotFound = errors.New("no such enrollment token")

// ErrBadRequest wraps a refusal caused by the caller's input.
var ErrBadRequest = errors.New("bad token request")

var groupRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)

// Store is what token administration needs of the collector's store.
type Store interface {
	PutToken(t store.Token) error
	Tokens() ([]store.Token, error)
	LogAccess(e store.AccessEntry) error
	// FindSchool resolves the school a token is for (by ID or name).
	FindSchool(idOrName string) (store.School, error)
}

// Service mints, lists and revokes enrollment tokens in the store.
type Service struct {
	Store         Store
	CAFingerprint string
	Logger        *slog.Logger
	Now           func() time.Time
}

// Issued is a freshly minted token; Token is the only copy of the secret.
type Issued struct {
	Token     string    `json:"token"`
	ID        string    `json:"id"`
	Group     string    `json:"group"`
	School    string    `json:"school"`
	ExpiresAt time.Time `json:"expires_at"`
	Uses      int       `json:"uses"`
}

// Info describes a stored token (never its secret).
type Info struct {
	ID        string    `json:"id"`
	Group     string    `json:"group"`
	School    string    `json:"school"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	MaxUses   int       `json:"max_uses"`
	Uses      int       `json:"uses"`
	UsesLeft  int       `json:"uses_left"`
	Revoked   bool      `json:"revoked"`
	// State is active, expired, revoked or used-up.
	State string `json:"state"`
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now()
	}
	return s.Now()
}

func (s *Service) log() *slog.Logger {
	if s.Logger == nil {
		return slog.Default()
	}
	return s.Logger
}

// Create mints a token for group in the default school, valid for ttl
// (default 24 h), for uses enrollments (0 means 1).
func (s *Service) Create(ctx context.Context, group string, ttl time.Duration, uses int) (Issued, error) {
	return s.CreateIn(ctx, "", group, ttl, uses)
}

// CreateIn is Create for a school (by ID or name; "" is the default): a
// device enrolled with the token lands in that school.
func (s *Service) CreateIn(ctx context.Context, school, group string, ttl time.Duration, uses int) (Issued, error) {
	sc, err := s.Store.FindSchool(school)
	if errors.Is(err, store.ErrNotFound) {
		return Issued{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if err != nil {
		return Issued{}, fmt.Errorf("find the token's school: %w", err)
	}
	if !groupRE.MatchString(group) {
		return Issued{}, fmt.Errorf("%w: group %q: use 1-64 of a-z 0-9 - _", ErrBadRequest, group)
	}
	if ttl <= 0 {
		ttl = 24 * time.Hour
	}
	if uses < 0 {
		return Issued{}, fmt.Errorf("%w: uses must be positive (0 means 1)", ErrBadRequest)
	}
	if uses == 0 {
		uses = 1
	}
	idb, secret := make([]byte, 8), make([]byte, 24)
	rand.Read(idb)
	rand.Read(secret)
	tok := identity.Token{ID: hex.EncodeToString(idb), Secret: secret, CAFingerprint: s.CAFingerprint}
	now := s.now()
	rec := store.Token{ID: tok.ID, SecretHash: identity.SecretHash(secret), Group: group, School: schoolField(sc.ID),
		CreatedAt: now, ExpiresAt: now.Add(ttl), MaxUses: uses}
	if err := s.Store.PutToken(rec); err != nil {
		return Issued{}, fmt.Errorf("store new token: %w", err)
	}
	s.log().Info("enrollment token created", "token", tok.ID, "school", sc.ID, "group", group, "expires", rec.ExpiresAt, "uses", uses)
	return Issued{Token: tok.String(), ID: tok.ID, Group: group, School: sc.ID, ExpiresAt: rec.ExpiresAt, Uses: uses}, nil
}

// schoolField is how a record names its school: the default as "", so a
// single-school installation's records are as they were before schools.
func schoolField(id string) string {
	if id == store.DefaultSchool {
		return ""
	}
	return id
}

// Describe is a stored token as shown to people.
func (s *Service) Describe(t store.Token) Info {
	st := "active"
	switch {
	case !t.RevokedAt.IsZero():
		st = "revoked"
	case !s.now().Before(t.ExpiresAt):
		st = "expired"
	case t.MaxUses > 0 && t.Uses >= t.MaxUses:
		st = "used-up"
	}
	left := 0
	if st == "active" {
		left = t.MaxUses - t.Uses
	}
	return Info{ID: t.ID, Group: t.Group, School: store.SchoolOf(t.School), CreatedAt: t.CreatedAt, ExpiresAt: t.ExpiresAt, MaxUses: t.MaxUses, Uses: t.Uses,
		UsesLeft: left, Revoked: !t.RevokedAt.IsZero(), State: st}
}

// List describes every stored token.
func (s *Service) List(ctx context.Context) ([]Info, error) {
	toks, err := s.Store.Tokens()
	if err != nil {
		return nil, fmt.Errorf("list tokens: %w", err)
	}
	out := make([]Info, 0, len(toks))
	for _, t := range toks {
		out = append(out, s.Describe(t))
	}
	return out, nil
}

// Revoke ends a token now (a package left on a USB stick, a token pasted
// in a ticket). It moves the token's expiry to now, which every enrollment
// already checks, so a revoked token is refused; devices already enrolled
// with it are unaffected. Who and why go to the access log.
func (s *Service) Revoke(ctx context.Context, id, who, reason string) (Info, error) {
	toks, err := s.Store.Tokens()
	if err != nil {
		return Info{}, fmt.Errorf("revoke token: %w", err)
	}
	for _, t := range toks {
		if t.ID != id {
			continue
		}
		now := s.now()
		if now.Before(t.ExpiresAt) {
			t.ExpiresAt = now
		}
		if t.RevokedAt.IsZero() {
			t.RevokedAt, t.RevokedBy, t.RevokeReason = now, who, reason
		}
		if err := s.Store.PutToken(t); err != nil {
			return Info{}, fmt.Errorf("revoke token %s: %w", id, err)
		}
		if err := s.Store.LogAccess(store.AccessEntry{Time: now, Who: who, Action: "revoke-token", Reason: reason,
			Detail: "token " + id + schoolDetail(t.School) + ", group " + t.Group}); err != nil {
			// The revocation stands (refusing enrollments matters more); the
			// missing entry is loud in the log.
			s.log().Error("token revoked but the access log entry was not written", "token", id, "err", err)
		}
		s.log().Warn("enrollment token revoked", "token", id, "group", t.Group, "uses", t.Uses, "by", who, "reason", reason)
		return s.Describe(t), nil
	}
	return Info{}, fmt.Errorf("%w: %q", ErrNotFound, id)
}

// schoolDetail names a school other than the default in an access-log
// entry (a single-school installation's entries read as before).
func schoolDetail(school string) string {
	if school == "" {
		return ""
	}
	return ", school " + school
}
