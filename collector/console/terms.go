package console

// Keyword terms added by a school or by the trust (issues 12 and 13): a DSL
// adds a local keyword with its category, severity, rationale and cases;
// it is checked like a term of the published libraries
// (collector/schoolterms), stored with a decision log entry, and travels in
// the rules bundles of the school it belongs to. A term set trust-wide (by
// an account that sees every school: collector/tenancy SetsTrustWide) is in
// force in every school; a school's DSL overrides it for their school by
// suppressing it, and may restore it. Every change is logged the same way.
// Who sees which term and decision is collector/tenancy's.

import (
	"errors"
	"net/http"
	"sort"
	"strings"
	"sync"

	"github.com/vigil-safeguarding/vigil/collector/schoolterms"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
)

// termEditors may list, add and remove terms and read their decision log:
// the DSL only. A term is often a pupil's nickname or what pupils say to
// one another, which is safeguarding information (seed 002: the DSL owns
// the keyword lists); administrators manage accounts and never see
// safeguarding content, technicians and governors likewise.
var termEditors = roles(RoleDSL)

type schoolTerms struct {
	changed func() // Config.SchoolTermsChanged; may be nil
	// addMu serialises changes that are validated beside the terms in
	// force (adds and restores): two at once must not both pass against
	// the old set.
	addMu sync.Mutex
}

func (s *Server) termRoutes(mux *routeMux) {
	mux.Handle("GET /api/v1/terms", s.api(termEditors, s.listTerms))
	mux.Handle("POST /api/v1/terms", s.api(termEditors, s.addTerm))
	mux.Handle("POST /api/v1/terms/{id}/remove", s.api(termEditors, s.removeTerm))
	mux.Handle("POST /api/v1/terms/{id}/suppress", s.api(termEditors, s.suppressTerm))
	mux.Handle("POST /api/v1/terms/{id}/restore", s.api(termEditors, s.restoreTerm))
	mux.Handle("GET /api/v1/terms/decisions", s.api(termEditors, s.termDecisions))
}

// termJSON is a term as the console shows it: with the schools (of those
// the viewer sees) that suppressed it, for a trust-wide term.
type termJSON struct {
	store.SchoolTerm
	SuppressedIn []string `json:"suppressed_in,omitempty"`
}

type termsResponse struct {
	Terms      []termJSON `json:"terms"`
	Categories []string   `json:"categories"`
	Severities []string   `json:"severities"`
	// TrustWide: the viewer may add and remove trust-wide terms.
	TrustWide bool `json:"trust_wide"`
}

func (s *Server) listTerms(w http.ResponseWriter, r *http.Request, v *viewer) {
	ts, err := s.st.SchoolTerms()
	if err != nil {
		s.internal(w, "list terms", err)
		return
	}
	sup, err := s.st.TermSuppressions()
	if err != nil {
		s.internal(w, "list the schools' suppressions of trust-wide terms", err)
		return
	}
	trust, err := s.tenancyPolicy().SetsTrustWide(&v.User)
	if err != nil {
		s.internal(w, "list schools", err)
		return
	}
	out := []termJSON{}
	for _, t := range ts {
		if !tenancy.SeesTerm(&v.User, t) {
			continue
		}
		j := termJSON{SchoolTerm: t}
		for _, x := range sup {
			if x.TermID == t.ID && tenancy.SeesSchool(&v.User, x.School) {
				j.SuppressedIn = append(j.SuppressedIn, x.School)
			}
		}
		sort.Strings(j.SuppressedIn)
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, termsResponse{Terms: out, Categories: schoolterms.Categories(), Severities: schoolterms.Severities(), TrustWide: trust})
}

type termProblemsResponse struct {
	Error    string               `json:"error"`
	Problems schoolterms.Problems `json:"problems"`
}

// termSchool resolves the school a request names (its ID or name; "" is
// the viewer's own) among those the viewer sees. A school the viewer does
// not see is answered exactly as one that does not exist.
func (s *Server) termSchool(w http.ResponseWriter, v *viewer, school string) (string, bool) {
	if school == "" {
		return tenancy.SchoolOf(&v.User), true
	}
	sc, err := s.st.FindSchool(school)
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && !tenancy.SeesSchool(&v.User, sc.ID):
		jsonError(w, http.StatusBadRequest, "school: no such school")
		return "", false
	case err != nil:
		s.internal(w, "find school", err)
		return "", false
	}
	return sc.ID, true
}

