package console

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/findings"
	"github.com/vigil-safeguarding/vigil/internal/personid"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Routes (seed 002 §5.3).
const (
	RouteDSL         = "dsl"
	RouteHeadteacher = "headteacher"
	RouteChair       = "chair"
)

// IllegalGuidance is what the console says instead of showing evidence that
// may be illegal to view.
const IllegalGuidance = "Do not view. Preserve the device and refer to the police/CEOP and the LADO as the policy requires (seed 002 Appendix 6)."

// routeFor: a pupil (or someone not in the directory) goes to the DSL, a
// staff member to the headteacher, the headteacher to the chair of governors.
func routeFor(p store.Person, known bool) string {
	if known {
		switch p.Role {
		case "staff":
			return RouteHeadteacher
		case "headteacher":
			return RouteChair
		}
	}
	return RouteDSL
}

// viewerRoute is the route a user reviews, or "" for none.
func viewerRoute(u *store.User) string {
	switch {
	case u.Role == RoleDSL:
		return RouteDSL
	case u.Role == RoleHeadteacher:
		return RouteHeadteacher
	case u.Role == RoleGovernor && u.Chair:
		return RouteChair
	}
	return ""
}

// Illegal says whether an alert may concern illegal material: its evidence
// is then never served (seed 002 Appendix 6).
func Illegal(f *vigilv1.Finding) bool {
	if f.GetSeverity() < vigilv1.Severity_SEVERITY_CRITICAL {
		return false
	}
	switch f.GetCategory() {
	case "sexual_content", "csam", "grooming":
		return true
	}
	return false
}

// AlertID is "<device_id>-<seq>".
func AlertID(device string, seq uint64) string { return device + "-" + strconv.FormatUint(seq, 10) }

func parseAlertID(id string) (string, uint64, bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return id[:i], seq, true
}

type evidenceJSON struct {
	ID        string `json:"id"`
	MediaType string `json:"media_type"`
	Size      int64  `json:"size"`
}

// AlertJSON is an alert as the API shows it.
type AlertJSON struct {
	ID         string         `json:"id"`
	DeviceID   string         `json:"device_id"`
	Hostname   string         `json:"hostname"`
	Seq        uint64         `json:"seq"`
	Time       string         `json:"time"`
	Group      string         `json:"group"`
	Person     string         `json:"person"`
	PersonName string         `json:"person_name"`
	PersonRole string         `json:"person_role"`
	Category   string         `json:"category"`
	Severity   string         `json:"severity"`
	Term       string         `json:"term"`
	Context    string         `json:"context"`
	Message    string         `json:"message"`
	Title      string         `json:"title"`
	Process    string         `json:"process"`
	Status     string         `json:"status"`
	Illegal    bool           `json:"illegal"`
	Evidence   []evidenceJSON `json:"evidence"`
	RoutedTo   string         `json:"routed_to"`
}

func (s *Server) alertJSON(a *store.Alert) AlertJSON {
	f := a.Finding
	p, known := s.person(f.GetUser())
	m := f.GetScreenMatch() // the store upgrades alerts stored before it was typed
	j := AlertJSON{
		ID: AlertID(f.DeviceId, f.Seq), DeviceID: f.DeviceId, Seq: f.Seq, Time: ts(f.GetObservedAt().AsTime()),
		Group: f.Group, Person: personid.Canonical(f.User), PersonName: p.DisplayName, PersonRole: p.Role,
		Category: f.Category, Severity: findings.SeverityName(f.Severity),
		Term: m.GetTerm(), Context: m.GetContext(), Message: f.Message,
		Title: m.GetWindowTitle(), Process: m.GetProcess(),
		Status: a.State.Status, Illegal: Illegal(f), Evidence: []evidenceJSON{}, RoutedTo: routeFor(p, known),
	}
	if d, ok := s.st.GetDevice(f.DeviceId); ok {
		j.Hostname = d.Hostname
	}
	if !known {
		j.PersonRole = "unknown"
	}
	for _, e := range f.Evidence {
		j.Evidence = append(j.Evidence, evidenceJSON{ID: e.Id, MediaType: e.MediaType, Size: e.Size})
	}
	return j
}

