package store

// Terms added by the school (issue 12) and their decision log. Key layout
// (docs/storage.md):
//
//	kt/<term id>                               -> SchoolTerm (JSON), the terms in force
//	kd/<at ns:8><term id><action>              -> TermDecision (JSON), append-only
//	ks/<school>/<term id>                      -> TermSuppression (JSON), a school's opt-out of a trust-wide term
//
// A term is one school's (School; "" is the default school's, like every
// record that names no school) or the trust's (TrustWide): a trust-wide
// term is in force in every school that has not suppressed it, so a school
// overrides the trust's list without editing it.
//
// A term record and its decision are written in one transaction, so the
// log never misses an add or a removal that took effect, and never records
// one that did not.

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

const (
	pfxSchoolTerm   = "kt/"
	pfxTermDecision = "kd/"
	pfxTermSuppress = "ks/"
)

// SchoolTerm is a keyword a DSL added for this school: slang heard in the
// school, a local group, a nickname used to bully. It is matched like a
// term of the published libraries (collector/schoolterms renders it into a
// library file in every group's rules bundle).
type SchoolTerm struct {
	ID string `json:"id"`
	// Term is the term as a library line writes it, options included
	// ("TERM [; key=value]...", docs/keywords.md), without severity and rationale.
	Term      string    `json:"term"`
	Category  string    `json:"category"`
	Severity  string    `json:"severity"`
	Rationale string    `json:"rationale"`
	Cases     string    `json:"cases"` // a .cases file: "+ must match" / "- must not match" lines
	AddedBy   string    `json:"added_by"`
	AddedAt   time.Time `json:"added_at"`
	// School owns the term ("" is the default school); ignored when
	// TrustWide.
	School string `json:"school,omitempty"`
	// TrustWide: in force in every school that has not suppressed it.
	TrustWide bool `json:"trust_wide,omitempty"`
}

// InForceIn says whether t applies in school, given the trust-wide terms
// that school suppressed.
func (t SchoolTerm) InForceIn(school string, suppressed map[string]bool) bool {
	if t.TrustWide {
		return !suppressed[t.ID]
	}
	return SchoolOf(t.School) == SchoolOf(school)
}

// Term decision actions.
const (
	TermAdded      = "added"
	TermRemoved    = "removed"
	TermSuppressed = "suppressed" // a school opted out of a trust-wide term
	TermRestored   = "restored"   // and back in
)

// TermDecision is one entry of the school terms' decision log: who added or
// removed which term, when and why. Entries are never changed or deleted.
type TermDecision struct {
	At     time.Time  `json:"at"`
	Action string     `json:"action"` // added, removed
	By     string     `json:"by"`
	Reason string     `json:"reason"`
	Term   SchoolTerm `json:"term"` // the term as it was added (or as it stood when removed)
	// School is the school that suppressed or restored a trust-wide term.
	School string `json:"school,omitempty"`
}

// TermSuppression is a school's opt-out of one trust-wide term.
type TermSuppression struct {
	School string    `json:"school"`
	TermID string    `json:"term_id"`
	By     string    `json:"by"`
	At     time.Time `json:"at"`
	Reason string    `json:"reason"`
}

func suppressKey(school, term string) []byte {
	return []byte(pfxTermSuppress + SchoolOf(school) + "/" + term)
}

func termDecisionKey(d TermDecision) []byte {
	k := binary.BigEndian.AppendUint64([]byte(pfxTermDecision), uint64(d.At.UnixNano()))
	k = append(append(k, d.Term.ID...), '/', d.Action[0])
	if d.School != "" {
		// Two schools may suppress the same term in the same instant.
		k = append(append(k, '/'), d.School...)
	}
	return k
}

// appendDecision writes d under a key not used before (append-only).
func appendDecision(txn *badger.Txn, d TermDecision) error {
	key := termDecisionKey(d)
	if _, err := txn.Get(key); err == nil {
		return fmt.Errorf("decision log entry %q exists: %w", key, ErrExists)
	} else if !errors.Is(err, badger.ErrKeyNotFound) {
		return err
	}
	v, _ := json.Marshal(d)
	return txn.Set(key, v)
}

// AddSchoolTerm stores t and its "added" decision (by, reason, at t.AddedAt)
// together; ErrExists if a term with t.ID is already there.
func (s *Store) AddSchoolTerm(t SchoolTerm, reason string) error {
	if t.ID == "" || t.AddedBy == "" || t.AddedAt.IsZero() {
		return errors.New("store: a school term needs an id, who added it and when")
	}
	v, _ := json.Marshal(t)
	return s.retryUpdate(func(txn *badger.Txn) error {
		key := []byte(pfxSchoolTerm + t.ID)
		if _, err := txn.Get(key); err == nil {
			return ErrExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		if err := txn.Set(key, v); err != nil {
			return err
		}
		return appendDecision(txn, TermDecision{At: t.AddedAt, Action: TermAdded, By: t.AddedBy, Reason: reason, Term: t})
	})
}

// RemoveSchoolTerm deletes the term and logs its removal (by, reason, at);
// ErrNotFound if it is not in force. It returns the removed term.
func (s *Store) RemoveSchoolTerm(id, by, reason string, at time.Time) (SchoolTerm, error) {
	if by == "" || at.IsZero() {
		return SchoolTerm{}, errors.New("store: a removal needs who removed it and when")
	}
	var t SchoolTerm
	err := s.retryUpdate(func(txn *badger.Txn) error {
		t = SchoolTerm{}
		key := []byte(pfxSchoolTerm + id)
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &t) }); err != nil {
			return err
		}
		if err := txn.Delete(key); err != nil {
			return err
		}
		if t.TrustWide {
			// Its suppressions go with it: a term added again later under
			// a new id is in force everywhere until a school opts out again.
			if err := deleteSuppressionsOf(txn, t.ID); err != nil {
				return err
			}
		}
		return appendDecision(txn, TermDecision{At: at, Action: TermRemoved, By: by, Reason: reason, Term: t})
	})
	return t, err
}

