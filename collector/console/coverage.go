package console

import (
	"errors"
	"net/http"

	"github.com/vigil-safeguarding/vigil/collector/coverage"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Coverage is the fleet's presence judgement and its alarms
// (coverage.Watcher): the e-mail a technician gets for a silent device
// links here, and acknowledging it in the console is what stops the
// escalation to the headteacher.
type Coverage interface {
	Judge() []coverage.Report
	JudgeDevice(id string) (coverage.Report, bool)
	Ack(device, by string) error
}

// coverageReaders are those who may see the device pages: coverage says
// no more about a device than its page does.
var coverageReaders = roles(RoleTechnician, RoleDSL, RoleHeadteacher)

// SetCoverage serves the coverage endpoints from cv. The daemon calls it
// once, before serving: the watcher e-mails through the notifier, which
// routes through this server, so the watcher cannot exist when New runs.
func (s *Server) SetCoverage(cv Coverage) { s.coverage = cv }

func (s *Server) coverageRoutes(mux *routeMux) {
	mux.Handle("GET /api/v1/coverage", s.api(coverageReaders, s.coverageList))
	mux.Handle("GET /api/v1/coverage/{device}", s.api(coverageReaders, s.coverageDevice))
	mux.Handle("POST /api/v1/coverage/{device}/ack", s.api(coverageReaders, s.coverageAck))
}

func (s *Server) coverageList(w http.ResponseWriter, r *http.Request, v *viewer) {
	if s.coverage == nil {
		jsonError(w, http.StatusNotFound, "coverage is not judged by this collector")
		return
	}
	out := []coverage.Report{}
	for _, rep := range s.coverage.Judge() {
		if s.seesDevice(&v.User, rep.DeviceID) {
			out = append(out, rep)
		}
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) coverageDevice(w http.ResponseWriter, r *http.Request, v *viewer) {
	if s.coverage == nil {
		jsonError(w, http.StatusNotFound, "coverage is not judged by this collector")
		return
	}
	id := r.PathValue("device")
	rep, ok := s.coverage.JudgeDevice(id)
	if !ok || !s.seesDevice(&v.User, id) {
		jsonError(w, http.StatusNotFound, "no such device")
		return
	}
	writeJSON(w, http.StatusOK, rep)
}

func (s *Server) coverageAck(w http.ResponseWriter, r *http.Request, v *viewer) {
	if s.coverage == nil {
		jsonError(w, http.StatusNotFound, "coverage is not judged by this collector")
		return
	}
	id := r.PathValue("device")
	if _, ok := s.st.GetDevice(id); !ok || !s.seesDevice(&v.User, id) {
		jsonError(w, http.StatusNotFound, "no such device")
		return
	}
	err := s.coverage.Ack(id, v.Username)
	switch {
	case errors.Is(err, coverage.ErrNoAlarm):
		jsonError(w, http.StatusConflict, "%v", err)
		return
	case s.diskFull(w, "acknowledge a coverage alarm", err):
		return
	case err != nil:
		s.internal(w, "acknowledge a coverage alarm", err)
		return
	}
	if err := s.st.LogAccess(store.AccessEntry{Time: s.now().UTC(), Who: v.Username, Action: "ack-coverage", Detail: id}); err != nil {
		w.Header().Set("X-Vigil-Warning", "the access log entry was not written")
	}
	writeJSON(w, http.StatusOK, map[string]string{"status": "acknowledged"})
}
