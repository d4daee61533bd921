package admin

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/bus"
	"github.com/vigil-safeguarding/vigil/collector/evidence"
	"github.com/vigil-safeguarding/vigil/collector/notify"
	"github.com/vigil-safeguarding/vigil/collector/rulesdist"
	"github.com/vigil-safeguarding/vigil/collector/schoolexport"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
	"github.com/vigil-safeguarding/vigil/rules"
)

// SchoolStore is the schools of a trust (collector/store schools.go).
type SchoolStore interface {
	AddSchool(sc store.School) (store.School, error)
	Schools() ([]store.School, error)
	FindSchool(idOrName string) (store.School, error)
	DeviceSchool(id string) (string, bool)
	DeleteSchool(id string, at time.Time, disconnect func(deviceID string)) (store.SchoolDeletion, error)
	SetSchoolRetention(id string, r store.Retention) (store.School, error)
	SetSchoolHours(id, hours, timezone string) (store.School, error)
	SetSchoolOnCall(id string, users []string) (store.School, error)
	SetSchoolMail(id, relay, from string) (store.School, error)
}

// SchoolMailRequest is the body of POST /v1/schools/{school}/mail: the
// school's own mail relay and sender (both empty: the installation's).
type SchoolMailRequest struct {
	Relay  string `json:"relay"`
	From   string `json:"from"`
	Reason string `json:"reason"`
}

// SchoolRulesRequest is the body of POST /v1/schools/{school}/rules: the
// school's whole set of rules overrides (by relative path; none: removed).
type SchoolRulesRequest struct {
	Files  map[string][]byte `json:"files"`
	Reason string            `json:"reason"`
}

// SchoolRulesFile is one file of a school's overrides as listed.
type SchoolRulesFile struct {
	Path   string `json:"path"`
	Size   int    `json:"size"`
	SHA256 string `json:"sha256"`
}

// SchoolOnCallRequest is the body of POST /v1/schools/{school}/on-call:
// the school's own staff on call out of hours (console usernames; empty:
// the installation's again), and why.
type SchoolOnCallRequest struct {
	Users  []string `json:"users"`
	Reason string   `json:"reason"`
}

// SchoolHoursRequest is the body of POST /v1/schools/{school}/hours: the
// school's own working hours ("mon-fri 08:30-15:30") and time zone (both
// empty: the installation's again), and why.
type SchoolHoursRequest struct {
	WorkingHours string `json:"working_hours"`
	Timezone     string `json:"timezone"`
	Reason       string `json:"reason"`
}

// SchoolRetentionRequest is the body of POST /v1/schools/{school}/retention:
// the school's own retention by category (store.Retention; empty: the
// installation's again), and why.
type SchoolRetentionRequest struct {
	Retention store.Retention `json:"retention"`
	Reason    string          `json:"reason"`
}

// SchoolBus is the NATS side of a school's deletion (*bus.Bus).
type SchoolBus interface {
	ForgetSchool(ctx context.Context, school string) (bus.SchoolForgotten, error)
}

// SchoolKeys are the schools' evidence keys (*evidencekeys.Keyring).
type SchoolKeys interface {
	evidence.Keys
	Has(school string) bool
	Destroy(school string) (bool, error)
	Secret(school string) (string, error)
}

// SchoolDeleted is the answer to a deletion: what the store removed,
// with JetStream ingest what the bus held, and whether the school's
// evidence key was destroyed (so that no copy of its evidence anywhere
// can be opened again).
type SchoolDeleted struct {
	store.SchoolDeletion
	Bus                  *bus.SchoolForgotten `json:"bus,omitempty"`
	EvidenceKeyDestroyed bool                 `json:"evidence_key_destroyed"`
	// RulesOverridesRemoved counts the files of its rules overrides
	// folder (DATA/school-rules/<school>) removed.
	RulesOverridesRemoved int `json:"rules_overrides_removed"`
}