// isSubject reports whether the person a finding's user names is the
// console user u: the same canonical identity (personid) as u's username
// or as u's e-mail address. The e-mail counts because the console account
// is often named differently from the device account (`jsmith` against
// `SCHOOL\john.smith`), while the school's directory gives both the same
// address (and OIDC sign-in matches accounts by it). Matching more
// spellings can only hide more from the subject, never show them more.
func isSubject(u *store.User, findingUser string) bool {
	p := personid.Canonical(findingUser)
	if p == "" {
		return false
	}
	return p == personid.Canonical(u.Username) || u.Email != "" && p == personid.Canonical(u.Email)
}

// visible: the alert is routed (or escalated) to the viewer's route, and is
// not about the viewer. Every path that shows an alert or its evidence
// (list, detail, actions, evidence, PDF, CSV, device timeline) asks here.
func (s *Server) visible(u *store.User, a *store.Alert) bool {
	if isSubject(u, a.Finding.GetUser()) {
		return false
	}
	vr := viewerRoute(u)
	if vr == "" {
		return false
	}
	p, known := s.person(a.Finding.GetUser())
	if routeFor(p, known) == vr {
		return true
	}
	for _, e := range a.State.EscalatedTo {
		if e == vr {
			return true
		}
	}
	return false
}

// loadVisible reads the alert named by the path, answering 404 itself when
// it does not exist or is not for this viewer (existence is not revealed).
func (s *Server) loadVisible(w http.ResponseWriter, id string, v *viewer) *store.Alert {
	dev, seq, ok := parseAlertID(id)
	if !ok {
		jsonError(w, http.StatusNotFound, "no such alert")
		return nil
	}
	a, err := s.st.GetAlert(dev, seq)
	if errors.Is(err, store.ErrNotFound) || err == nil && !s.visible(&v.User, a) {
		jsonError(w, http.StatusNotFound, "no such alert")
		return nil
	}
	if err != nil {
		s.internal(w, "read alert", err)
		return nil
	}
	return a
}

type reviewJSON struct {
	Reason          string       `json:"reason"`
	FirstReviewer   string       `json:"first_reviewer"`
	FirstName       string       `json:"first_reviewer_name"` // display name, for the form
	FirstSignedAt   *string      `json:"first_signed_at"`
	SecondReviewer  string       `json:"second_reviewer"`
	SecondName      string       `json:"second_reviewer_name"`
	SecondSignedAt  *string      `json:"second_signed_at"`
	Conclusion      string       `json:"conclusion"`
	ConclusionOther string       `json:"conclusion_other"`
	ConcludedAt     *string      `json:"concluded_at"`
	Notes           []store.Note `json:"notes"`
}

type deviceBrief struct {
	Hostname     string `json:"hostname"`
	OS           string `json:"os"`
	Arch         string `json:"arch"`
	LastSeen     string `json:"last_seen"`
	AgentVersion string `json:"agent_version"`
}

type alertDetail struct {
	AlertJSON
	Review  reviewJSON           `json:"review"`
	History []store.HistoryEntry `json:"history"`
	Device  deviceBrief          `json:"device"`
}

func (s *Server) detailJSON(a *store.Alert) alertDetail {
	st := a.State
	d := alertDetail{AlertJSON: s.alertJSON(a), Review: reviewJSON{
		Reason: st.Reason, FirstReviewer: st.FirstReviewer, FirstSignedAt: tsPtr(st.FirstSignedAt),
		SecondReviewer: st.SecondReviewer, SecondSignedAt: tsPtr(st.SecondSignedAt),
		Conclusion: st.Conclusion, ConclusionOther: st.ConclusionOther, ConcludedAt: tsPtr(st.ConcludedAt), Notes: st.Notes,
		FirstName: s.displayName(st.FirstReviewer), SecondName: s.displayName(st.SecondReviewer),
	}, History: st.History}
	if d.Review.Notes == nil {
		d.Review.Notes = []store.Note{}
	}
	if d.History == nil {
		d.History = []store.HistoryEntry{}
	}
	if dev, ok := s.st.GetDevice(a.Finding.DeviceId); ok {
		d.Device = deviceBrief{Hostname: dev.Hostname, OS: dev.OS, Arch: dev.Arch, LastSeen: ts(dev.LastSeen), AgentVersion: dev.AgentVersion}
	}
	return d
}