// validateIn checks t beside the terms in force in every school it would
// be in force in: its own school, or for a trust-wide term each school.
func (s *Server) validateIn(t store.SchoolTerm) (schoolterms.Problems, error) {
	schools := []string{t.School}
	if t.TrustWide {
		all, err := s.st.Schools()
		if err != nil {
			return nil, err
		}
		schools = schools[:0]
		for _, sc := range all {
			schools = append(schools, sc.ID)
		}
	}
	for _, sc := range schools {
		existing, err := s.st.TermsInForce(sc)
		if err != nil {
			return nil, err
		}
		kept := existing[:0]
		for _, e := range existing {
			if e.ID != t.ID {
				kept = append(kept, e)
			}
		}
		if ps := schoolterms.Validate(t, kept); ps != nil {
			return ps, nil
		}
	}
	return nil, nil
}

func (s *Server) addTerm(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req struct {
		Term      string `json:"term"`
		Category  string `json:"category"`
		Severity  string `json:"severity"`
		Rationale string `json:"rationale"`
		Cases     string `json:"cases"`
		School    string `json:"school"`     // "": the viewer's school
		TrustWide bool   `json:"trust_wide"` // in force in every school
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	t := store.SchoolTerm{ID: newExclusionID(), Term: strings.TrimSpace(req.Term), Category: req.Category, Severity: req.Severity,
		Rationale: strings.TrimSpace(req.Rationale), Cases: req.Cases, AddedBy: v.Username, AddedAt: s.now().UTC()}
	if req.TrustWide {
		if !s.mayTrustWide(w, v) {
			return
		}
		t.TrustWide = true
	} else {
		school, ok := s.termSchool(w, v, req.School)
		if !ok {
			return
		}
		t.School = schoolField(school)
	}
	s.terms.addMu.Lock()
	defer s.terms.addMu.Unlock()
	ps, err := s.validateIn(t)
	if err != nil {
		s.internal(w, "read the terms in force", err)
		return
	}
	if ps != nil {
		writeJSON(w, http.StatusBadRequest, termProblemsResponse{Error: "the term was not added: " + ps.Error(), Problems: ps})
		return
	}
	if err := s.st.AddSchoolTerm(t, t.Rationale); err != nil {
		s.internal(w, "add school term", err)
		return
	}
	s.log.Info("console: keyword term added", "id", t.ID, "by", v.Username, "school", t.School, "trust_wide", t.TrustWide, "category", t.Category, "severity", t.Severity)
	s.termsChanged()
	writeJSON(w, http.StatusCreated, t)
}

// mayTrustWide refuses, with 403, an account that does not see every
// school.
func (s *Server) mayTrustWide(w http.ResponseWriter, v *viewer) bool {
	ok, err := s.tenancyPolicy().SetsTrustWide(&v.User)
	switch {
	case err != nil:
		s.internal(w, "list schools", err)
	case !ok:
		jsonError(w, http.StatusForbidden, "trust-wide terms and exclusions are set by an account that sees every school of the trust; a school overrides a trust-wide term by suppressing it")
	}
	return err == nil && ok
}

// visibleTerm reads the term in the path, answering one the viewer may
// not see exactly as one that does not exist.
func (s *Server) visibleTerm(w http.ResponseWriter, r *http.Request, v *viewer) (store.SchoolTerm, bool) {
	t, err := s.st.GetSchoolTerm(r.PathValue("id"))
	switch {
	case errors.Is(err, store.ErrNotFound) || err == nil && !tenancy.SeesTerm(&v.User, t):
		jsonError(w, http.StatusNotFound, "no such term in force")
		return t, false
	case err != nil:
		s.internal(w, "read term", err)
		return t, false
	}
	return t, true
}

// reasonOf decodes a body {"reason", "school"} and requires the reason.
func reasonOf(w http.ResponseWriter, r *http.Request, what string) (reason, school string, ok bool) {
	var req struct {
		Reason string `json:"reason"`
		School string `json:"school"`
	}
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return "", "", false
	}
	if reason = cleanText(req.Reason, 2000); reason == "" {
		jsonError(w, http.StatusBadRequest, "%s needs a reason (it is recorded in the decision log)", what)
		return "", "", false
	}
	return reason, req.School, true
}

