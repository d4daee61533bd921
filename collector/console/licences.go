package console

import (
	"errors"
	"net/http"
	"strings"

	"github.com/vigil-safeguarding/vigil/collector/inventory"
	"github.com/vigil-safeguarding/vigil/collector/licences"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// The licence register and ICT inventory: the technician (and admin) keep
// them; the headteacher reads them for the school's records. Disposal is
// recorded with `vigil-collector devices dispose`, which also ends the
// device's stream.
var (
	licenceReaders = roles(RoleTechnician, RoleAdmin, RoleHeadteacher)
	licenceEditors = roles(RoleTechnician, RoleAdmin)
)

func (s *Server) licenceRoutes(mux *routeMux) {
	mux.Handle("GET /api/v1/licences", s.api(licenceReaders, s.licenceList))
	mux.Handle("POST /api/v1/licences", s.api(licenceEditors, s.licenceAdd))
	mux.Handle("PUT /api/v1/licences/{id}", s.api(licenceEditors, s.licenceUpdate))
	mux.Handle("DELETE /api/v1/licences/{id}", s.api(licenceEditors, s.licenceRemove))
	mux.Handle("POST /api/v1/licences/import", s.api(licenceEditors, s.licenceImport))
	mux.Handle("GET /api/v1/licences/reconcile", s.api(licenceReaders, s.licenceReconcile))
	mux.Handle("POST /api/v1/licences/aliases", s.api(licenceEditors, s.licenceAlias))
	mux.Handle("DELETE /api/v1/licences/aliases", s.api(licenceEditors, s.licenceUnalias))
	mux.Handle("GET /api/v1/inventory", s.api(licenceReaders, s.inventoryList))
}

func (s *Server) licenceService() *licences.Service {
	return &licences.Service{Store: s.st, Now: s.now}
}

func licenceError(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, licences.ErrBadRequest):
		jsonError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, store.ErrNotFound):
		jsonError(w, http.StatusNotFound, "no such licence or alias")
	default:
		jsonError(w, http.StatusInternalServerError, "%v", err)
	}
}

// logLicence records a register change; the change stands if the entry
// cannot be written (the response says so).
func (s *Server) logLicence(w http.ResponseWriter, v *viewer, action, detail string) {
	e := store.AccessEntry{Time: s.now().UTC(), Who: v.Username, Action: action, Detail: detail}
	logFn := s.st.LogAccess
	if s.logAccessFn != nil {
		logFn = s.logAccessFn
	}
	if err := logFn(e); err != nil {
		w.Header().Set("X-Vigil-Warning", "the access log entry was not written")
	}
}

func (s *Server) licenceList(w http.ResponseWriter, r *http.Request, v *viewer) {
	ls, err := s.licenceService().List(r.Context())
	if err != nil {
		licenceError(w, err)
		return
	}
	if ls == nil {
		ls = []store.Licence{}
	}
	writeJSON(w, http.StatusOK, ls)
}

func (s *Server) licenceAdd(w http.ResponseWriter, r *http.Request, v *viewer) {
	var l store.Licence
	if err := decodeBody(r, &l); err != nil {
		jsonError(w, http.StatusBadRequest, "decode licence: %v", err)
		return
	}
	l, err := s.licenceService().Add(r.Context(), l, v.Username)
	if err != nil {
		licenceError(w, err)
		return
	}
	s.logLicence(w, v, "add-licence", l.ID)
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) licenceUpdate(w http.ResponseWriter, r *http.Request, v *viewer) {
	var l store.Licence
	if err := decodeBody(r, &l); err != nil {
		jsonError(w, http.StatusBadRequest, "decode licence: %v", err)
		return
	}
	l.ID = r.PathValue("id")
	l, err := s.licenceService().Update(r.Context(), l, v.Username)
	if err != nil {
		licenceError(w, err)
		return
	}
	s.logLicence(w, v, "update-licence", l.ID)
	writeJSON(w, http.StatusOK, l)
}

func (s *Server) licenceRemove(w http.ResponseWriter, r *http.Request, v *viewer) {
	id := r.PathValue("id")
	if err := s.licenceService().Remove(r.Context(), id); err != nil {
		licenceError(w, err)
		return
	}
	s.logLicence(w, v, "remove-licence", id)
	writeJSON(w, http.StatusOK, map[string]any{"id": id, "removed": true})
}

func (s *Server) licenceImport(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		CSV string `json:"csv"`
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "decode licence import (at most 1 MiB): %v", err)
		return
	}
	res, err := s.licenceService().Import(r.Context(), strings.NewReader(req.CSV), v.Username)
	if err != nil {
		licenceError(w, err)
		return
	}
	s.logLicence(w, v, "import-licences", "")
	writeJSON(w, http.StatusOK, res)
}

func (s *Server) licenceReconcile(w http.ResponseWriter, r *http.Request, v *viewer) {
	rep, err := s.licenceService().Reconcile(r.Context())
	if err != nil {
		licenceError(w, err)
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) licenceAlias(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Title     string `json:"title"`
		LicenceID string `json:"licence_id"`
		Ignore    bool   `json:"ignore"`
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "decode alias: %v", err)
		return
	}
	a, err := s.licenceService().SetAlias(r.Context(), req.Title, req.LicenceID, req.Ignore, v.Username)
	if err != nil {
		licenceError(w, err)
		return
	}
	s.logLicence(w, v, "set-licence-alias", a.Title)
	writeJSON(w, http.StatusOK, a)
}

func (s *Server) licenceUnalias(w http.ResponseWriter, r *http.Request, v *viewer) {
	title := r.URL.Query().Get("title")
	if err := s.licenceService().RemoveAlias(r.Context(), title); err != nil {
		licenceError(w, err)
		return
	}
	s.logLicence(w, v, "remove-licence-alias", licences.Normalise(title))
	writeJSON(w, http.StatusOK, map[string]any{"title": licences.Normalise(title), "removed": true})
}

func (s *Server) inventoryList(w http.ResponseWriter, r *http.Request, v *viewer) {
	pol, u := s.tenancyPolicy(), v.User
	inv := &inventory.Service{Store: s.st, Now: s.now, Sees: func(id string) bool { return pol.SeesDevice(&u, id) }}
	items, err := inv.List(r.Context())
	if err != nil {
		jsonError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	for i := range items {
		items[i].Connected = s.conn != nil && s.conn(items[i].DeviceID)
	}
	writeJSON(w, http.StatusOK, items)
}