func (s *Server) logAccess(w http.ResponseWriter, v *viewer, action string, a *store.Alert, evidence, reason string) bool {
	e := store.AccessEntry{Time: s.now().UTC(), Who: v.Username, Action: action, EvidenceID: evidence, Reason: reason}
	if a != nil {
		e.DeviceID, e.AlertID = a.Finding.DeviceId, AlertID(a.Finding.DeviceId, a.Finding.Seq)
	}
	logFn := s.st.LogAccess
	if s.logAccessFn != nil {
		logFn = s.logAccessFn
	}
	if err := logFn(e); err != nil {
		if errors.Is(err, store.ErrDiskFull) {
			jsonError(w, http.StatusServiceUnavailable, "the collector's disk is full: this view cannot be recorded in the access log, so it is not shown until space is freed")
			return false
		}
		s.log.Error("console: access log", "err", err)
		jsonError(w, http.StatusInternalServerError, "access not logged, so not shown")
		return false
	}
	return true
}

func (s *Server) alertDetail(w http.ResponseWriter, r *http.Request, v *viewer) {
	a := s.loadVisible(w, r.PathValue("id"), v)
	if a == nil {
		return
	}
	if !s.logAccess(w, v, "view-alert", a, "", "") {
		return
	}
	writeJSON(w, http.StatusOK, s.detailJSON(a))
}

// Conclusions of the review form (seed 002 Appendix 5).
var Conclusions = []string{"no_concern", "kept_on_file", "parents_informed", "referred_safeguarding_board", "referred_police", "other"}

// ConclusionLabels are the form's wording.
var ConclusionLabels = map[string]string{
	"no_concern": "No concern", "kept_on_file": "Kept on file", "parents_informed": "Parents informed",
	"referred_safeguarding_board": "Referred to Safeguarding board", "referred_police": "Referred to Police", "other": "Other",
}

type actionRequest struct {
	Action     string `json:"action"`
	Reason     string `json:"reason"`
	Text       string `json:"text"`
	Conclusion string `json:"conclusion"`
	Other      string `json:"other"`
}

// actionError carries the HTTP status of a refused action.
type actionError struct {
	code int
	msg  string
}

func (e *actionError) Error() string { return e.msg }

func conflict(msg string) error   { return &actionError{http.StatusConflict, msg} }
func badRequest(msg string) error { return &actionError{http.StatusBadRequest, msg} }