// DeleteSchoolRequest is the body of POST /v1/schools/{school}/delete:
// Confirm must repeat the school's ID, since nothing deleted comes back.
type DeleteSchoolRequest struct {
	Confirm string `json:"confirm"`
	Reason  string `json:"reason"`
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
	mux.HandleFunc("GET /v1/schools/{school}/export", s.exportSchool)
	mux.HandleFunc("POST /v1/schools/{school}/evidence-key", s.schoolEvidenceKey)
	mux.HandleFunc("POST /v1/schools/{school}/delete", s.deleteSchool)
	mux.HandleFunc("POST /v1/schools/{school}/retention", s.schoolRetention)
	mux.HandleFunc("POST /v1/schools/{school}/hours", s.schoolHours)
	mux.HandleFunc("POST /v1/schools/{school}/on-call", s.schoolOnCall)
	mux.HandleFunc("POST /v1/schools/{school}/mail", s.schoolMail)
	mux.HandleFunc("GET /v1/schools/{school}/rules", s.schoolRulesList)
	mux.HandleFunc("POST /v1/schools/{school}/rules", s.schoolRulesSet)
}

// schoolHours sets the working hours a school's absent devices and
// out-of-hours alerts are judged by. Checked as serve checks
// --working-hours and --timezone; written to the access log first.
func (s *Server) schoolHours(w http.ResponseWriter, r *http.Request) {
	var req SchoolHoursRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode working hours request: %v", err)
		return
	}
	if req.Reason == "" {
		httpError(w, http.StatusBadRequest, "a change of working hours needs a reason (recorded)")
		return
	}
	if req.WorkingHours != "" {
		if req.Timezone == "" {
			httpError(w, http.StatusBadRequest, "working hours need the school's time zone (--timezone Europe/London)")
			return
		}
		loc, err := time.LoadLocation(req.Timezone)
		if err != nil {
			httpError(w, http.StatusBadRequest, "time zone %q: %v", req.Timezone, err)
			return
		}
		if _, err := notify.ParseSchedule(req.WorkingHours, loc); err != nil {
			httpError(w, http.StatusBadRequest, "working hours: %v", err)
			return
		}
	} else {
		req.Timezone = ""
	}
	s.changeSchool(w, r, "school-hours", req.Reason,
		"the default school works the installation's hours: set serve --working-hours",
		func(id string) string {
			if req.WorkingHours == "" {
				return "school " + id + " working hours: the installation's"
			}
			return "school " + id + " working hours " + req.WorkingHours + " (" + req.Timezone + ")"
		},
		func(id string) (store.School, error) {
			return s.Store.SetSchoolHours(id, req.WorkingHours, req.Timezone)
		})
}

// schoolOnCall sets who is e-mailed first about the school's alerts out of
// its working hours. Each must be an enabled account that sees the
// school (its own, or granted it): an on-call user of one school is never
// sent another's alert. The change is written to the access log first.
func (s *Server) schoolOnCall(w http.ResponseWriter, r *http.Request) {
	var req SchoolOnCallRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode on-call request: %v", err)
		return
	}
	if req.Reason == "" {
		httpError(w, http.StatusBadRequest, "a change of on-call users needs a reason (recorded)")
		return
	}
	sc, err := s.Store.FindSchool(r.PathValue("school"))
	if err != nil {
		httpError(w, http.StatusNotFound, "no such school")
		return
	}
	var users []string
	for _, name := range req.Users {
		name = strings.TrimSpace(name)
		if name == "" {
			continue
		}
		u, err := s.Store.GetUser(name)
		if err != nil {
			httpError(w, http.StatusBadRequest, "on-call user %q: no such console account", name)
			return
		}
		if u.Disabled || u.Role == "admin" || !tenancy.SeesSchool(&u, sc.ID) {
			httpError(w, http.StatusBadRequest, "on-call user %q does not review school %s's alerts (a %s of %s): use one of its own accounts or one granted it", name, sc.ID, u.Role, store.SchoolOf(u.School))
			return
		}
		users = append(users, u.Username)
	}
	s.changeSchool(w, r, "school-on-call", req.Reason,
		"the default school's on-call users are the installation's: set serve --out-of-hours-users",
		func(id string) string {
			if len(users) == 0 {
				return "school " + id + " on call: the installation's"
			}
			return "school " + id + " on call: " + strings.Join(users, ", ")
		},
		func(id string) (store.School, error) { return s.Store.SetSchoolOnCall(id, users) })
}

// schoolMail sets the relay and sender of the school's alert e-mails (a
// school of a trust often has its own mail domain). The change is written
// to the access log first.
func (s *Server) schoolMail(w http.ResponseWriter, r *http.Request) {
	var req SchoolMailRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode mail request: %v", err)
		return
	}
	if req.Reason == "" {
		httpError(w, http.StatusBadRequest, "a change of mail relay needs a reason (recorded)")
		return
	}
	s.changeSchool(w, r, "school-mail", req.Reason,
		"the default school's mail goes by the installation's relay: set serve --smtp and --smtp-from",
		func(id string) string {
			if req.Relay == "" {
				return "school " + id + " mail: the installation's relay"
			}
			return "school " + id + " mail: relay " + req.Relay + ", from " + req.From
		},
		func(id string) (store.School, error) { return s.Store.SetSchoolMail(id, req.Relay, req.From) })
}