// SchoolTerms lists the terms in force, in id order.
func (s *Store) SchoolTerms() ([]SchoolTerm, error) {
	var out []SchoolTerm
	err := scanJSON(s.db, pfxSchoolTerm, func(_, v []byte) error {
		var t SchoolTerm
		if err := json.Unmarshal(v, &t); err != nil {
			return err
		}
		out = append(out, t)
		return nil
	})
	return out, err
}

// TermDecisions lists the decision log, oldest first.
func (s *Store) TermDecisions() ([]TermDecision, error) {
	var out []TermDecision
	err := scanJSON(s.db, pfxTermDecision, func(_, v []byte) error {
		var d TermDecision
		if err := json.Unmarshal(v, &d); err != nil {
			return err
		}
		out = append(out, d)
		return nil
	})
	return out, err
}

func deleteSuppressionsOf(txn *badger.Txn, term string) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pfxTermSuppress)})
	var keys [][]byte
	for it.Rewind(); it.Valid(); it.Next() {
		k := it.Item().Key()
		if _, id, ok := bytes.Cut(k[len(pfxTermSuppress):], []byte("/")); ok && string(id) == term {
			keys = append(keys, it.Item().KeyCopy(nil))
		}
	}
	it.Close()
	for _, k := range keys {
		if err := txn.Delete(k); err != nil {
			return err
		}
	}
	return nil
}

// GetSchoolTerm reads one term in force; ErrNotFound if there is none.
func (s *Store) GetSchoolTerm(id string) (SchoolTerm, error) {
	var t SchoolTerm
	err := getJSON(s.db, []byte(pfxSchoolTerm+id), &t)
	return t, err
}

// SuppressTerm records that school opts out of the trust-wide term id,
// with its decision, in one transaction. ErrNotFound if no such term is in
// force, ErrExists if the school suppressed it already; a term that is not
// trust-wide is refused.
func (s *Store) SuppressTerm(x TermSuppression) error {
	if x.By == "" || x.At.IsZero() || x.Reason == "" {
		return errors.New("store: a suppression needs who, when and why")
	}
	x.School = SchoolOf(x.School)
	return s.retryUpdate(func(txn *badger.Txn) error {
		t, err := termIn(txn, x.TermID)
		if err != nil {
			return err
		}
		if !t.TrustWide {
			return fmt.Errorf("store: term %s is %s's own, not trust-wide: remove it instead", t.ID, SchoolOf(t.School))
		}
		key := suppressKey(x.School, x.TermID)
		if _, err := txn.Get(key); err == nil {
			return ErrExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		v, _ := json.Marshal(x)
		if err := txn.Set(key, v); err != nil {
			return err
		}
		return appendDecision(txn, TermDecision{At: x.At, Action: TermSuppressed, By: x.By, Reason: x.Reason, Term: t, School: x.School})
	})
}

// RestoreTerm ends school's suppression of term id (by, reason, at logged);
// ErrNotFound if the school had not suppressed it.
func (s *Store) RestoreTerm(school, id, by, reason string, at time.Time) error {
	if by == "" || at.IsZero() || reason == "" {
		return errors.New("store: a restore needs who, when and why")
	}
	school = SchoolOf(school)
	return s.retryUpdate(func(txn *badger.Txn) error {
		key := suppressKey(school, id)
		if _, err := txn.Get(key); errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		t, err := termIn(txn, id)
		if err != nil {
			return err
		}
		if err := txn.Delete(key); err != nil {
			return err
		}
		return appendDecision(txn, TermDecision{At: at, Action: TermRestored, By: by, Reason: reason, Term: t, School: school})
	})
}

func termIn(txn *badger.Txn, id string) (SchoolTerm, error) {
	var t SchoolTerm
	item, err := txn.Get([]byte(pfxSchoolTerm + id))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return t, ErrNotFound
	} else if err != nil {
		return t, err
	}
	err = item.Value(func(v []byte) error { return json.Unmarshal(v, &t) })
	return t, err
}

// TermSuppressions lists every school's suppressions of trust-wide terms.
func (s *Store) TermSuppressions() ([]TermSuppression, error) {
	var out []TermSuppression
	err := scanJSON(s.db, pfxTermSuppress, func(_, v []byte) error {
		var x TermSuppression
		if err := json.Unmarshal(v, &x); err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// TermsInForce is the terms in force in school: its own and the trust-wide
// ones it has not suppressed, in id order.
func (s *Store) TermsInForce(school string) ([]SchoolTerm, error) {
	all, err := s.SchoolTerms()
	if err != nil {
		return nil, err
	}
	sup, err := s.TermSuppressions()
	if err != nil {
		return nil, err
	}
	off := map[string]bool{}
	for _, x := range sup {
		if x.School == SchoolOf(school) {
			off[x.TermID] = true
		}
	}
	var out []SchoolTerm
	for _, t := range all {
		if t.InForceIn(school, off) {
			out = append(out, t)
		}
	}
	return out, nil
}
