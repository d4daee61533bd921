package console

// Terms added by the school (issue 12): a DSL adds a local keyword with
// its category, severity, rationale and cases; it is checked like a term of
// the published libraries (collector/schoolterms), stored with a decision
// log entry, and travels in every group's rules bundle. Removal is logged
// the same way.

import (
	"errors"
	"net/http"
	"strings"
	"sync"

	"github.com/vigil-safeguarding/vigil/collector/schoolterms"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// termEditors may list, add and remove school terms and read their
// decision log: the DSL only. A term is often a pupil's nickname or what
// pupils say to one another, which is safeguarding information (seed 002:
// the DSL owns the keyword lists); administrators manage accounts and
// never see safeguarding content, technicians and governors likewise.
var termEditors = roles(RoleDSL)

type schoolTerms struct {
	changed func() // Config.SchoolTermsChanged; may be nil
	// addMu serialises adds: a term is validated beside the terms in force,
	// and two concurrent adds must not both pass against the old set.
	addMu sync.Mutex
}

func (s *Server) termRoutes(mux *routeMux) {
	mux.Handle("GET /api/v1/terms", s.api(termEditors, s.listTerms))
	mux.Handle("POST /api/v1/terms", s.api(termEditors, s.addTerm))
	mux.Handle("POST /api/v1/terms/{id}/remove", s.api(termEditors, s.removeTerm))
	mux.Handle("GET /api/v1/terms/decisions", s.api(termEditors, s.termDecisions))
}

type termsResponse struct {
	Terms      []store.SchoolTerm `json:"terms"`
	Categories []string           `json:"categories"`
	Severities []string           `json:"severities"`
}

func (s *Server) listTerms(w http.ResponseWriter, r *http.Request, v *viewer) {
	ts, err := s.st.SchoolTerms()
	if err != nil {
		s.internal(w, "list school terms", err)
		return
	}
	if ts == nil {
		ts = []store.SchoolTerm{}
	}
	writeJSON(w, http.StatusOK, termsResponse{Terms: ts, Categories: schoolterms.Categories(), Severities: schoolterms.Severities()})
}

type termProblemsResponse struct {
	Error    string               `json:"error"`
	Problems schoolterms.Problems `json:"problems"`
}

func (s *Server) addTerm(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Term      string `json:"term"`
		Category  string `json:"category"`
		Severity  string `json:"severity"`
		Rationale string `json:"rationale"`
		Cases     string `json:"cases"`
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	t := store.SchoolTerm{ID: newExclusionID(), Term: strings.TrimSpace(req.Term), Category: req.Category, Severity: req.Severity,
		Rationale: strings.TrimSpace(req.Rationale), Cases: req.Cases, AddedBy: v.Username, AddedAt: s.now().UTC()}
	s.terms.addMu.Lock()
	defer s.terms.addMu.Unlock()
	existing, err := s.st.SchoolTerms()
	if err != nil {
		s.internal(w, "list school terms", err)
		return
	}
	if ps := schoolterms.Validate(t, existing); ps != nil {
		writeJSON(w, http.StatusBadRequest, termProblemsResponse{Error: "the term was not added: " + ps.Error(), Problems: ps})
		return
	}
	if err := s.st.AddSchoolTerm(t, t.Rationale); err != nil {
		s.internal(w, "add school term", err)
		return
	}
	s.log.Info("console: school term added", "id", t.ID, "by", v.Username, "category", t.Category, "severity", t.Severity)
	if s.terms.changed != nil {
		s.terms.changed() // rebuild the rules bundles and push them to agents
	}
	writeJSON(w, http.StatusCreated, t)
}

func (s *Server) removeTerm(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Reason string `json:"reason"`
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	reason := cleanText(req.Reason, 2000)
	if reason == "" {
		jsonError(w, http.StatusBadRequest, "removing a term needs a reason (it is recorded in the decision log)")
		return
	}
	t, err := s.st.RemoveSchoolTerm(r.PathValue("id"), v.Username, reason, s.now().UTC())
	switch {
	case errors.Is(err, store.ErrNotFound):
		jsonError(w, http.StatusNotFound, "no such term in force")
		return
	case err != nil:
		s.internal(w, "remove school term", err)
		return
	}
	s.log.Info("console: school term removed", "id", t.ID, "by", v.Username, "category", t.Category)
	if s.terms.changed != nil {
		s.terms.changed()
	}
	writeJSON(w, http.StatusOK, t)
}

func (s *Server) termDecisions(w http.ResponseWriter, r *http.Request, v *viewer) {
	ds, err := s.st.TermDecisions()
	if err != nil {
		s.internal(w, "read the school terms' decision log", err)
		return
	}
	if ds == nil {
		ds = []store.TermDecision{}
	}
	writeJSON(w, http.StatusOK, map[string]any{"decisions": ds})
}
