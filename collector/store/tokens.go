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
	ID         string `json:"id"`
	SecretHash string `json:"secret_hash"`
	Group      string `json:"group"`
	// School is where a device enrolled with the token lands ("" is
	// DefaultSchool).
	School    string    `json:"school,omitempty"`
	CreatedAt time.Time `json:"created_at"`
	ExpiresAt time.Time `json:"expires_at"`
	MaxUses   int       `json:"max_uses"`
	Uses      int       `json:"uses"`
	// Revocation (collector/tokens.Service.Revoke); ExpiresAt is moved to
	// the revocation time too, which is what enrollment checks.
	RevokedAt    time.Time `json:"revoked_at,omitempty"`
	RevokedBy    string    `json:"revoked_by,omitempty"`
	RevokeReason string    `json:"revoke_reason,omitempty"`
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
	err := s.update(func(txn *badger.Txn) error {
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

// tokenReq is one UseToken call waiting for the token writer.
type tokenReq struct {
	id, secretHash string
	now            time.Time
	done           chan tokenRes
}

type tokenRes struct {
	tok Token
	err error
}

// UseToken checks a presented secret and consumes one use, atomically.
// Uses are applied by one writer goroutine (tokenWriter), so concurrent
// enrollments never race in Badger (no transaction conflicts, no retries)
// and the use limit is exact; the writer applies every request already
// waiting in one synced transaction, so a whole school enrolling at once
// shares fsyncs instead of queueing for one each.
func (s *Store) UseToken(id, secretHash string, now time.Time) (Token, error) {
	if err := s.writeAllowed(false); err != nil {
		return Token{}, err
	}
	req := &tokenReq{id: id, secretHash: secretHash, now: now, done: make(chan tokenRes, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return Token{}, ErrClosed
	}
	s.mu.RUnlock()
	select {
	case s.tokenReqs <- req:
	case <-s.closing:
		return Token{}, ErrClosed
	}
	select {
	case r := <-req.done:
		return r.tok, r.err
	case <-s.closing:
		// The writer answers every request it took before it stops.
		<-s.tokDone
		select {
		case r := <-req.done:
			return r.tok, r.err
		default:
			return Token{}, ErrClosed
		}
	}
}

// maxTokenGroup bounds the uses applied in one transaction (well under
// Badger's transaction size limit, as each touches one small key).
const maxTokenGroup = 1000

func (s *Store) tokenWriter() {
	defer close(s.tokDone)
	for {
		var group []*tokenReq
		select {
		case <-s.closing:
			// Answer whatever is still queued.
			for {
				select {
				case r := <-s.tokenReqs:
					r.done <- tokenRes{err: ErrClosed}
				default:
					return
				}
			}
		case r := <-s.tokenReqs:
			group = append(group, r)
		}
	gather:
		for len(group) < maxTokenGroup {
			select {
			case r := <-s.tokenReqs:
				group = append(group, r)
			default:
				break gather
			}
		}
		s.applyTokenUses(group)
	}
}

// applyTokenUses applies a group of uses in order in one transaction. A
// conflict can only come from PutToken rewriting the same token at the same
// moment; then the whole group is re-read and re-applied.
func (s *Store) applyTokenUses(group []*tokenReq) {
	var res []tokenRes
	var err error
	for attempt := 0; attempt < 20; attempt++ {
		if err = s.writeAllowed(false); err != nil {
			break
		}
		res = make([]tokenRes, len(group))
		err = s.db.Update(func(txn *badger.Txn) error {
			toks := map[string]*Token{}
			changed := map[string]bool{}
			for i, r := range group {
				tok, ok := toks[r.id]
				if !ok {
					item, err := txn.Get([]byte(pfxToken + r.id))
					if errors.Is(err, badger.ErrKeyNotFound) {
						toks[r.id] = nil
						res[i].err = ErrTokenUnknown
						continue
					}
					if err != nil {
						return err
					}
					tok = &Token{}
					if err := item.Value(func(v []byte) error { return json.Unmarshal(v, tok) }); err != nil {
						return fmt.Errorf("decode token %s: %w", r.id, err)
					}
					toks[r.id] = tok
				}
				switch {
				case tok == nil || subtle.ConstantTimeCompare([]byte(tok.SecretHash), []byte(r.secretHash)) != 1:
					res[i].err = ErrTokenUnknown
				case r.now.After(tok.ExpiresAt):
					res[i].tok, res[i].err = *tok, ErrTokenExpired
				case tok.MaxUses > 0 && tok.Uses >= tok.MaxUses:
					res[i].tok, res[i].err = *tok, ErrTokenUsedUp
				default:
					tok.Uses++
					changed[r.id] = true
					res[i].tok = *tok
				}
			}
			for id := range changed {
				tok := toks[id]
				v, _ := json.Marshal(tok)
				if err := txn.SetEntry(badger.NewEntry([]byte(pfxToken+id), v).WithTTL(time.Until(tok.ExpiresAt) + 30*24*time.Hour)); err != nil {
					return err
				}
			}
			return nil
		})
		if !errors.Is(err, badger.ErrConflict) {
			break
		}
		time.Sleep(time.Duration(attempt+1) * time.Millisecond)
	}
	if err != nil {
		err = fmt.Errorf("store: consume token: %w", s.mapWriteErr(err))
	}
	for i, r := range group {
		if err != nil {
			r.done <- tokenRes{err: err}
			continue
		}
		r.done <- res[i]
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
