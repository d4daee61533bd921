package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"
	"strings"

	"github.com/vigil-safeguarding/vigil/collector/inventory"
	"github.com/vigil-safeguarding/vigil/collector/licences"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// LicenceImport is the body of POST /v1/licences/import: the CSV file's
// text (the CLI reads the file as the technician, so the collector never
// opens a path it is given).
type LicenceImport struct {
	CSV string `json:"csv"`
}

// LicenceAliasRequest is the body of POST /v1/licences/aliases.
type LicenceAliasRequest struct {
	Title     string `json:"title"`
	LicenceID string `json:"licence_id,omitempty"`
	Ignore    bool   `json:"ignore,omitempty"`
}

// maxLicenceFile bounds an imported CSV: thousands of rows fit.
const maxLicenceFile = 4 << 20

func (s *Server) licenceService() *licences.Service {
	if s.Licences != nil {
		return s.Licences
	}
	return &licences.Service{Store: s.Store, Now: s.Now}
}

func (s *Server) inventoryService() *inventory.Service {
	if s.Inventory != nil {
		return s.Inventory
	}
	return &inventory.Service{Store: s.Store, Licensed: s.licenceService().LicensedOn, Now: s.Now}
}

func (s *Server) licenceRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/licences", s.licenceList)
	mux.HandleFunc("POST /v1/licences", s.licenceAdd)
	mux.HandleFunc("POST /v1/licences/import", s.licenceImport)
	mux.HandleFunc("PUT /v1/licences/{id}", s.licenceUpdate)
	mux.HandleFunc("DELETE /v1/licences/{id}", s.licenceRemove)
	mux.HandleFunc("GET /v1/licences/reconcile", s.licenceReconcile)
	mux.HandleFunc("GET /v1/licences/aliases", s.licenceAliases)
	mux.HandleFunc("POST /v1/licences/aliases", s.licenceAliasSet)
	mux.HandleFunc("DELETE /v1/licences/aliases", s.licenceAliasRemove)
	mux.HandleFunc("GET /v1/inventory", s.inventoryList)
	mux.HandleFunc("POST /v1/devices/{id}/dispose", s.dispose)
}

func actor(r *http.Request) string {
	if who := whoOf(r); who != "" {
		return who
	}
	return "cli"
}

// licenceErr answers an error from the licence or inventory services.
func licenceErr(w http.ResponseWriter, err error) {
	switch {
	case errors.Is(err, licences.ErrBadRequest), errors.Is(err, inventory.ErrBadRequest):
		httpError(w, http.StatusBadRequest, "%v", err)
	case errors.Is(err, store.ErrNotFound):
		httpError(w, http.StatusNotFound, "%v", err)
	case errors.Is(err, store.ErrDisposed):
		httpError(w, http.StatusConflict, "%v", err)
	default:
		httpError(w, http.StatusInternalServerError, "%v", err)
	}
}

func (s *Server) licenceList(w http.ResponseWriter, r *http.Request) {
	ls, err := s.licenceService().List(r.Context())
	if err != nil {
		licenceErr(w, err)
		return
	}
	if ls == nil {
		ls = []store.Licence{}
	}
	writeJSON(w, ls)
}

func (s *Server) licenceImport(w http.ResponseWriter, r *http.Request) {
	var req LicenceImport
	if err := json.NewDecoder(io.LimitReader(r.Body, maxLicenceFile+1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode licence import: %v", err)
		return
	}
	if len(req.CSV) > maxLicenceFile {
		httpError(w, http.StatusBadRequest, "licence file larger than %d bytes: split it", maxLicenceFile)
		return
	}
	res, err := s.licenceService().Import(r.Context(), strings.NewReader(req.CSV), actor(r))
	if err != nil {
		licenceErr(w, err)
		return
	}
	s.logLicence(r, "import-licences", "")
	writeJSON(w, res)
}

func (s *Server) decodeLicence(w http.ResponseWriter, r *http.Request) (store.Licence, bool) {
	var l store.Licence
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&l); err != nil {
		httpError(w, http.StatusBadRequest, "decode licence: %v", err)
		return l, false
	}
	return l, true
}

