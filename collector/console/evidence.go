package console

import (
	"errors"
	"net/http"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/collector/evidence"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Evidence is the collector's one evidence reveal (collector/evidence),
// with the console's routing; the daemon gives it to the admin socket so
// `vigil-collector evidence get` goes through the same policy.
func (s *Server) Evidence() *evidence.Service { return s.reveal }

func (s *Server) newReveal(keys evidence.Keys, key *age.X25519Identity) *evidence.Service {
	return &evidence.Service{Store: s.st, Keys: keys, Key: key, Visible: s.visible, Now: s.now,
		LogAccess: func(e store.AccessEntry) error {
			if s.logAccessFn != nil {
				return s.logAccessFn(e)
			}
			return s.st.LogAccess(e)
		}}
}

// RevealRequest is the body of POST /api/v1/evidence/{alert}/{evidence}.
// The reason travels in the body, not the URL, so that it never lands in
// a proxy's or a browser's history (issue 10 item 7).
type RevealRequest struct {
	Reason string `json:"reason"`
}

// evidence answers POST /api/v1/evidence/{alert}/{evidence}: the policy is
// evidence.Service.Reveal's; this maps its answer to HTTP.
func (s *Server) evidence(w http.ResponseWriter, r *http.Request, v *viewer) {
	dev, seq, ok := parseAlertID(r.PathValue("alert"))
	if !ok || seq == 0 {
		jsonError(w, http.StatusNotFound, "no such alert")
		return
	}
	var req RevealRequest
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			jsonError(w, http.StatusBadRequest, "decode reveal request: %v", err)
			return
		}
	}
	got, err := s.reveal.Reveal(evidence.Viewer{User: &v.User},
		evidence.Request{Device: dev, Seq: seq, EvidenceID: r.PathValue("evidence"), Reason: req.Reason})
	if err != nil {
		s.revealError(w, v, r.PathValue("alert"), err)
		return
	}
	w.Header().Set("Content-Type", got.MediaType)
	w.Header().Set("Content-Disposition", "inline")
	w.Write(got.Data)
}

func (s *Server) revealError(w http.ResponseWriter, v *viewer, alert string, err error) {
	var e *evidence.Error
	if !errors.As(err, &e) {
		s.internal(w, "reveal evidence", err)
		return
	}
	switch e.Kind {
	case evidence.IllegalKind:
		writeJSON(w, http.StatusForbidden, map[string]string{"error": e.Msg, "guidance": e.Guidance()})
	case evidence.NotAllowed:
		jsonError(w, http.StatusForbidden, "%s", e.Msg)
	case evidence.NotFound, evidence.Gone:
		jsonError(w, http.StatusNotFound, "%s", e.Msg)
	case evidence.NeedReason:
		jsonError(w, http.StatusBadRequest, "%s", e.Msg)
	case evidence.Mismatch:
		s.log.Error("console: evidence refused", "viewer", v.Username, "alert", alert, "err", e.Err)
		jsonError(w, http.StatusConflict, "%s", e.Msg)
	case evidence.NotLogged:
		if errors.Is(e.Err, store.ErrDiskFull) {
			jsonError(w, http.StatusServiceUnavailable, "the collector's disk is full: this view cannot be recorded in the access log, so it is not shown until space is freed")
			return
		}
		s.log.Error("console: access log", "err", e.Err)
		jsonError(w, http.StatusInternalServerError, "%s", e.Msg)
	default:
		s.internal(w, e.Msg, e.Err)
	}
}
