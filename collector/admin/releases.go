package admin

import (
	"encoding/json"
	"errors"
	"io"
	"net/http"

	"github.com/vigil-safeguarding/vigil/collector/releases"
)

// Releases is the admin API's view of agent releases and rollouts.
type Releases struct {
	Manager *releases.Manager
	// Push offers a changed rollout to the group's connected agents.
	Push func(group string)
}

// RolloutRequest is the body of POST /v1/releases/rollout.
type RolloutRequest struct {
	Group   string `json:"group"`
	Version string `json:"version"`
	Percent int    `json:"percent"`
}

// RollbackRequest is the body of POST /v1/releases/rollback.
type RollbackRequest struct {
	Group string `json:"group"`
}

func (s *Server) releaseRoutes(mux *http.ServeMux) {
	mux.HandleFunc("POST /v1/releases/rollout", s.rollout)
	mux.HandleFunc("POST /v1/releases/rollback", s.rollback)
	mux.HandleFunc("GET /v1/releases/status", s.releaseStatus)
	mux.HandleFunc("POST /v1/releases/minimum", s.releaseMinimum)
}

// MinimumRequest is the body of POST /v1/releases/minimum.
type MinimumRequest struct {
	Version string `json:"version"`
}

func (s *Server) releaseMinimum(w http.ResponseWriter, r *http.Request) {
	if !s.releasesOn(w) {
		return
	}
	var req MinimumRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode minimum request: %v", err)
		return
	}
	if err := s.Releases.Manager.SetMinimum(req.Version); err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	writeJSON(w, map[string]string{"minimum": req.Version})
}

func (s *Server) releasesOn(w http.ResponseWriter) bool {
	if s.Releases == nil || s.Releases.Manager == nil {
		httpError(w, http.StatusNotFound, "this collector has no release manager")
		return false
	}
	return true
}

func (s *Server) rollout(w http.ResponseWriter, r *http.Request) {
	if !s.releasesOn(w) {
		return
	}
	var req RolloutRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode rollout request: %v", err)
		return
	}
	if req.Percent == 0 {
		req.Percent = 100
	}
	ro, err := s.Releases.Manager.StartRollout(req.Group, req.Version, req.Percent)
	if errors.Is(err, releases.ErrNotFound) {
		httpError(w, http.StatusNotFound, "%v", err)
		return
	}
	if err != nil {
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if s.Releases.Push != nil {
		s.Releases.Push(req.Group)
	}
	writeJSON(w, ro)
}

func (s *Server) rollback(w http.ResponseWriter, r *http.Request) {
	if !s.releasesOn(w) {
		return
	}
	var req RollbackRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode rollback request: %v", err)
		return
	}
	ro, err := s.Releases.Manager.Rollback(req.Group)
	if errors.Is(err, releases.ErrNotFound) {
		httpError(w, http.StatusNotFound, "%v", err)
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	if s.Releases.Push != nil {
		s.Releases.Push(req.Group)
	}
	writeJSON(w, map[string]any{"group": req.Group, "rollout": ro})
}

func (s *Server) releaseStatus(w http.ResponseWriter, r *http.Request) {
	if !s.releasesOn(w) {
		return
	}
	group := r.URL.Query().Get("group")
	if group == "" {
		httpError(w, http.StatusBadRequest, "group is required")
		return
	}
	var devs []releases.DeviceInfo
	for _, d := range s.Store.Devices() {
		if d.Revoked {
			continue
		}
		devs = append(devs, releases.DeviceInfo{ID: d.DeviceID, Group: d.Group, Hostname: d.Hostname, Version: d.AgentVersion,
			Connected: s.Agents != nil && s.Agents.Connected(d.DeviceID)})
	}
	writeJSON(w, s.Releases.Manager.Status(group, devs))
}
