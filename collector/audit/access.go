package audit

import (
	"errors"
	"fmt"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Reader is who asks for an audit: the name the access log records, and
// which schools' audits they may see (collector/tenancy's answer for the
// console account; nil for the collector's operator, who sees every
// school). An audit belongs to one school (Header.School) and covers that
// school's devices only; every read, the list and the sign-off ask Sees,
// so another school's audit answers exactly as one that does not exist.
type Reader struct {
	Name string
	Sees func(school string) bool
}

// Operator is the collector's operator (the admin socket) as a Reader.
func Operator(name string) Reader { return Reader{Name: name} }

func (r Reader) sees(school string) bool {
	return r.Sees == nil || r.Sees(store.SchoolOf(school))
}

// ErrNotLogged wraps a failed access-log write: the audit was read but is
// not returned, because an audit holds personal data (local accounts,
// hostnames) and every read of one is in the access log.
var ErrNotLogged = errors.New("access not logged")

// View reads audit id for who to see, writing "view-audit" to the access
// log first. Every entry point (console, admin socket) shows an audit
// through here, so none can show one unlogged.
func (s *Service) View(id string, who Reader) (Record, error) {
	r, err := s.readRecord(id, who)
	if err != nil {
		return Record{}, err
	}
	if err := s.logRead(who.Name, "view-audit", id); err != nil {
		return Record{}, err
	}
	return r, nil
}

// Export reads audit id for who to export as format (pdf, csv: rendered
// by the caller), writing "export-audit" with the format to the access
// log first.
func (s *Service) Export(id string, who Reader, format string) (Record, error) {
	r, err := s.readRecord(id, who)
	if err != nil {
		return Record{}, err
	}
	if err := s.logRead(who.Name, "export-audit", id+" "+format); err != nil {
		return Record{}, err
	}
	return r, nil
}

// ExportChain reads audit id's chain as stored, for who to export (the
// admin socket's export, which an auditor re-verifies offline), writing
// "export-audit" to the access log first.
func (s *Service) ExportChain(id string, who Reader) (Chain, error) {
	c, err := s.chain(id, who)
	if err != nil {
		return Chain{}, err
	}
	if err := s.logRead(who.Name, "export-audit", id); err != nil {
		return Chain{}, err
	}
	return c, nil
}

// Verification is an audit chain's check: its head hash, and why it does
// not verify (nil when it does). It holds nothing of the record, so
// reading it is not an access.
type Verification struct {
	Hash string
	Err  error
}

// CheckChain verifies audit id's stored chain; the error is for a chain
// that could not be read, Verification.Err for one that does not verify.
func (s *Service) CheckChain(id string, r Reader) (Verification, error) {
	c, err := s.chain(id, r)
	if err != nil {
		return Verification{}, err
	}
	return Verification{Hash: c.Head.Hash, Err: VerifyChain(c)}, nil
}

func (s *Service) logRead(who, action, detail string) error {
	s.init()
	e := store.AccessEntry{Time: s.Now().UTC(), Who: who, Action: action, Detail: detail}
	if err := s.Store.LogAccess(e); err != nil {
		return fmt.Errorf("%w: %s %s: %w", ErrNotLogged, action, detail, err)
	}
	return nil
}