func (s *Server) removeTerm(w http.ResponseWriter, r *http.Request, v *viewer) {
	reason, _, ok := reasonOf(w, r, "removing a term")
	if !ok {
		return
	}
	t, ok := s.visibleTerm(w, r, v)
	if !ok {
		return
	}
	if t.TrustWide && !s.mayTrustWide(w, v) {
		return
	}
	t, err := s.st.RemoveSchoolTerm(t.ID, v.Username, reason, s.now().UTC())
	switch {
	case errors.Is(err, store.ErrNotFound):
		jsonError(w, http.StatusNotFound, "no such term in force")
		return
	case err != nil:
		s.internal(w, "remove school term", err)
		return
	}
	s.log.Info("console: keyword term removed", "id", t.ID, "by", v.Username, "school", t.School, "trust_wide", t.TrustWide, "category", t.Category)
	s.termsChanged()
	writeJSON(w, http.StatusOK, t)
}

// termAndSchool reads what a suppress or restore names: the reason, the
// term in the path (one the viewer sees) and the school (one the viewer
// sees; default their own).
func (s *Server) termAndSchool(w http.ResponseWriter, r *http.Request, v *viewer, what string) (t store.SchoolTerm, school, reason string, ok bool) {
	if reason, school, ok = reasonOf(w, r, what); !ok {
		return
	}
	if t, ok = s.visibleTerm(w, r, v); !ok {
		return
	}
	school, ok = s.termSchool(w, v, school)
	return
}

// suppressTerm switches a trust-wide term off in one school (the viewer's
// own, or one it names that the viewer sees).
func (s *Server) suppressTerm(w http.ResponseWriter, r *http.Request, v *viewer) {
	t, school, reason, ok := s.termAndSchool(w, r, v, "suppressing a trust-wide term")
	if !ok {
		return
	}
	if !t.TrustWide {
		jsonError(w, http.StatusConflict, "this term is a school's own, not trust-wide: remove it instead")
		return
	}
	err := s.st.SuppressTerm(store.TermSuppression{School: school, TermID: t.ID, By: v.Username, At: s.now().UTC(), Reason: reason})
	switch {
	case errors.Is(err, store.ErrExists):
		jsonError(w, http.StatusConflict, "the term is suppressed in this school already")
		return
	case errors.Is(err, store.ErrNotFound):
		jsonError(w, http.StatusNotFound, "no such term in force")
		return
	case err != nil:
		s.internal(w, "suppress term", err)
		return
	}
	s.log.Info("console: trust-wide term suppressed in a school", "id", t.ID, "school", school, "by", v.Username)
	s.termsChanged()
	writeJSON(w, http.StatusOK, map[string]string{"term": t.ID, "school": school, "status": "suppressed"})
}

// restoreTerm ends a school's suppression, once the term validates beside
// the school's terms in force (one added meanwhile may clash with it).
func (s *Server) restoreTerm(w http.ResponseWriter, r *http.Request, v *viewer) {
	t, school, reason, ok := s.termAndSchool(w, r, v, "restoring a trust-wide term")
	if !ok {
		return
	}
	s.terms.addMu.Lock()
	defer s.terms.addMu.Unlock()
	existing, err := s.st.TermsInForce(school)
	if err != nil {
		s.internal(w, "read the terms in force", err)
		return
	}
	if ps := schoolterms.Validate(t, existing); ps != nil {
		writeJSON(w, http.StatusBadRequest, termProblemsResponse{Error: "the term was not restored: " + ps.Error(), Problems: ps})
		return
	}
	err = s.st.RestoreTerm(school, t.ID, v.Username, reason, s.now().UTC())
	switch {
	case errors.Is(err, store.ErrNotFound):
		jsonError(w, http.StatusNotFound, "the term is not suppressed in this school")
		return
	case err != nil:
		s.internal(w, "restore term", err)
		return
	}
	s.log.Info("console: trust-wide term restored in a school", "id", t.ID, "school", school, "by", v.Username)
	s.termsChanged()
	writeJSON(w, http.StatusOK, map[string]string{"term": t.ID, "school": school, "status": "in force"})
}

// termsChanged rebuilds the rules bundles and pushes them to agents.
func (s *Server) termsChanged() {
	if s.terms.changed != nil {
		s.terms.changed()
	}
}

func (s *Server) termDecisions(w http.ResponseWriter, r *http.Request, v *viewer) {
	ds, err := s.st.TermDecisions()
	if err != nil {
		s.internal(w, "read the terms' decision log", err)
		return
	}
	out := []store.TermDecision{}
	for _, d := range ds {
		if tenancy.SeesTermDecision(&v.User, d) {
			out = append(out, d)
		}
	}
	writeJSON(w, http.StatusOK, map[string]any{"decisions": out})
}
