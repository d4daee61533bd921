package admin

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// AuditRequest is the body of POST /v1/audits: exactly one of Device,
// Group and All.
type AuditRequest struct {
	Device string `json:"device,omitempty"`
	Group  string `json:"group,omitempty"`
	All    bool   `json:"all,omitempty"`
	// School is the school the audit is of (ID or name): needed once the
	// installation has more than one, since an audit covers one school.
	School string        `json:"school,omitempty"`
	Reason string        `json:"reason"`
	Expiry time.Duration `json:"expiry,omitempty"`
}

// Scope turns the request into an audit scope.
func (r AuditRequest) Scope() (audit.Scope, error) {
	n := 0
	var s audit.Scope
	if r.Device != "" {
		n, s = n+1, audit.Scope{Kind: "device", Value: r.Device}
	}
	if r.Group != "" {
		n, s = n+1, audit.Scope{Kind: "group", Value: r.Group}
	}
	if r.All {
		n, s = n+1, audit.Scope{Kind: "all"}
	}
	if n != 1 {
		return s, errors.New("name exactly one of a device, a group or all")
	}
	return s, nil
}

// SignRequest is the body of POST /v1/audits/{id}/sign.
type SignRequest struct {
	By   string `json:"by"`
	Note string `json:"note,omitempty"`
}

// VerifyResult answers GET /v1/audits/{id}/verify.
type VerifyResult struct {
	ID    string `json:"id"`
	OK    bool   `json:"ok"`
	Hash  string `json:"hash"`
	Error string `json:"error,omitempty"`
}

func (s *Server) auditRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/audits", s.auditRequest)
	mux.HandleFunc("GET /v1/audits", s.auditList)
	mux.HandleFunc("GET /v1/audits/{id}", s.auditShow)
	mux.HandleFunc("GET /v1/audits/{id}/progress", s.auditProgress)
	mux.HandleFunc("GET /v1/audits/{id}/export", s.auditExport)
	mux.HandleFunc("GET /v1/audits/{id}/verify", s.auditVerify)
	mux.HandleFunc("POST /v1/audits/{id}/sign", s.auditSign)
}

func (s *Server) audits(w http.ResponseWriter) *audit.Service {
	if s.Audits == nil {
		httpError(w, http.StatusServiceUnavailable, "audits are not available on this collector")
	}
	return s.Audits
}

func (s *Server) auditRequest(w http.ResponseWriter, r *http.Request) {
	svc := s.audits(w)
	if svc == nil {
		return
	}
	var req AuditRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode audit request: %v", err)
		return
	}
	scope, err := req.Scope()
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	who := whoOf(r)
	if who == "" {
		who = "cli"
	}
	school, err := s.auditSchool(req.School)
	if errors.Is(err, store.ErrNotFound) || errors.Is(err, audit.ErrBadRequest) {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "find school: %v", err)
		return
	}
	h, err := svc.Request(r.Context(), school, scope, audit.Operator(who), req.Reason, req.Expiry)
	if errors.Is(err, audit.ErrBadRequest) {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now(), Who: who, Action: "request-audit", Reason: req.Reason, Detail: h.ID + " " + scope.String()}); err != nil {
		s.Logger.Error("audit requested but the access log entry was not written", "audit", h.ID, "err", err)
	}
	writeJSON(w, h)
}

// auditSchool is the school an operator's audit request is of: the one
// named, or the only one. With several schools the operator names it, so
// "all" never silently means one school's devices.
func (s *Server) auditSchool(asked string) (string, error) {
	if asked != "" {
		sc, err := s.Store.FindSchool(asked)
		if err != nil {
			return "", err
		}
		return sc.ID, nil
	}
	all, err := s.Store.Schools()
	if err != nil {
		return "", err
	}
	if len(all) > 1 {
		return "", fmt.Errorf("%w: this installation has %d schools; name the school the audit is of (--school)", audit.ErrBadRequest, len(all))
	}
	return store.DefaultSchool, nil
}

func (s *Server) auditList(w http.ResponseWriter, r *http.Request) {
	svc := s.audits(w)
	if svc == nil {
		return
	}
	list, err := svc.List(audit.Operator(whoOf(r)))
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, list)
}

// auditErr answers a failed read of one audit.
func auditErr(w http.ResponseWriter, id string, err error) {
	if errors.Is(err, store.ErrNotFound) {
		httpError(w, http.StatusNotFound, "no audit %q (see `vigil-collector audit list`)", id)
		return
	}
	if errors.Is(err, audit.ErrBadRequest) {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if errors.Is(err, audit.ErrNotLogged) {
		httpError(w, http.StatusInternalServerError, "%v, so not shown", err)
		return
	}
	httpError(w, http.StatusInternalServerError, "%v", err)
}

func (s *Server) auditShow(w http.ResponseWriter, r *http.Request) {
	svc := s.audits(w)
	if svc == nil {
		return
	}
	id := r.PathValue("id")
	// An audit holds personal data (accounts, hostnames): View logs the
	// read like any other view before it returns the record.
	rec, err := svc.View(id, audit.Operator(whoOf(r)))
	if err != nil {
		auditErr(w, id, err)
		return
	}
	writeJSON(w, rec)
}

func (s *Server) auditProgress(w http.ResponseWriter, r *http.Request) {
	svc := s.audits(w)
	if svc == nil {
		return
	}
	id := r.PathValue("id")
	p, err := svc.Progress(id, audit.Operator(whoOf(r)))
	if err != nil {
		auditErr(w, id, err)
		return
	}
	writeJSON(w, p)
}

func (s *Server) auditExport(w http.ResponseWriter, r *http.Request) {
	svc := s.audits(w)
	if svc == nil {
		return
	}
	id := r.PathValue("id")
	c, err := svc.ExportChain(id, audit.Operator(whoOf(r))) // logged before it returns
	if err != nil {
		auditErr(w, id, err)
		return
	}
	writeJSON(w, c)
}

func (s *Server) auditVerify(w http.ResponseWriter, r *http.Request) {
	svc := s.audits(w)
	if svc == nil {
		return
	}
	id := r.PathValue("id")
	v, err := svc.CheckChain(id, audit.Operator(whoOf(r)))
	if err != nil {
		auditErr(w, id, err)
		return
	}
	res := VerifyResult{ID: id, OK: true, Hash: v.Hash}
	if v.Err != nil {
		res.OK, res.Error = false, v.Err.Error()
	}
	writeJSON(w, res)
}

func (s *Server) auditSign(w http.ResponseWriter, r *http.Request) {
	svc := s.audits(w)
	if svc == nil {
		return
	}
	id := r.PathValue("id")
	var req SignRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode sign-off: %v", err)
		return
	}
	// A record that no longer verifies is not signed: the sign-off would
	// vouch for changed content.
	if err := svc.Verify(id, audit.Operator(whoOf(r))); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			auditErr(w, id, err)
			return
		}
		httpError(w, http.StatusConflict, "audit %s does not verify, so it cannot be signed: %v", id, err)
		return
	}
	e, err := svc.Sign(id, audit.Operator(whoOf(r)), req.By, req.Note)
	if err != nil {
		auditErr(w, id, err)
		return
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now(), Who: whoOf(r), Action: "sign-audit", Detail: id + " by " + req.By}); err != nil {
		s.Logger.Error("audit signed but the access log entry was not written", "audit", id, "err", err)
	}
	writeJSON(w, map[string]any{"id": id, "signed_by": req.By, "at": e.At, "hash": e.Hash})
}