// schoolRetention sets how long a school keeps its devices' findings. The
// change is written to the access log before it is made.
func (s *Server) schoolRetention(w http.ResponseWriter, r *http.Request) {
	var req SchoolRetentionRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode retention request: %v", err)
		return
	}
	if req.Reason == "" {
		httpError(w, http.StatusBadRequest, "a retention change needs a reason (recorded)")
		return
	}
	s.changeSchool(w, r, "school-retention", req.Reason,
		"the default school keeps findings as the installation does: set serve --retention",
		func(id string) string {
			if len(req.Retention) == 0 {
				return "school " + id + " retention: the installation's"
			}
			return "school " + id + " retention " + req.Retention.String()
		},
		func(id string) (store.School, error) { return s.Store.SetSchoolRetention(id, req.Retention) })
}

// changeSchool is the one path of a change to a school's settings: the
// school found (not the default, whose settings are serve's flags), the
// change written to the access log before it is made, then made, and the
// school's record answered.
func (s *Server) changeSchool(w http.ResponseWriter, r *http.Request, action, reason, defaultRefusal string,
	detail func(id string) string, set func(id string) (store.School, error)) {
	sc, err := s.Store.FindSchool(r.PathValue("school"))
	if err != nil {
		httpError(w, http.StatusNotFound, "no such school")
		return
	}
	if sc.ID == store.DefaultSchool {
		httpError(w, http.StatusBadRequest, "%s", defaultRefusal)
		return
	}
	who := whoOf(r)
	if who == "" {
		who = "cli"
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now().UTC(), Who: who, Action: action, Reason: reason, Detail: detail(sc.ID)}); err != nil {
		httpError(w, http.StatusInternalServerError, "write the access log: %v", err)
		return
	}
	sc, err = set(sc.ID)
	switch {
	case errors.Is(err, store.ErrBadSchool):
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	case errors.Is(err, store.ErrNotFound):
		httpError(w, http.StatusNotFound, "no such school")
		return
	case err != nil:
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	writeJSON(w, sc)
}

