package admin

import (
	"bytes"
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

// DFE serves the DfE evidence on the admin socket: the same Services the
// console calls, so the CLI and the console keep one register, one review
// record and one check record.
type DFE struct {
	Service *dfe.Service
	Checks  *fleetcheck.Service
	// Alerts gives the monitoring report's figures over [from, to).
	Alerts func(ctx context.Context, from, to time.Time) (reports.Monitoring, error)
}

// RolesBody is the body of PUT /v1/dfe/roles.
type RolesBody struct {
	Roles []store.RoleHolder `json:"roles"`
}

// ReviewBody is the body of POST /v1/dfe/reviews.
type ReviewBody struct {
	Review store.DFEReview `json:"review"`
}

// CheckBody is the body of POST /v1/dfe/checks.
type CheckBody struct {
	Reason string `json:"reason,omitempty"`
}

func (s *Server) dfeRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/dfe/roles", s.withDFE(func(w http.ResponseWriter, r *http.Request, d *DFE) {
		rs, err := d.Service.Roles()
		if err != nil {
			dfeErr(w, err)
			return
		}
		writeJSON(w, rs)
	}))
	mux.HandleFunc("PUT /v1/dfe/roles", s.withDFE(func(w http.ResponseWriter, r *http.Request, d *DFE) {
		var b RolesBody
		if err := decodeOptional(r, &b); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		rs, err := d.Service.SetRoles(actor(r), b.Roles)
		if err != nil {
			dfeErr(w, err)
			return
		}
		writeJSON(w, rs)
	}))
	mux.HandleFunc("GET /v1/dfe/reviews", s.withDFE(func(w http.ResponseWriter, r *http.Request, d *DFE) {
		rs, err := d.Service.Reviews()
		if err != nil {
			dfeErr(w, err)
			return
		}
		st, _ := d.Service.Status()
		writeJSON(w, map[string]any{"reviews": rs, "status": st})
	}))
	mux.HandleFunc("POST /v1/dfe/reviews", s.withDFE(func(w http.ResponseWriter, r *http.Request, d *DFE) {
		var b ReviewBody
		if err := decodeOptional(r, &b); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		rv, err := d.Service.AddReview(actor(r), b.Review)
		if err != nil {
			dfeErr(w, err)
			return
		}
		writeJSON(w, rv)
	}))
	mux.HandleFunc("POST /v1/dfe/checks", s.withDFE(func(w http.ResponseWriter, r *http.Request, d *DFE) {
		var b CheckBody
		if err := decodeOptional(r, &b); err != nil {
			httpError(w, http.StatusBadRequest, "%v", err)
			return
		}
		c, err := d.Checks.Start(actor(r), b.Reason)
		if err != nil {
			dfeErr(w, err)
			return
		}
		if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now(), Who: actor(r), Action: "request-fleet-check", Reason: b.Reason, Detail: c.ID}); err != nil {
			httpError(w, http.StatusInternalServerError, "log the fleet check: %v", err)
			return
		}
		writeJSON(w, c)
	}))
	mux.HandleFunc("GET /v1/dfe/checks/{id}", s.withDFE(func(w http.ResponseWriter, r *http.Request, d *DFE) {
		c, err := d.Checks.Get(r.PathValue("id"))
		if err != nil {
			dfeErr(w, err)
			return
		}
		writeJSON(w, c)
	}))
	// GET /v1/dfe/pack?format=pdf|csv|json&from=YYYY-MM-DD&to=YYYY-MM-DD
	mux.HandleFunc("GET /v1/dfe/pack", s.withDFE(func(w http.ResponseWriter, r *http.Request, d *DFE) {
		now := s.Now().UTC()
		today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		from, to := today.AddDate(0, 0, -364), today.AddDate(0, 0, 1)
		for _, p := range []struct {
			name string
			dst  *time.Time
		}{{"from", &from}, {"to", &to}} {
			if v := r.URL.Query().Get(p.name); v != "" {
				t, err := time.Parse("2006-01-02", v)
				if err != nil {
					httpError(w, http.StatusBadRequest, "%s=%q: want YYYY-MM-DD", p.name, v)
					return
				}
				*p.dst = t
			}
		}
		if !from.Before(to) {
			httpError(w, http.StatusBadRequest, "from %s is not before to %s", reports.Day(from), reports.Day(to))
			return
		}
		m, err := d.Alerts(r.Context(), from, to)
		if err != nil {
			dfeErr(w, err)
			return
		}
		p, err := d.Service.Pack(from, to, m)
		if err != nil {
			dfeErr(w, err)
			return
		}
		if err := s.Store.LogAccess(store.AccessEntry{Time: now, Who: actor(r), Action: "export-dfe-pack", Detail: reports.Day(from) + " to " + reports.Day(to)}); err != nil {
			httpError(w, http.StatusInternalServerError, "log the export: %v", err)
			return
		}
		var b bytes.Buffer
		switch f := r.URL.Query().Get("format"); f {
		case "", "json":
			writeJSON(w, p)
			return
		case "csv":
			err = p.WriteCSV(&b)
		case "pdf":
			err = p.WritePDF(&b)
		default:
			httpError(w, http.StatusBadRequest, "format %q: want pdf, csv or json", f)
			return
		}
		if err != nil {
			httpError(w, http.StatusInternalServerError, "render the pack: %v", err)
			return
		}
		w.Write(b.Bytes())
	}))
}

func (s *Server) withDFE(h func(http.ResponseWriter, *http.Request, *DFE)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		if s.DFE == nil || s.DFE.Service == nil || s.DFE.Checks == nil || s.DFE.Alerts == nil {
			httpError(w, http.StatusServiceUnavailable, "the DfE evidence is not served by this collector")
			return
		}
		h(w, r, s.DFE)
	}
}

func dfeErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, dfe.ErrBadRequest), errors.Is(err, fleetcheck.ErrBadRequest):
		httpError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, store.ErrNotFound):
		httpError(w, http.StatusNotFound, "%v", err)
	default:
		httpError(w, http.StatusInternalServerError, "%v", fmt.Errorf("dfe evidence: %w", err))
	}
}
