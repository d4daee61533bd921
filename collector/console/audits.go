package console

import (
	"bytes"
	"errors"
	"net/http"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
)

// Who may do what with device audits (docs/console.md, "Device audits").
// The headteacher requests audits and receives them (the mission; seed 000
// §5.2 and §4.13); the technician runs the fleet and requests and reads
// them too. Only the headteacher signs one off. A governor sees trends only,
// and a DSL has no need of a device's accounts and software to safeguard a
// child (an audit holds personal data: local accounts, hostnames), so
// neither sees audits.
func auditReaders(u *store.User) bool {
	return u.Role == RoleHeadteacher || u.Role == RoleTechnician
}

func auditSigners(u *store.User) bool { return u.Role == RoleHeadteacher }

func (s *Server) auditRoutes(mux *routeMux) {
	mux.Handle("GET /api/v1/audits", s.api(auditReaders, s.listAudits))
	mux.Handle("POST /api/v1/audits", s.api(auditReaders, s.requestAudit))
	mux.Handle("GET /api/v1/audits/{id}", s.api(auditReaders, s.showAudit))
	mux.Handle("GET /api/v1/audits/{id}/progress", s.api(auditReaders, s.auditProgress))
	mux.Handle("POST /api/v1/audits/{id}/sign", s.api(auditSigners, s.signAudit))
	mux.Handle("GET /api/v1/audits/{id}/report.pdf", s.api(auditReaders, s.auditPDF))
	mux.Handle("GET /api/v1/audits/{id}/report.csv", s.api(auditReaders, s.auditCSV))
}

// auditReader is v as audits see a reader: their name for the access log
// and collector/tenancy's answer for the schools they may see, which the
// audit service asks on every read, the list and the sign-off.
func auditReader(v *viewer) audit.Reader {
	u := v.User
	return audit.Reader{Name: v.Username, Sees: func(school string) bool { return tenancy.SeesSchool(&u, school) }}
}

// auditService answers 503 when the collector runs without audits.
func (s *Server) auditService(w http.ResponseWriter) *audit.Service {
	if s.audits == nil {
		jsonError(w, http.StatusServiceUnavailable, "audits are not available on this collector")
	}
	return s.audits
}

func auditFailed(s *Server, w http.ResponseWriter, what, id string, err error) {
	switch {
	case errors.Is(err, store.ErrNotFound):
		// The same answer for an audit of another school as for one that
		// does not exist (collector/tenancy): nothing of the id echoed.
		jsonError(w, http.StatusNotFound, "no such audit")
	case errors.Is(err, audit.ErrBadRequest):
		jsonError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, audit.ErrNotLogged):
		s.log.Error("console: access log", "audit", id, "err", err)
		jsonError(w, http.StatusInternalServerError, "access not logged, so not done: %v", err)
	default:
		s.internal(w, what, err)
	}
}

func (s *Server) listAudits(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.auditService(w)
	if svc == nil {
		return
	}
	list, err := svc.List(auditReader(v))
	if err != nil {
		s.internal(w, "list audits", err)
		return
	}
	writeJSON(w, http.StatusOK, list)
}

// auditRequestBody is POST /api/v1/audits: exactly one of device, group, all.
type auditRequestBody struct {
	Device string `json:"device"`
	Group  string `json:"group"`
	All    bool   `json:"all"`
	// School: the school audited (ID or name); default the requester's
	// own. A trust IT lead may name a school granted to them.
	School string `json:"school"`
	Reason string `json:"reason"`
	// ExpiryHours: how long offline devices are waited for (0: the default).
	ExpiryHours int `json:"expiry_hours"`
}

func (b auditRequestBody) scope() (audit.Scope, error) {
	var sc []audit.Scope
	if b.Device != "" {
		sc = append(sc, audit.Scope{Kind: "device", Value: b.Device})
	}
	if b.Group != "" {
		sc = append(sc, audit.Scope{Kind: "group", Value: b.Group})
	}
	if b.All {
		sc = append(sc, audit.Scope{Kind: "all"})
	}
	if len(sc) != 1 {
		return audit.Scope{}, errors.New("name exactly one of a device, a group or the whole fleet")
	}
	return sc[0], nil
}

