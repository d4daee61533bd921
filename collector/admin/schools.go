package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// SchoolStore is the schools of a trust (collector/store schools.go).
type SchoolStore interface {
	AddSchool(sc store.School) (store.School, error)
	Schools() ([]store.School, error)
	FindSchool(idOrName string) (store.School, error)
	DeviceSchool(id string) (string, bool)
}

// SchoolRequest is the body of POST /v1/schools.
type SchoolRequest struct {
	Name string `json:"name"`
	// ID is derived from the name when empty.
	ID string `json:"id,omitempty"`
}

func (s *Server) schoolRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/schools", s.addSchool)
	mux.HandleFunc("GET /v1/schools", s.listSchools)
}

// addSchool adds a school to the trust. Adding one is recorded in the
// access log: from then on school accounts see only their school, and
// installation-wide pages close to them (collector/tenancy).
func (s *Server) addSchool(w http.ResponseWriter, r *http.Request) {
	var req SchoolRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode school request: %v", err)
		return
	}
	sc, err := s.Store.AddSchool(store.School{ID: req.ID, Name: req.Name, CreatedAt: s.Now().UTC()})
	switch {
	case errors.Is(err, store.ErrBadSchool):
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	case errors.Is(err, store.ErrExists):
		httpError(w, http.StatusConflict, "%v", err)
		return
	case err != nil:
		httpError(w, http.StatusInternalServerError, "add school: %v", err)
		return
	}
	who := whoOf(r)
	if who == "" {
		who = "cli"
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now().UTC(), Who: who, Action: "add-school",
		Detail: "school " + sc.ID + " (" + sc.Name + ")"}); err != nil {
		s.Logger.Error("school added but the access log entry was not written", "school", sc.ID, "err", err)
	}
	s.Logger.Info("school added", "school", sc.ID, "name", sc.Name, "by", who)
	writeJSON(w, sc)
}

func (s *Server) listSchools(w http.ResponseWriter, r *http.Request) {
	all, err := s.Store.Schools()
	if err != nil {
		httpError(w, http.StatusInternalServerError, "list schools: %v", err)
		return
	}
	writeJSON(w, all)
}
