package console

// The review form's HTTP side: the review part of an alert's page and
// POST /api/v1/alerts/{id}/actions, and the exclusions a false positive
// proposes. Every rule of the review is collector/triage's; this turns a
// signed-in user into a triage.Actor and the answer into HTTP.

import (
	"crypto/rand"
	"encoding/hex"
	"errors"
	"net/http"
	"sort"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
	"github.com/vigil-safeguarding/vigil/collector/triage"
)

// Conclusions and ConclusionLabels are the review form's (triage).
var (
	Conclusions      = triage.Conclusions
	ConclusionLabels = triage.ConclusionLabels
)

// reviewerJSON is a person who may sign the form.
type reviewerJSON struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Position    string `json:"position"`
}

type falsePositiveJSON struct {
	Reason          string  `json:"reason"`
	By              string  `json:"by"`
	ByName          string  `json:"by_name"`
	At              *string `json:"at"`
	ExclusionID     string  `json:"exclusion_id"`
	ExclusionStatus string  `json:"exclusion_status"`
}

type reviewJSON struct {
	Route              string       `json:"route"`
	Reason             string       `json:"reason"`
	FirstReviewer      string       `json:"first_reviewer"`
	FirstReviewerName  string       `json:"first_reviewer_name"`
	FirstSignedAt      *string      `json:"first_signed_at"`
	SecondRequested    string       `json:"second_requested"`
	SecondRequestedBy  string       `json:"second_requested_name"`
	SecondReviewer     string       `json:"second_reviewer"`
	SecondReviewerName string       `json:"second_reviewer_name"`
	SecondSignedAt     *string      `json:"second_signed_at"`
	Conclusion         string       `json:"conclusion"`
	ConclusionOther    string       `json:"conclusion_other"`
	ConcludedAt        *string      `json:"concluded_at"`
	Notes              []store.Note `json:"notes"`
	// FalsePositive is set when the review ended as a false positive.
	FalsePositive *falsePositiveJSON `json:"false_positive"`
	// SecondReviewers are the people who may sign second (besides the
	// first reviewer and the alert's subject): what the first reviewer
	// chooses from (triage.SecondRoles).
	SecondReviewers []reviewerJSON `json:"second_reviewers"`
	// Actions are the steps the viewer may take now (triage.Allowed).
	Actions []triage.Action `json:"actions"`
}

func (s *Server) displayName(username string) string {
	if username == "" {
		return ""
	}
	if u, err := s.st.GetUser(username); err == nil && u.DisplayName != "" {
		return u.DisplayName
	}
	return username
}

// reviewJSON is the review form of a as v sees it.
func (s *Server) reviewJSON(a *store.Alert, v *viewer) reviewJSON {
	st := a.State
	route := s.routeOf(a.Finding)
	j := reviewJSON{Route: route,
		Reason: st.Reason, FirstReviewer: st.FirstReviewer, FirstReviewerName: s.displayName(st.FirstReviewer), FirstSignedAt: tsPtr(st.FirstSignedAt),
		SecondRequested: st.SecondRequested, SecondRequestedBy: s.displayName(st.SecondRequested),
		SecondReviewer: st.SecondReviewer, SecondReviewerName: s.displayName(st.SecondReviewer), SecondSignedAt: tsPtr(st.SecondSignedAt),
		Conclusion: st.Conclusion, ConclusionOther: st.ConclusionOther, ConcludedAt: tsPtr(st.ConcludedAt), Notes: st.Notes,
		SecondReviewers: []reviewerJSON{}, Actions: triage.Allowed(st, triage.Route(route), s.actor(&v.User, a.Finding, st)),
	}
	if j.Notes == nil {
		j.Notes = []store.Note{}
	}
	if j.Actions == nil {
		j.Actions = []triage.Action{}
	}
	if st.Status == triage.FalsePositive {
		fp := &falsePositiveJSON{Reason: st.FalsePositiveReason, By: st.FalsePositiveBy, ByName: s.displayName(st.FalsePositiveBy),
			At: tsPtr(st.FalsePositiveAt), ExclusionID: st.ExclusionID}
		if st.ExclusionID != "" {
			if x, err := s.st.GetExclusion(st.ExclusionID); err == nil {
				fp.ExclusionStatus = x.Status
			}
		}
		j.FalsePositive = fp
	}
	if !st.Status.Closed() && st.SecondReviewer == "" {
		users, err := s.st.Users()
		if err != nil {
			s.log.Warn("console: list who may sign second", "err", err)
		}
		for _, u := range users {
			if u.Username == st.FirstReviewer {
				continue
			}
			if triage.SecondEligible(triage.Route(route), s.actor(&u, a.Finding, st)) {
				j.SecondReviewers = append(j.SecondReviewers, reviewerJSON{Username: u.Username, DisplayName: u.DisplayName, Position: roleLabel(u)})
			}
		}
		sort.Slice(j.SecondReviewers, func(i, k int) bool { return j.SecondReviewers[i].DisplayName < j.SecondReviewers[k].DisplayName })
	}
	return j
}