func cleanText(s string, max int) string {
	s = strings.TrimSpace(s)
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

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
	now := s.now().UTC()
	f := a.Finding
	var excl *store.Exclusion
	st, err := s.st.UpdateAlertState(f.DeviceId, f.Seq, func(st *store.AlertState) error {
		if st.Status == "concluded" && req.Action != "note" {
			return conflict("this alert is concluded: only notes can be added")
		}
		h := store.HistoryEntry{Time: now, By: v.Username, Action: req.Action}
		switch req.Action {
		case "start_review":
			reason := cleanText(req.Reason, 2000)
			if reason == "" {
				return badRequest("start_review needs a reason for the investigation")
			}
			if st.Status != "new" {
				return conflict("the review has already started")
			}
			st.Status, st.Reason, h.Detail = "in_review", reason, reason
		case "note":
			text := cleanText(req.Text, 10000)
			if text == "" {
				return badRequest("a note needs text")
			}
			st.Notes = append(st.Notes, store.Note{Time: now, By: v.Username, Text: text})
			h.Detail = text
		case "sign":
			if st.Status != "in_review" {
				return conflict("start the review before signing")
			}
			switch {
			case st.FirstReviewer == "":
				st.FirstReviewer, st.FirstSignedAt, h.Detail = v.Username, now, "first reviewer"
			case st.FirstReviewer == v.Username || st.SecondReviewer == v.Username:
				return conflict("you have already signed this review; the second reviewer must be someone else")
			case st.SecondReviewer == "":
				st.SecondReviewer, st.SecondSignedAt, h.Detail = v.Username, now, "second reviewer"
			default:
				return conflict("the review already has two signatures")
			}
		case "conclude":
			if st.Status != "in_review" {
				return conflict("start the review before concluding")
			}
			if st.FirstReviewer == "" || st.SecondReviewer == "" || st.FirstReviewer == st.SecondReviewer {
				return conflict("concluding needs the signatures of two different reviewers")
			}
			ok := false
			for _, c := range Conclusions {
				ok = ok || c == req.Conclusion
			}
			if !ok {
				return badRequest("conclusion: one of " + strings.Join(Conclusions, ", "))
			}
			other := cleanText(req.Other, 2000)
			if req.Conclusion == "other" && other == "" {
				return badRequest("conclusion other needs a description")
			}
			if req.Conclusion != "other" {
				other = ""
			}
			st.Status, st.Conclusion, st.ConclusionOther, st.ConcludedAt = "concluded", req.Conclusion, other, now
			h.Detail = ConclusionLabels[req.Conclusion]
			if other != "" {
				h.Detail += ": " + other
			}
		case "false_positive":
			reason := cleanText(req.Reason, 2000)
			if reason == "" {
				return badRequest("false_positive needs a reason")
			}
			excl = &store.Exclusion{ID: randomToken()[:16], AlertID: AlertID(f.DeviceId, f.Seq), RuleID: f.RuleId,
				Library: f.GetScreenMatch().GetLibrary(), Term: f.GetScreenMatch().GetTerm(), Category: f.Category,
				Status: "pending", ProposedBy: v.Username, ProposedAt: now, ProposalReason: reason}
			h.Detail = "proposed exclusion " + excl.ID + ": " + reason
		default:
			return badRequest("action: start_review, note, sign, conclude or false_positive")
		}
		st.History = append(st.History, h)
		return nil
	})
	var ae *actionError
	switch {
	case errors.As(err, &ae):
		jsonError(w, ae.code, "%s", ae.msg)
		return
	case errors.Is(err, store.ErrNotFound):
		jsonError(w, http.StatusNotFound, "no such alert")
		return
	case err != nil:
		s.internal(w, "update alert", err)
		return
	}
	if excl != nil {
		if err := s.st.PutExclusion(*excl); err != nil {
			s.internal(w, "store exclusion proposal", err)
			return
		}
	}
	a.State = st
	writeJSON(w, http.StatusOK, s.detailJSON(a))
}

func (s *Server) listExclusions(w http.ResponseWriter, r *http.Request, v *viewer) {
	list, err := s.st.Exclusions()
	if err != nil {
		s.internal(w, "list exclusions", err)
		return
	}
	if list == nil {
		list = []store.Exclusion{}
	}
	writeJSON(w, http.StatusOK, list)
}

func (s *Server) approveExclusion(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Reason    string `json:"reason"`
		ExpiresAt string `json:"expires_at"`
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
	x, err := s.st.UpdateExclusion(r.PathValue("id"), func(x *store.Exclusion) error {
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
		s.log.Info("console: exclusion approved", "id", x.ID, "by", v.Username, "rule", x.RuleID, "term", x.Term, "expires", x.ExpiresAt)
		if s.exclChg != nil {
			s.exclChg() // rebuild the rules bundles and push them to agents
		}
		writeJSON(w, http.StatusOK, x)
	}
}
