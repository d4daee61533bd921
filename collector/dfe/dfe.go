// Package dfe keeps the school's evidence against the DfE filtering and
// monitoring standards: the roles register, the annual review records and
// the evidence pack that gathers them with the decision log, the alert
// handling figures and the check record (collector/fleetcheck). The
// console and the admin socket both call this one Service, so the rules
// for what a register or a review must hold live here.
package dfe

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/fleetcheck"
	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Store is what the evidence needs of the collector store.
type Store interface {
	GetDFERoles() (store.DFERoles, error)
	PutDFERoles(store.DFERoles) error
	DFERolesHistory() ([]store.DFERoles, error)
	AddDFEReview(store.DFEReview) error
	DFEReviews() ([]store.DFEReview, error)
	RulesChanges() ([]store.RulesChange, error)
	Exclusions() ([]store.Exclusion, error)
	TermDecisions() ([]store.TermDecision, error)
	AccessLog() ([]store.AccessEntry, error)
	LogAccess(store.AccessEntry) error
	Devices() []store.Device
}

// Service keeps the evidence. Construct it in the daemon.
type Service struct {
	Store  Store
	Checks *fleetcheck.Service
	Now    func() time.Time
}

func (s *Service) now() time.Time {
	if s.Now == nil {
		return time.Now().UTC()
	}
	return s.Now().UTC()
}

// ErrBadRequest marks input the caller must correct.
var ErrBadRequest = errors.New("bad request")

// Roles returns the register as it stands.
func (s *Service) Roles() (store.DFERoles, error) { return s.Store.GetDFERoles() }

// SetRoles names the holders given (a role left out keeps its holder; a
// holder with an empty name clears the role) and logs who changed it.
func (s *Service) SetRoles(by string, holders []store.RoleHolder) (store.DFERoles, error) {
	if by == "" {
		return store.DFERoles{}, fmt.Errorf("%w: who changes the register is required", ErrBadRequest)
	}
	cur, err := s.Store.GetDFERoles()
	if err != nil {
		return store.DFERoles{}, fmt.Errorf("read the roles register: %w", err)
	}
	now := s.now()
	next := map[string]store.RoleHolder{}
	for _, h := range cur.Holders {
		next[h.Role] = h
	}
	for _, h := range holders {
		if _, ok := store.DFERoleLabels[h.Role]; !ok {
			return store.DFERoles{}, fmt.Errorf("%w: unknown role %q (want one of %s)", ErrBadRequest, h.Role, strings.Join(store.DFERoleKeys, ", "))
		}
		h.Name, h.Contact = strings.TrimSpace(h.Name), strings.TrimSpace(h.Contact)
		if len(h.Name) > 200 || len(h.Contact) > 200 {
			return store.DFERoles{}, fmt.Errorf("%w: %s: name or contact longer than 200 characters", ErrBadRequest, h.Role)
		}
		if h.Name == "" {
			delete(next, h.Role)
			continue
		}
		if old, ok := next[h.Role]; !ok || old.Name != h.Name {
			h.Since = now
		} else {
			h.Since = old.Since
		}
		next[h.Role] = h
	}
	r := store.DFERoles{UpdatedBy: by, UpdatedAt: now}
	var names []string
	for _, k := range store.DFERoleKeys {
		if h, ok := next[k]; ok {
			r.Holders = append(r.Holders, h)
			names = append(names, k+"="+h.Name)
		}
	}
	if err := s.Store.PutDFERoles(r); err != nil {
		return store.DFERoles{}, fmt.Errorf("write the roles register: %w", err)
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: now, Who: by, Action: "set-dfe-roles", Detail: strings.Join(names, "; ")}); err != nil {
		return r, fmt.Errorf("log the roles change: %w", err)
	}
	return r, nil
}

// Reviews lists the review records, oldest first.
func (s *Service) Reviews() ([]store.DFEReview, error) { return s.Store.DFEReviews() }