type actionRequest struct {
	Action     string `json:"action"`
	Reason     string `json:"reason"`
	Text       string `json:"text"`
	Conclusion string `json:"conclusion"`
	Other      string `json:"other"`
	// Reviewer is the username request_second_reviewer names.
	Reviewer string `json:"reviewer"`
}

// actionError carries the HTTP status of a refused request.
type actionError struct {
	code int
	msg  string
}

func (e *actionError) Error() string { return e.msg }

func conflict(msg string) error { return &actionError{http.StatusConflict, msg} }

func cleanText(s string, max int) string { return triage.CleanText(s, max) }

// newExclusionID names a proposed exclusion (random, so two proposals
// never share one).
func newExclusionID() string {
	b := make([]byte, 8)
	rand.Read(b)
	return hex.EncodeToString(b)
}

// triageStatus maps a refused step to HTTP.
func triageStatus(k triage.Kind) int {
	switch k {
	case triage.Invalid:
		return http.StatusBadRequest
	case triage.Forbidden:
		return http.StatusForbidden
	}
	return http.StatusConflict
}

// alertAction takes one step of the review (triage.Apply) in one store
// transaction with the exclusion a false positive proposes.
func (s *Server) alertAction(w http.ResponseWriter, r *http.Request, v *viewer) {
	a := s.loadVisible(w, r.PathValue("id"), v)
	if a == nil {
		return
	}
	var req actionRequest
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	f := a.Finding
	act := triage.Act{Action: triage.Action(req.Action), Route: triage.Route(s.routeOf(f)), Reason: req.Reason, Text: req.Text,
		Conclusion: req.Conclusion, Other: req.Other}
	var second *store.User
	if act.Action == triage.RequestSecond && req.Reviewer != "" {
		u, err := s.st.GetUser(req.Reviewer)
		if errors.Is(err, store.ErrNotFound) {
			jsonError(w, http.StatusBadRequest, "reviewer: no account %q", req.Reviewer)
			return
		}
		if err != nil {
			s.internal(w, "read reviewer", err)
			return
		}
		second = &u
	}
	if act.Action == triage.MarkFalse {
		act.ExclusionID = newExclusionID()
	}
	now := s.now().UTC()
	st, err := s.st.ReviewAlert(f.DeviceId, f.Seq, func(st *store.AlertState) (*store.Exclusion, error) {
		// Who the viewer (and the named reviewer) are is judged on the
		// state read in this transaction (an escalation may have added a
		// route since the page was read).
		if second != nil {
			c := s.actor(second, f, *st)
			act.Second = &c
		}
		next, err := triage.Apply(*st, act, s.actor(&v.User, f, *st), now)
		if err != nil {
			return nil, err
		}
		*st = next
		if act.Action != triage.MarkFalse {
			return nil, nil
		}
		return &store.Exclusion{ID: act.ExclusionID, AlertID: AlertID(f.DeviceId, f.Seq), RuleID: f.RuleId,
			Library: f.GetScreenMatch().GetLibrary(), Term: f.GetScreenMatch().GetTerm(), Category: f.Category,
			Status: "pending", ProposedBy: v.Username, ProposedAt: now, ProposalReason: next.FalsePositiveReason,
			School: schoolField(s.tenancyPolicy().DeviceSchool(f.DeviceId))}, nil
	})
	var te *triage.Error
	switch {
	case errors.As(err, &te):
		jsonError(w, triageStatus(te.Kind), "%s", te.Msg)
		return
	case errors.Is(err, store.ErrNotFound):
		jsonError(w, http.StatusNotFound, "no such alert")
		return
	case err != nil:
		s.internal(w, "update alert", err)
		return
	}
	a.State = st
	writeJSON(w, http.StatusOK, s.detailJSON(a, v))
}

