package store

// Terms added by the school (issue 12) and their decision log. Key layout
// (docs/storage.md):
//
//	kt/<term id>                               -> SchoolTerm (JSON), the terms in force
//	kd/<at ns:8><term id><action>              -> TermDecision (JSON), append-only
//
// A term record and its decision are written in one transaction, so the
// log never misses an add or a removal that took effect, and never records
// one that did not.

import (
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
}

// Term decision actions.
const (
	TermAdded   = "added"
	TermRemoved = "removed"
)

// TermDecision is one entry of the school terms' decision log: who added or
// removed which term, when and why. Entries are never changed or deleted.
type TermDecision struct {
	At     time.Time  `json:"at"`
	Action string     `json:"action"` // added, removed
	By     string     `json:"by"`
	Reason string     `json:"reason"`
	Term   SchoolTerm `json:"term"` // the term as it was added (or as it stood when removed)
}

func termDecisionKey(d TermDecision) []byte {
	k := binary.BigEndian.AppendUint64([]byte(pfxTermDecision), uint64(d.At.UnixNano()))
	return append(append(k, d.Term.ID...), '/', d.Action[0])
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