func (s *Server) licenceAdd(w http.ResponseWriter, r *http.Request) {
	l, ok := s.decodeLicence(w, r)
	if !ok {
		return
	}
	l, err := s.licenceService().Add(r.Context(), l, actor(r))
	if err != nil {
		licenceErr(w, err)
		return
	}
	s.logLicence(r, "add-licence", l.ID)
	writeJSON(w, l)
}

func (s *Server) licenceUpdate(w http.ResponseWriter, r *http.Request) {
	l, ok := s.decodeLicence(w, r)
	if !ok {
		return
	}
	l.ID = r.PathValue("id")
	l, err := s.licenceService().Update(r.Context(), l, actor(r))
	if err != nil {
		licenceErr(w, err)
		return
	}
	s.logLicence(r, "update-licence", l.ID)
	writeJSON(w, l)
}

func (s *Server) licenceRemove(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if err := s.licenceService().Remove(r.Context(), id); err != nil {
		licenceErr(w, err)
		return
	}
	s.logLicence(r, "remove-licence", id)
	writeJSON(w, map[string]any{"id": id, "removed": true})
}

func (s *Server) licenceReconcile(w http.ResponseWriter, r *http.Request) {
	rep, err := s.licenceService().Reconcile(r.Context())
	if err != nil {
		licenceErr(w, err)
		return
	}
	writeJSON(w, rep)
}

func (s *Server) licenceAliases(w http.ResponseWriter, r *http.Request) {
	as, err := s.licenceService().Aliases(r.Context())
	if err != nil {
		licenceErr(w, err)
		return
	}
	if as == nil {
		as = []store.LicenceAlias{}
	}
	writeJSON(w, as)
}

func (s *Server) licenceAliasSet(w http.ResponseWriter, r *http.Request) {
	var req LicenceAliasRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode licence alias: %v", err)
		return
	}
	a, err := s.licenceService().SetAlias(r.Context(), req.Title, req.LicenceID, req.Ignore, actor(r))
	if err != nil {
		licenceErr(w, err)
		return
	}
	s.logLicence(r, "set-licence-alias", a.Title)
	writeJSON(w, a)
}

func (s *Server) licenceAliasRemove(w http.ResponseWriter, r *http.Request) {
	title := r.URL.Query().Get("title")
	if err := s.licenceService().RemoveAlias(r.Context(), title); err != nil {
		licenceErr(w, err)
		return
	}
	s.logLicence(r, "remove-licence-alias", licences.Normalise(title))
	writeJSON(w, map[string]any{"title": licences.Normalise(title), "removed": true})
}

// logLicence records a register change in the access log; the change
// stands if the log cannot be written (it is said in the collector's log).
func (s *Server) logLicence(r *http.Request, action, detail string) {
	if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now(), Who: actor(r), Action: action, Detail: detail}); err != nil {
		s.Logger.Error("licence register changed but the access log entry was not written", "action", action, "err", err)
	}
}

func (s *Server) inventoryList(w http.ResponseWriter, r *http.Request) {
	items, err := s.inventoryService().List(r.Context())
	if err != nil {
		licenceErr(w, err)
		return
	}
	for i := range items {
		items[i].Connected = s.Agents != nil && s.Agents.Connected(items[i].DeviceID)
	}
	writeJSON(w, items)
}

// dispose records a disposal, which revokes the device, and ends its
// stream if it is connected.
func (s *Server) dispose(w http.ResponseWriter, r *http.Request) {
	var req inventory.DisposeRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode disposal: %v", err)
		return
	}
	req.DeviceID = r.PathValue("id")
	d, err := s.inventoryService().Dispose(r.Context(), req, actor(r))
	if err != nil {
		licenceErr(w, err)
		return
	}
	if s.Agents != nil {
		s.Agents.Disconnect(d.DeviceID)
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now(), Who: actor(r), Action: "dispose-device", DeviceID: d.DeviceID,
		Reason: d.Method, Detail: "authorised by " + d.AuthorisedBy}); err != nil {
		s.Logger.Error("device disposed of but the access log entry was not written", "device", d.DeviceID, "err", err)
	}
	s.Logger.Warn("device disposed of and revoked", "device", d.DeviceID, "by", actor(r), "authorised_by", d.AuthorisedBy)
	writeJSON(w, d)
}