// listExclusions: the exclusions of the schools the viewer sees, and
// every trust-wide one in force in theirs (of another school's, what is
// excluded only: tenancy.ExclusionSummary).
func (s *Server) listExclusions(w http.ResponseWriter, r *http.Request, v *viewer) {
	list, err := s.st.Exclusions()
	if err != nil {
		s.internal(w, "list exclusions", err)
		return
	}
	out := []store.Exclusion{}
	for _, x := range list {
		switch {
		case tenancy.SeesExclusion(&v.User, x):
			out = append(out, x)
		case x.TrustWide && x.Status == "approved":
			out = append(out, tenancy.ExclusionSummary(x))
		}
	}
	writeJSON(w, http.StatusOK, out)
}

// schoolField is how a record names its school: "" for the default one.
func schoolField(school string) string {
	if store.SchoolOf(school) == store.DefaultSchool {
		return ""
	}
	return school
}

func (s *Server) approveExclusion(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Reason    string `json:"reason"`
		ExpiresAt string `json:"expires_at"`
		// TrustWide applies it on every school's devices: only an account
		// that sees every school (tenancy.SetsTrustWide).
		TrustWide bool `json:"trust_wide"`
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	reason := cleanText(req.Reason, 2000)
	exp, err := time.Parse(time.RFC3339, req.ExpiresAt)
	now := s.now().UTC()
	switch {
	case reason == "":
		jsonError(w, http.StatusBadRequest, "approval needs a reason (seed 002 §12.2)")
		return
	case err != nil:
		jsonError(w, http.StatusBadRequest, "expires_at: want RFC3339 (approval needs an expiry, seed 002 §12.2)")
		return
	case !exp.After(now):
		jsonError(w, http.StatusBadRequest, "expires_at must be in the future")
		return
	}
	// Another school's exclusion is answered exactly as one that does not
	// exist; the school is read again in the update's transaction.
	if cur, err := s.st.GetExclusion(r.PathValue("id")); err == nil && !tenancy.SeesExclusion(&v.User, cur) {
		jsonError(w, http.StatusNotFound, "no such exclusion")
		return
	}
	if req.TrustWide && !s.mayTrustWide(w, v) {
		return
	}
	x, err := s.st.UpdateExclusion(r.PathValue("id"), func(x *store.Exclusion) error {
		if !tenancy.SeesExclusion(&v.User, *x) {
			return store.ErrNotFound
		}
		x.TrustWide = req.TrustWide
		if x.Status != "pending" {
			return conflict("this exclusion is not pending")
		}
		if !appliable(*x) {
			return conflict("this exclusion names no keyword library and term, so agents could not apply it")
		}
		x.Status, x.ApprovedBy, x.ApprovedAt, x.ApprovalReason, x.ExpiresAt = "approved", v.Username, now, reason, exp.UTC()
		return nil
	})
	var ae *actionError
	switch {
	case errors.As(err, &ae):
		jsonError(w, ae.code, "%s", ae.msg)
	case errors.Is(err, store.ErrNotFound):
		jsonError(w, http.StatusNotFound, "no such exclusion")
	case err != nil:
		s.internal(w, "approve exclusion", err)
	default:
		s.log.Info("console: exclusion approved", "id", x.ID, "by", v.Username, "school", x.School, "trust_wide", x.TrustWide, "rule", x.RuleID, "term", x.Term, "expires", x.ExpiresAt)
		if s.exclChg != nil {
			s.exclChg() // rebuild the rules bundles and push them to agents
		}
		writeJSON(w, http.StatusOK, x)
	}
}
