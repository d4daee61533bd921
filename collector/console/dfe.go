package console

import (
	"context"
	"errors"
	"fmt"
	"net/http"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/dfe"
	"github.com/vigil-safeguarding/vigil/collector/fleetcheck"
	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Who may do what with the DfE evidence (issue 11). The pack names
// devices, exclusions (with their terms) and the people in the roles
// register: the headteacher and the DSL, who also keep the register and
// the review records. A fleet check proves the technician's work too, so
// they may run one and read its record (devices only). The review
// reminder is shown to those three and to the governors, whose governor
// takes part in the review.
var (
	dfeKeepers       = roles(RoleHeadteacher, RoleDSL)
	fleetCheckers    = roles(RoleHeadteacher, RoleDSL, RoleTechnician)
	dfeStatusReaders = roles(RoleHeadteacher, RoleDSL, RoleTechnician, RoleGovernor)
)

// PackDays is the default window of the evidence pack: the year to date.
const PackDays = 365

// dfeRoutes registers the evidence endpoints (called by Handler).
func (s *Server) dfeRoutes(mux *routeMux) {
	if s.dfe == nil {
		return
	}
	mux.Handle("GET /api/v1/dfe/status", s.api(dfeStatusReaders, s.dfeStatus))
	mux.Handle("GET /api/v1/dfe/roles", s.api(dfeKeepers, s.dfeRoles))
	mux.Handle("PUT /api/v1/dfe/roles", s.api(dfeKeepers, s.dfeSetRoles))
	mux.Handle("GET /api/v1/dfe/reviews", s.api(dfeKeepers, s.dfeReviews))
	mux.Handle("POST /api/v1/dfe/reviews", s.api(dfeKeepers, s.dfeAddReview))
	mux.Handle("POST /api/v1/dfe/checks", s.api(fleetCheckers, s.fleetCheckStart))
	mux.Handle("GET /api/v1/dfe/checks/{id}", s.api(fleetCheckers, s.fleetCheckGet))
	for _, f := range []string{"json", "csv", "pdf"} {
		mux.Handle("GET /api/v1/reports/dfe."+f, s.api(dfeKeepers, s.dfePack(f)))
	}
}

func (s *Server) dfeError(w http.ResponseWriter, what string, err error) {
	switch {
	case errors.Is(err, dfe.ErrBadRequest), errors.Is(err, fleetcheck.ErrBadRequest):
		jsonError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, store.ErrNotFound):
		jsonError(w, http.StatusNotFound, "%s: not found", what)
	default:
		s.internal(w, what, err)
	}
}

// dfeStatus is the review reminder the console shows on every page.
func (s *Server) dfeStatus(w http.ResponseWriter, r *http.Request, v *viewer) {
	st, err := s.dfe.Status()
	if err != nil {
		s.internal(w, "review status", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"state": st.State, "due": reports.Day(st.Due), "reminder": st.Reminder})
}

func (s *Server) dfeRoles(w http.ResponseWriter, r *http.Request, v *viewer) {
	rs, err := s.dfe.Roles()
	if err != nil {
		s.internal(w, "roles register", err)
		return
	}
	writeJSON(w, http.StatusOK, rolesJSON(rs))
}

func rolesJSON(rs store.DFERoles) map[string]any {
	list := make([]map[string]any, 0, len(store.DFERoleKeys))
	for _, k := range store.DFERoleKeys {
		h := rs.Holder(k)
		list = append(list, map[string]any{"role": k, "label": store.DFERoleLabels[k], "name": h.Name, "contact": h.Contact, "since": reports.Day(h.Since)})
	}
	return map[string]any{"roles": list, "updated_by": rs.UpdatedBy, "updated_at": rs.UpdatedAt}
}

// RolesRequest is the body of PUT /api/v1/dfe/roles.
type RolesRequest struct {
	Roles []store.RoleHolder `json:"roles"`
}

func (s *Server) dfeSetRoles(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req RolesRequest
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	rs, err := s.dfe.SetRoles(v.Username, req.Roles)
	if err != nil {
		s.dfeError(w, "roles register", err)
		return
	}
	writeJSON(w, http.StatusOK, rolesJSON(rs))
}

func (s *Server) dfeReviews(w http.ResponseWriter, r *http.Request, v *viewer) {
	rs, err := s.dfe.Reviews()
	if err != nil {
		s.internal(w, "reviews", err)
		return
	}
	st := reports.ReviewDue(rs, s.now().UTC())
	writeJSON(w, http.StatusOK, map[string]any{"reviews": rs, "status": st.State, "due": reports.Day(st.Due), "reminder": st.Reminder})
}