// deleteSchool removes a school that leaves the trust and everything it
// owns (store.DeleteSchool), its devices disconnected. The start is written
// to the access log first (no log, no deletion), the outcome after.
func (s *Server) deleteSchool(w http.ResponseWriter, r *http.Request) {
	var req DeleteSchoolRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode delete request: %v", err)
		return
	}
	id := r.PathValue("school")
	if sc, err := s.Store.FindSchool(id); err == nil {
		id = sc.ID
	} // else: a deletion cut short, no longer found by name; its ID resumes it
	if id == store.DefaultSchool {
		httpError(w, http.StatusBadRequest, "the default school holds every record that names no school; it cannot be deleted")
		return
	}
	if req.Confirm != id {
		httpError(w, http.StatusBadRequest, "to delete school %q and everything it owns, confirm with its ID (--confirm %s)", id, id)
		return
	}
	if req.Reason == "" {
		httpError(w, http.StatusBadRequest, "a deletion needs a reason (recorded)")
		return
	}
	who := whoOf(r)
	if who == "" {
		who = "cli"
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now().UTC(), Who: who, Action: "delete-school", Reason: req.Reason, Detail: "school " + id + " started"}); err != nil {
		httpError(w, http.StatusInternalServerError, "write the access log: %v", err)
		return
	}
	var disconnect func(string)
	if s.Agents != nil {
		disconnect = s.Agents.Disconnect
	}
	rep, err := s.Store.DeleteSchool(id, s.Now(), disconnect)
	switch {
	case errors.Is(err, store.ErrBadSchool):
		httpError(w, http.StatusBadRequest, "%v", err)
		return
	case errors.Is(err, store.ErrNotFound) && s.Bus == nil && (s.Keys == nil || !s.Keys.Has(id)):
		httpError(w, http.StatusNotFound, "no such school")
		return
	case errors.Is(err, store.ErrNotFound):
		// Gone from the store: a run whose bus or key step failed is
		// finished by running it again; for a school that never was, the
		// bus and the keyring have nothing of it either.
		rep = store.SchoolDeletion{School: id}
	case err != nil:
		httpError(w, http.StatusInternalServerError, "%v (run it again to finish)", err)
		return
	}
	out := SchoolDeleted{SchoolDeletion: rep}
	if s.Bus != nil {
		forgot, err := s.Bus.ForgetSchool(r.Context(), id)
		if err != nil {
			s.Logger.Error("school deleted from the store, not yet from the bus", "school", id, "err", err)
			httpError(w, http.StatusInternalServerError, "school %s deleted from the store; removing its queued messages and device records from NATS failed: %v (run it again to finish)", id, err)
			return
		}
		out.Bus = &forgot
	}
	if s.SchoolRulesDir != "" {
		n, err := rulesdist.RemoveSchoolOverrides(s.SchoolRulesDir, id)
		if err != nil {
			s.Logger.Error("school deleted, its rules overrides not yet removed", "school", id, "err", err)
			httpError(w, http.StatusInternalServerError, "school %s deleted; removing its rules overrides failed: %v (run it again to finish)", id, err)
			return
		}
		out.RulesOverridesRemoved = n
	}
	if s.Keys != nil {
		destroyed, err := s.Keys.Destroy(id)
		if err != nil {
			s.Logger.Error("school deleted, its evidence key not yet destroyed", "school", id, "err", err)
			httpError(w, http.StatusInternalServerError, "school %s deleted; destroying its evidence key failed: %v (run it again to finish)", id, err)
			return
		}
		out.EvidenceKeyDestroyed = destroyed
	}
	total := 0
	for _, n := range rep.Keys {
		total += n
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now().UTC(), Who: who, Action: "delete-school", Reason: req.Reason,
		Detail: fmt.Sprintf("school %s deleted: %d devices, %d records, %d grants, evidence key destroyed: %t", id, rep.Devices, total, rep.Grants, out.EvidenceKeyDestroyed)}); err != nil {
		s.Logger.Error("school deleted but the access log entry was not written", "school", id, "err", err)
	}
	s.Logger.Warn("school deleted", "school", id, "by", who, "devices", rep.Devices, "records", total)
	writeJSON(w, out)
}

// exportSchool streams everything one school owns (collector/schoolexport)
// as JSON Lines. It is written to the access log before anything is read:
// an export the log does not show must not exist.
func (s *Server) exportSchool(w http.ResponseWriter, r *http.Request) {
	sc, err := s.Store.FindSchool(r.PathValue("school"))
	if errors.Is(err, store.ErrNotFound) {
		httpError(w, http.StatusNotFound, "no such school")
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "find school: %v", err)
		return
	}
	who := whoOf(r)
	if who == "" {
		who = "cli"
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now().UTC(), Who: who, Action: "export-school",
		Detail: "school " + sc.ID + " (" + sc.Name + ")"}); err != nil {
		httpError(w, http.StatusInternalServerError, "write the access log: %v", err)
		return
	}
	var overrides map[string][]byte
	if s.SchoolRulesDir != "" && sc.ID != store.DefaultSchool {
		if overrides, err = rulesdist.SchoolOverrides(s.SchoolRulesDir, sc.ID); err != nil {
			httpError(w, http.StatusInternalServerError, "%v", err)
			return
		}
	}
	w.Header().Set("Content-Type", "application/x-ndjson")
	counts, err := schoolexport.Export(r.Context(), s.Store, sc.ID, who, s.Now(), overrides, w)
	if err != nil {
		// The status is sent; the missing end line tells the reader.
		s.Logger.Error("school export cut short", "school", sc.ID, "err", err)
		return
	}
	s.Logger.Info("school exported", "school", sc.ID, "by", who, "counts", counts)
}

// EvidenceKeyRequest is the body of POST /v1/schools/{school}/evidence-key.
type EvidenceKeyRequest struct {
	Reason string `json:"reason"`
}

// EvidenceKey is the answer: the school's age identity, which opens every
// piece of evidence its devices sealed to it (those in its export too).
type EvidenceKey struct {
	School   string `json:"school"`
	Identity string `json:"identity"`
}

