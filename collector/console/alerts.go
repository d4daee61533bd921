package console

import (
	"errors"
	"net/http"
	"slices"

	"github.com/vigil-safeguarding/vigil/collector/evidence"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/triage"
	"github.com/vigil-safeguarding/vigil/internal/findings"
	"github.com/vigil-safeguarding/vigil/internal/personid"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Routes (seed 002 §5.3); who reviews each, and who may sign second, is
// collector/triage's.
const (
	RouteDSL         = string(triage.RouteDSL)
	RouteHeadteacher = string(triage.RouteHeadteacher)
	RouteChair       = string(triage.RouteChair)
)

// IllegalGuidance is what the console says instead of showing evidence that
// may be illegal to view (collector/evidence owns the rule).
const IllegalGuidance = evidence.IllegalGuidance

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

// reviewerRole is what an account is to the review (triage.Role).
func reviewerRole(u *store.User) triage.Role {
	switch {
	case u.Disabled:
		return triage.RoleNone
	case u.Role == RoleDSL:
		return triage.RoleDSL
	case u.Role == RoleHeadteacher:
		return triage.RoleHeadteacher
	case u.Role == RoleGovernor && u.Chair:
		return triage.RoleChair
	}
	return triage.RoleNone
}

// Illegal says whether an alert may concern illegal material: its evidence
// is then never served (seed 002 Appendix 6). The rule is evidence.Illegal.
func Illegal(f *vigilv1.Finding) bool { return evidence.Illegal(f) }

// AlertID is "<device_id>-<seq>" (store.AlertID).
func AlertID(device string, seq uint64) string { return store.AlertID(device, seq) }

func parseAlertID(id string) (string, uint64, bool) { return store.ParseAlertID(id) }

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
		Status: string(a.State.Status), Illegal: Illegal(f), Evidence: []evidenceJSON{}, RoutedTo: routeFor(p, known),
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

// routeOf is the route of the alert about f's user.
func (s *Server) routeOf(f *vigilv1.Finding) string {
	p, known := s.person(f.GetUser())
	return routeFor(p, known)
}

// RouteOf is routeOf for collector/notify: the route an alert is e-mailed to first.
func (s *Server) RouteOf(f *vigilv1.Finding) string { return s.routeOf(f) }

// Reviews says whether u reviews route and is not the person the alert
// about f is about: whom collector/notify may e-mail about it on that route.
// Only the reviewers of the device's school are told (collector/tenancy).
func (s *Server) Reviews(u *store.User, route string, f *vigilv1.Finding) bool {
	return s.tenancyPolicy().SeesDevice(u, f.GetDeviceId()) && viewerRoute(u) == route && !isSubject(u, f.GetUser())
}

// actor is u as the review of the alert about f, in state st, sees them:
// their reviewer role, whether the alert is about them, and whether it is
// routed (or escalated) to them.
func (s *Server) actor(u *store.User, f *vigilv1.Finding, st store.AlertState) triage.Actor {
	who := triage.Actor{Username: u.Username, Role: reviewerRole(u), Subject: isSubject(u, f.GetUser())}
	if vr := viewerRoute(u); vr != "" && who.Role != triage.RoleNone {
		who.Routed = s.routeOf(f) == vr || slices.Contains(st.EscalatedTo, vr)
	}
	return who
}

// visible: the alert is of the viewer's school (collector/tenancy), it is
// routed (or escalated) to the viewer, or its review names them (the
// second reviewer the first asked for), and it is not about the viewer
// (triage.MayView). Every path that shows an alert or its evidence (list,
// detail, actions, evidence, PDF, CSV, device timeline, monitoring report)
// asks here.
func (s *Server) visible(u *store.User, a *store.Alert) bool {
	// The school first: another school's alert is, to u, one that does
	// not exist (collector/tenancy).
	return s.tenancyPolicy().SeesDevice(u, a.Finding.GetDeviceId()) && triage.MayView(a.State, s.actor(u, a.Finding, a.State))
}

// Visible is visible for other entry points (collector/evidence).
func (s *Server) Visible(u *store.User, a *store.Alert) bool { return s.visible(u, a) }

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

// detailJSON is an alert as its page shows it to v: the alert, its review
// form (review.go) and history, and its device.
func (s *Server) detailJSON(a *store.Alert, v *viewer) alertDetail {
	d := alertDetail{AlertJSON: s.alertJSON(a), Review: s.reviewJSON(a, v), History: a.State.History}
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
	writeJSON(w, http.StatusOK, s.detailJSON(a, v))
}