func (s *Server) requestAudit(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.auditService(w)
	if svc == nil {
		return
	}
	var b auditRequestBody
	if err := decodeBody(r, &b); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	scope, err := b.scope()
	if err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if b.ExpiryHours < 0 || b.ExpiryHours > 24*90 {
		jsonError(w, http.StatusBadRequest, "expiry_hours must be between 0 and %d", 24*90)
		return
	}
	school, err := s.requestSchool(&v.User, b.School)
	if errors.Is(err, store.ErrNotFound) {
		jsonError(w, http.StatusNotFound, "no such school")
		return
	}
	if err != nil {
		s.internal(w, "find the audit's school", err)
		return
	}
	h, err := svc.Request(r.Context(), school, scope, auditReader(v), b.Reason, time.Duration(b.ExpiryHours)*time.Hour)
	if err != nil {
		auditFailed(s, w, "request audit", "", err)
		return
	}
	if err := s.st.LogAccess(store.AccessEntry{Time: s.now().UTC(), Who: v.Username, Action: "request-audit", Reason: b.Reason, Detail: h.ID + " " + scope.String()}); err != nil {
		// The request is in the hashed record already (who, reason, when).
		s.log.Error("console: audit requested but the access log entry was not written", "audit", h.ID, "err", err)
	}
	writeJSON(w, http.StatusCreated, h)
}

func (s *Server) showAudit(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.auditService(w)
	if svc == nil {
		return
	}
	id := r.PathValue("id")
	// View logs the read before it returns the record.
	rec, err := svc.View(id, auditReader(v))
	if err != nil {
		auditFailed(s, w, "read audit", id, err)
		return
	}
	writeJSON(w, http.StatusOK, rec)
}

// auditProgress is polled while the audit runs: counts only, no device's
// data, so it is not an access to the record and is not logged.
func (s *Server) auditProgress(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.auditService(w)
	if svc == nil {
		return
	}
	id := r.PathValue("id")
	p, err := svc.Progress(id, auditReader(v))
	if err != nil {
		auditFailed(s, w, "audit progress", id, err)
		return
	}
	writeJSON(w, http.StatusOK, p)
}

func (s *Server) signAudit(w http.ResponseWriter, r *http.Request, v *viewer) {
	svc := s.auditService(w)
	if svc == nil {
		return
	}
	id := r.PathValue("id")
	var b struct {
		Note string `json:"note"`
	}
	if err := decodeBody(r, &b); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	// A record that no longer verifies is not signed: the sign-off would
	// vouch for changed content.
	if err := svc.Verify(id, auditReader(v)); err != nil {
		if errors.Is(err, store.ErrNotFound) {
			auditFailed(s, w, "sign audit", id, err)
			return
		}
		jsonError(w, http.StatusConflict, "audit %s does not verify, so it cannot be signed: %v", id, err)
		return
	}
	// The signer is the signed-in headteacher, never a name from the body.
	by := v.DisplayName
	if by == "" {
		by = v.Username
	} else {
		by += " (" + v.Username + ")"
	}
	e, err := svc.Sign(id, auditReader(v), by, b.Note)
	if err != nil {
		auditFailed(s, w, "sign audit", id, err)
		return
	}
	if err := s.st.LogAccess(store.AccessEntry{Time: s.now().UTC(), Who: v.Username, Action: "sign-audit", Detail: id + " by " + by}); err != nil {
		// The sign-off is in the hashed record already; say so in the log.
		s.log.Error("console: audit signed but the access log entry was not written", "audit", id, "err", err)
	}
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "signed_by": by, "at": e.At, "hash": e.Hash})
}

func (s *Server) auditExport(w http.ResponseWriter, r *http.Request, v *viewer, format string) {
	svc := s.auditService(w)
	if svc == nil {
		return
	}
	id := r.PathValue("id")
	// Export logs the read before it returns the record.
	rec, err := svc.Export(id, auditReader(v), format)
	if err != nil {
		auditFailed(s, w, "export audit", id, err)
		return
	}
	var buf bytes.Buffer
	ctype := "application/pdf"
	if format == "pdf" {
		err = reports.AuditPDF(&buf, rec)
	} else {
		ctype = "text/csv; charset=utf-8"
		err = reports.AuditCSV(&buf, rec)
	}
	if err != nil {
		s.internal(w, "render audit report", err)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", `attachment; filename="audit-`+safeName(id)+`.`+format+`"`)
	w.Header().Set("Cache-Control", "no-store")
	w.Write(buf.Bytes())
}

func (s *Server) auditPDF(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.auditExport(w, r, v, "pdf")
}

func (s *Server) auditCSV(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.auditExport(w, r, v, "csv")
}

// safeName keeps an id usable in a Content-Disposition file name.
func safeName(id string) string {
	b := []byte(id)
	for i, c := range b {
		if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
			b[i] = '_'
		}
	}
	return string(b)
}