// ReviewRequest is the body of POST /api/v1/dfe/reviews (dates YYYY-MM-DD).
type ReviewRequest struct {
	Date       string   `json:"date"`
	Attendees  []string `json:"attendees"`
	Findings   string   `json:"findings"`
	Actions    []string `json:"actions"`
	NextReview string   `json:"next_review,omitempty"`
}

// Review turns the request into a record (dates at midnight UTC).
func (q ReviewRequest) Review() (store.DFEReview, error) {
	r := store.DFEReview{Attendees: q.Attendees, Findings: q.Findings, Actions: q.Actions}
	var err error
	if r.Date, err = time.Parse("2006-01-02", q.Date); err != nil {
		return r, fmt.Errorf("%w: date %q: want YYYY-MM-DD", dfe.ErrBadRequest, q.Date)
	}
	if q.NextReview != "" {
		if r.NextReview, err = time.Parse("2006-01-02", q.NextReview); err != nil {
			return r, fmt.Errorf("%w: next_review %q: want YYYY-MM-DD", dfe.ErrBadRequest, q.NextReview)
		}
	}
	return r, nil
}

func (s *Server) dfeAddReview(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req ReviewRequest
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	rv, err := req.Review()
	if err == nil {
		rv, err = s.dfe.AddReview(v.Username, rv)
	}
	if err != nil {
		s.dfeError(w, "review", err)
		return
	}
	writeJSON(w, http.StatusCreated, rv)
}

// FleetCheckRequest is the body of POST /api/v1/dfe/checks.
type FleetCheckRequest struct {
	Reason string `json:"reason,omitempty"`
}

func (s *Server) fleetCheckStart(w http.ResponseWriter, r *http.Request, v *viewer) {
	if s.checks == nil {
		jsonError(w, http.StatusServiceUnavailable, "fleet checks are not available on this collector")
		return
	}
	var req FleetCheckRequest
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	c, err := s.checks.Start(v.Username, req.Reason)
	if err != nil {
		s.dfeError(w, "fleet check", err)
		return
	}
	if err := s.st.LogAccess(store.AccessEntry{Time: s.now().UTC(), Who: v.Username, Action: "request-fleet-check", Reason: req.Reason, Detail: c.ID}); err != nil {
		s.internal(w, "log the fleet check", err)
		return
	}
	writeJSON(w, http.StatusAccepted, c)
}

func (s *Server) fleetCheckGet(w http.ResponseWriter, r *http.Request, v *viewer) {
	if s.checks == nil {
		jsonError(w, http.StatusServiceUnavailable, "fleet checks are not available on this collector")
		return
	}
	c, err := s.checks.Get(r.PathValue("id"))
	if err != nil {
		s.dfeError(w, "fleet check", err)
		return
	}
	writeJSON(w, http.StatusOK, c)
}

func (s *Server) dfePack(format string) func(http.ResponseWriter, *http.Request, *viewer) {
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		now := s.now().UTC()
		today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		from, to, err := reportWindow(r, today.AddDate(0, 0, 1-PackDays), today.AddDate(0, 0, 1))
		if err != nil {
			jsonError(w, http.StatusBadRequest, "evidence pack: %v", err)
			return
		}
		// The alert figures are the monitoring report's, counted over the
		// alerts this viewer may see.
		m, err := s.MonitoringReport(r, &v.User, from, to)
		if err != nil {
			s.internal(w, "evidence pack", err)
			return
		}
		p, err := s.dfe.Pack(from, to, m)
		if err != nil {
			s.internal(w, "evidence pack", err)
			return
		}
		s.sendReport(w, format, fmt.Sprintf("dfe-evidence-%s-to-%s", reports.Day(from), reports.Day(to.AddDate(0, 0, -1))), p, p.WriteCSV, p.WritePDF)
	}
}

// MonitoringFigures is the monitoring report over every alert in [from,
// to), for the admin socket's evidence pack: whoever can reach the socket
// can read the whole store, so no alert is left out for them.
func (s *Server) MonitoringFigures(ctx context.Context, from, to time.Time) (reports.Monitoring, error) {
	now := s.now().UTC()
	snap, err := reports.Load(ctx, s.st, now, from, s.judgeDevice(now))
	if err != nil {
		return reports.Monitoring{}, err
	}
	return reports.BuildMonitoring(snap, from, to), nil
}