// AddReview records a review. The next review defaults to a year after it
// and may not be later: the standards ask for one at least every year.
func (s *Service) AddReview(by string, r store.DFEReview) (store.DFEReview, error) {
	if by == "" {
		return store.DFEReview{}, fmt.Errorf("%w: who records the review is required", ErrBadRequest)
	}
	now := s.now()
	var att []string
	for _, a := range r.Attendees {
		if a = strings.TrimSpace(a); a != "" {
			att = append(att, a)
		}
	}
	var acts []string
	for _, a := range r.Actions {
		if a = strings.TrimSpace(a); a != "" {
			acts = append(acts, a)
		}
	}
	r.Attendees, r.Actions, r.Findings = att, acts, strings.TrimSpace(r.Findings)
	switch {
	case r.Date.IsZero():
		return store.DFEReview{}, fmt.Errorf("%w: the review's date is required", ErrBadRequest)
	case r.Date.After(now.Add(24 * time.Hour)):
		return store.DFEReview{}, fmt.Errorf("%w: the review's date %s is in the future", ErrBadRequest, reports.Day(r.Date))
	case len(r.Attendees) == 0:
		return store.DFEReview{}, fmt.Errorf("%w: name who attended the review", ErrBadRequest)
	case r.Findings == "":
		return store.DFEReview{}, fmt.Errorf("%w: the review's findings are required (\"no changes needed\" is a finding)", ErrBadRequest)
	}
	if r.NextReview.IsZero() {
		r.NextReview = r.Date.AddDate(1, 0, 0)
	}
	if !r.NextReview.After(r.Date) || r.NextReview.Sub(r.Date) > reports.ReviewEvery+24*time.Hour {
		return store.DFEReview{}, fmt.Errorf("%w: the next review must fall within a year of this one", ErrBadRequest)
	}
	b := make([]byte, 3)
	rand.Read(b)
	r.ID = "rv-" + r.Date.UTC().Format("20060102") + "-" + hex.EncodeToString(b)
	r.RecordedBy, r.RecordedAt = by, now
	if err := s.Store.AddDFEReview(r); err != nil {
		return store.DFEReview{}, fmt.Errorf("write the review record: %w", err)
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: now, Who: by, Action: "record-dfe-review", Detail: r.ID + " of " + reports.Day(r.Date)}); err != nil {
		return r, fmt.Errorf("log the review: %w", err)
	}
	return r, nil
}

// Status is where the annual review stands now.
func (s *Service) Status() (reports.ReviewStatus, error) {
	rs, err := s.Store.DFEReviews()
	if err != nil {
		return reports.ReviewStatus{}, fmt.Errorf("read reviews: %w", err)
	}
	return reports.ReviewDue(rs, s.now()), nil
}

// Pack gathers the evidence pack over [from, to). alerts are the
// monitoring report's figures over the same window as the caller may see
// them (the console counts only the alerts its viewer may see).
func (s *Service) Pack(from, to time.Time, alerts reports.Monitoring) (reports.EvidencePack, error) {
	p := reports.EvidencePack{From: from, To: to, Generated: s.now(), Alerts: alerts}
	var err error
	if p.Roles, err = s.Store.GetDFERoles(); err != nil {
		return p, fmt.Errorf("read the roles register: %w", err)
	}
	if p.Reviews, err = s.Store.DFEReviews(); err != nil {
		return p, fmt.Errorf("read reviews: %w", err)
	}
	var src reports.DecisionSources
	if src.Rules, err = s.Store.RulesChanges(); err != nil {
		return p, fmt.Errorf("read the rules history: %w", err)
	}
	if src.Exclusions, err = s.Store.Exclusions(); err != nil {
		return p, fmt.Errorf("read exclusions: %w", err)
	}
	if src.Terms, err = s.Store.TermDecisions(); err != nil {
		return p, fmt.Errorf("read school terms' decisions: %w", err)
	}
	if src.Access, err = s.Store.AccessLog(); err != nil {
		return p, fmt.Errorf("read the access log: %w", err)
	}
	if src.Roles, err = s.Store.DFERolesHistory(); err != nil {
		return p, fmt.Errorf("read the roles register's history: %w", err)
	}
	p.Decisions = reports.BuildDecisions(src, from, to, p.Generated)
	outcome := map[string]store.FleetCheckDevice{}
	if s.Checks != nil {
		c, ok, err := s.Checks.Latest()
		if err != nil {
			return p, fmt.Errorf("read fleet checks: %w", err)
		}
		if ok {
			p.Check = &c
			for _, d := range c.Devices {
				outcome[d.DeviceID] = d
			}
		}
	}
	for _, d := range s.Store.Devices() {
		if d.Revoked {
			continue
		}
		row := reports.CheckRow{DeviceID: d.DeviceID, Hostname: d.Hostname, Group: d.Group,
			Outcome: "not_checked", OutcomeLabel: "Not in a fleet check yet", Detail: "enrolled after the latest fleet check, or none was run"}
		if o, ok := outcome[d.DeviceID]; ok {
			row.Outcome, row.OutcomeLabel, row.Detail = o.Outcome, fleetcheck.OutcomeLabel(o.Outcome), o.Detail
		}
		if s.Checks != nil {
			row.LastProved = s.Checks.LastProved(d.DeviceID)
		}
		p.Rows = append(p.Rows, row)
	}
	return reports.BuildEvidencePack(p), nil
}
