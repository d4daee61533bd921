package store

import (
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Token is an enrollment token's server-side record; the secret itself is
// never stored, only its hash.
type Token struct {
	ID         string    `json:"id"`
	SecretHash string    `json:"secret_hash"`
	Group      string    `json:"group"`
	CreatedAt  time.Time `json:"created_at"`
	ExpiresAt  time.Time `json:"expires_at"`
	MaxUses    int       `json:"max_uses"`
	Uses       int       `json:"uses"`
}

// Token refusal reasons, worded for the technician who typed the token.
var (
	ErrTokenUnknown = errors.New("enrollment token is not known to this collector")
	ErrTokenExpired = errors.New("enrollment token has expired")
	ErrTokenUsedUp  = errors.New("enrollment token has no uses left")
)

// PutToken stores a new token.
func (s *Store) PutToken(t Token) error {
	v, _ := json.Marshal(t)
	err := s.db.Update(func(txn *badger.Txn) error {
		e := badger.NewEntry([]byte(pfxToken+t.ID), v)
		// Keep expired tokens a while so a late enrollment gets "expired",
		// not "unknown"; then Badger drops them.
		if ttl := time.Until(t.ExpiresAt) + 30*24*time.Hour; ttl > 0 {
			e = e.WithTTL(ttl)
		}
		return txn.SetEntry(e)
	})
	if err != nil {
		return fmt.Errorf("store: put token: %w", err)
	}
	return nil
}

// UseToken checks a presented secret and consumes one use, atomically.
// Badger transactions are serialisable, so two devices racing for the last
// use cannot both win: the loser gets a conflict and retries.
func (s *Store) UseToken(id, secretHash string, now time.Time) (Token, error) {
	for attempt := 0; ; attempt++ {
		var tok Token
		err := s.db.Update(func(txn *badger.Txn) error {
			item, err := txn.Get([]byte(pfxToken + id))
			if errors.Is(err, badger.ErrKeyNotFound) {
				return ErrTokenUnknown
			}
			if err != nil {
				return err
			}
			if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &tok) }); err != nil {
				return err
			}
			if subtle.ConstantTimeCompare([]byte(tok.SecretHash), []byte(secretHash)) != 1 {
				return ErrTokenUnknown
			}
			if now.After(tok.ExpiresAt) {
				return ErrTokenExpired
			}
			if tok.MaxUses > 0 && tok.Uses >= tok.MaxUses {
				return ErrTokenUsedUp
			}
			tok.Uses++
			v, _ := json.Marshal(tok)
			return txn.SetEntry(badger.NewEntry(item.KeyCopy(nil), v).WithTTL(time.Until(tok.ExpiresAt) + 30*24*time.Hour))
		})
		if errors.Is(err, badger.ErrConflict) && attempt < 10 {
			continue
		}
		return tok, err
	}
}

// Tokens lists all stored tokens.
func (s *Store) Tokens() ([]Token, error) {
	var out []Token
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(pfxToken)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			var t Token
			if err := it.Item().Value(func(v []byte) error { return json.Unmarshal(v, &t) }); err != nil {
				return err
			}
			out = append(out, t)
		}
		return nil
	})
	return out, err
}