// schoolEvidenceKey hands over a school's own evidence key, for a school
// leaving the trust with its export. It opens all of the school's
// evidence, so it needs a reason and is written to the access log first.
func (s *Server) schoolEvidenceKey(w http.ResponseWriter, r *http.Request) {
	var req EvidenceKeyRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 1<<16)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode request: %v", err)
		return
	}
	sc, err := s.Store.FindSchool(r.PathValue("school"))
	if errors.Is(err, store.ErrNotFound) {
		httpError(w, http.StatusNotFound, "no such school")
		return
	}
	if err != nil {
		httpError(w, http.StatusInternalServerError, "find school: %v", err)
		return
	}
	if sc.ID == store.DefaultSchool {
		httpError(w, http.StatusBadRequest, "the default school's evidence is sealed to the installation's key (pki/evidence.key), which is not handed over here")
		return
	}
	if s.Keys == nil {
		httpError(w, http.StatusServiceUnavailable, "this collector has no school evidence keys")
		return
	}
	if req.Reason == "" {
		httpError(w, http.StatusBadRequest, "handing over a school's evidence key needs a reason (recorded)")
		return
	}
	who := whoOf(r)
	if who == "" {
		who = "cli"
	}
	if !s.Keys.Has(sc.ID) {
		httpError(w, http.StatusNotFound, "school %s has no evidence key of its own: none of its devices has been given one yet, so its evidence is sealed to the installation's key", sc.ID)
		return
	}
	if err := s.Store.LogAccess(store.AccessEntry{Time: s.Now().UTC(), Who: who, Action: "export-evidence-key", Reason: req.Reason,
		Detail: "school " + sc.ID + " (" + sc.Name + ")"}); err != nil {
		httpError(w, http.StatusInternalServerError, "write the access log: %v", err)
		return
	}
	secret, err := s.Keys.Secret(sc.ID)
	if err != nil {
		httpError(w, http.StatusInternalServerError, "%v", err)
		return
	}
	s.Logger.Warn("school evidence key handed over", "school", sc.ID, "by", who)
	writeJSON(w, EvidenceKey{School: sc.ID, Identity: secret})
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

// schoolRulesList lists the files of a school's rules overrides.
func (s *Server) schoolRulesList(w http.ResponseWriter, r *http.Request) {
	sc, err := s.Store.FindSchool(r.PathValue("school"))
	if err != nil {
		httpError(w, http.StatusNotFound, "no such school")
		return
	}
	out := []SchoolRulesFile{}
	if s.SchoolRulesDir != "" && sc.ID != store.DefaultSchool {
		files, err := rulesdist.SchoolOverrides(s.SchoolRulesDir, sc.ID)
		if err != nil {
			httpError(w, http.StatusInternalServerError, "%v", err)
			return
		}
		for p, b := range files {
			sum := sha256.Sum256(b)
			out = append(out, SchoolRulesFile{Path: p, Size: len(b), SHA256: hex.EncodeToString(sum[:])})
		}
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Path < out[j].Path })
	writeJSON(w, out)
}

// schoolRulesSet replaces a school's rules overrides, refused whole unless
// they validate over every group's pack (file:line:col in the answer). The
// change is written to the access log first, with the set's hash.
func (s *Server) schoolRulesSet(w http.ResponseWriter, r *http.Request) {
	if s.SchoolRules == nil {
		httpError(w, http.StatusServiceUnavailable, "this collector does not keep school rules overrides")
		return
	}
	var req SchoolRulesRequest
	if err := json.NewDecoder(io.LimitReader(r.Body, 32<<20)).Decode(&req); err != nil {
		httpError(w, http.StatusBadRequest, "decode rules request: %v", err)
		return
	}
	if req.Reason == "" {
		httpError(w, http.StatusBadRequest, "a change of a school's rules needs a reason (recorded)")
		return
	}
	var setErr error
	s.changeSchool(w, r, "school-rules", req.Reason,
		"the default school's rules are the trust's pack (DATA/rules/<group>), edited as files",
		func(id string) string {
			if len(req.Files) == 0 {
				return "school " + id + " rules overrides removed"
			}
			return fmt.Sprintf("school %s rules overrides: %d files, %s", id, len(req.Files), rules.HashFiles(req.Files))
		},
		func(id string) (store.School, error) {
			if setErr = s.SchoolRules.SetSchoolOverrides(id, req.Files); setErr != nil {
				return store.School{}, fmt.Errorf("%w: %v", store.ErrBadSchool, setErr)
			}
			if s.RulesChanged != nil {
				s.RulesChanged()
			}
			return s.Store.FindSchool(id)
		})
}
