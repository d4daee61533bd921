// Package console is the collector's web console: the JSON API under
// /api/v1/ (docs/api.md) and the embedded web UI, served from the same
// binary on --http-listen. Accounts, sessions, roles, the alert queue and
// triage (the review form of seed 002 Appendix 5), evidence reveal with an
// access log, routing (seed 002 §5.3), devices and trends live here; their
// records are in collector/store/console.go. E-mail (notifications and their
// escalation) is collector/notify's, which asks this package's routing.
package console

import (
	"encoding/json"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"time"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/dfe"
	"github.com/vigil-safeguarding/vigil/collector/evidence"
	"github.com/vigil-safeguarding/vigil/collector/fleetcheck"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
	"github.com/vigil-safeguarding/vigil/internal/personid"
)

// Roles (collector/auth owns them).
const (
	RoleDSL         = auth.RoleDSL
	RoleHeadteacher = auth.RoleHeadteacher
	RoleTechnician  = auth.RoleTechnician
	RoleGovernor    = auth.RoleGovernor
	RoleAdmin       = auth.RoleAdmin
)

// Roles lists every console role.
var Roles = auth.Roles

// ValidRole says whether r is a console role.
func ValidRole(r string) bool { return auth.ValidRole(r) }

// Config for New.
type Config struct {
	Store Store
	// EvidenceKeys open evidence, by the device's school, for a logged
	// reveal by a DSL; EvidenceKey, when EvidenceKeys is nil, opens all of
	// it.
	EvidenceKeys evidence.Keys
	EvidenceKey  *age.X25519Identity
	Logger       *slog.Logger
	Now          func() time.Time
	// Connected reports whether a device has a live stream (may be nil).
	Connected func(deviceID string) bool
	// SessionIdle is how long an unused session lives (default 12 h).
	SessionIdle time.Duration
	// ExclusionsChanged, if set, is called after an exclusion is approved,
	// so the rules bundles (ExclusionsFile) are rebuilt and pushed.
	ExclusionsChanged func()
	// SchoolTermsChanged, if set, is called after a school term is added
	// or removed (terms.go), so the rules bundles are rebuilt and pushed.
	SchoolTermsChanged func()
	// OIDC, if set, offers sign-in with an OpenID Connect provider (oidc.go).
	OIDC *OIDCConfig
	// PasswordWorkers and PasswordQueue bound password hashing
	// (auth.HashPool): how many hashes run at once (default 1, 2 above four
	// cores) and how many sign-ins may wait for one (default 8); beyond
	// that sign-ins are refused with 429 until a worker is free.
	PasswordWorkers, PasswordQueue int
	// InitialPasswordFile is DATA/initial-admin-password: removed when the
	// first admin chooses their own password.
	InitialPasswordFile string
	// Proxies are the reverse proxies whose forwarded headers decide the
	// client address and whether the browser used HTTPS (proxy.go).
	Proxies TrustedProxies
	// Deploy, if set, serves the technician's Deploy page API (deploy.go).
	Deploy *DeployConfig
	// Releases, if set, serves agent releases and rollouts (releases.go).
	Releases *ReleasesConfig
	// Audits, if set, serves device audits (audits.go): the same Service the
	// daemon gives the admin socket and the gRPC server.
	Audits *audit.Service
	// DFE and FleetChecks, if set, serve the DfE evidence (dfe.go): the
	// same Services the daemon gives the admin socket.
	DFE         *dfe.Service
	FleetChecks *fleetcheck.Service
}

// Server serves the console.
type Server struct {
	st       Store
	log      *slog.Logger
	now      func() time.Time
	conn     func(string) bool
	auth     *auth.Service // accounts, sign-in, sessions
	proxies  TrustedProxies
	exclChg  func()            // Config.ExclusionsChanged; may be nil
	oidc     *auth.OIDC        // nil: OIDC sign-in off
	deploy   *DeployConfig     // nil: no token or package endpoints
	releases *ReleasesConfig   // nil: no release endpoints
	reveal   *evidence.Service // the one evidence reveal (evidence.go)
	audits   *audit.Service    // Config.Audits; nil: no audit endpoints
	terms    *schoolTerms      // terms added by the school (terms.go)
	tenants  *tenancy.Policy   // the school dimension (schools.go)
	// patterns: every route Handler registered, for the isolation test,
	// which must find each one classified by collector/tenancy.
	patterns []string

	// The DfE evidence (dfe.go); nil dfe: no evidence endpoints.
	dfe    *dfe.Service
	checks *fleetcheck.Service

	coverage Coverage // SetCoverage; nil: no coverage endpoints

	// The alert queue's listing reaches the store only through what it
	// needs (tests wrap it to inject faults).
	queue queueStore

	peopleMu sync.RWMutex
	people   map[string]store.Person

	// logAccessFn replaces Store.LogAccess in tests.
	logAccessFn func(store.AccessEntry) error
}

// New returns a console server over st.
func New(cfg Config) (*Server, error) {
	s := &Server{proxies: cfg.Proxies, st: cfg.Store, log: cfg.Logger, now: cfg.Now, conn: cfg.Connected,
		exclChg: cfg.ExclusionsChanged, deploy: cfg.Deploy, releases: cfg.Releases, audits: cfg.Audits, dfe: cfg.DFE, checks: cfg.FleetChecks,
		terms: &schoolTerms{changed: cfg.SchoolTermsChanged}}
	s.queue = cfg.Store
	s.tenants = &tenancy.Policy{Dir: cfg.Store}
	if s.log == nil {
		s.log = slog.Default()
	}
	if s.now == nil {
		s.now = time.Now
	}
	s.reveal = s.newReveal(cfg.EvidenceKeys, cfg.EvidenceKey)
	s.auth = auth.New(auth.Config{Store: cfg.Store, Logger: s.log, Now: s.now, SessionIdle: cfg.SessionIdle,
		PasswordWorkers: cfg.PasswordWorkers, PasswordQueue: cfg.PasswordQueue, InitialPasswordFile: cfg.InitialPasswordFile})
	if cfg.OIDC != nil {
		o, err := auth.NewOIDC(*cfg.OIDC, s.now)
		if err != nil {
			return nil, err
		}
		s.oidc = o
	}
	if err := s.ReloadPeople(); err != nil {
		return nil, err
	}
	return s, nil
}

// ReloadPeople refreshes the in-memory copy of the people directory.
func (s *Server) ReloadPeople() error {
	list, err := s.st.People()
	if err != nil {
		return fmt.Errorf("console: load people: %w", err)
	}
	m := make(map[string]store.Person, len(list))
	for _, p := range list {
		// Keyed by the canonical identity, not the stored name: records
		// imported before personid existed were stored in older forms.
		k := personid.Canonical(p.Username)
		if k == "" {
			continue
		}
		if prev, dup := m[k]; dup {
			s.log.Warn("console: people directory has two records for one person; keeping the first", "kept", prev.Username, "ignored", p.Username)
			continue
		}
		m[k] = p
	}
	s.peopleMu.Lock()
	s.people = m
	s.peopleMu.Unlock()
	return nil
}

func (s *Server) person(username string) (store.Person, bool) {
	s.peopleMu.RLock()
	defer s.peopleMu.RUnlock()
	p, ok := s.people[personid.Canonical(username)]
	return p, ok
}

// allow decides whether a signed-in user may use an endpoint.
type allow func(u *store.User) bool

func roles(rs ...string) allow {
	return func(u *store.User) bool {
		for _, r := range rs {
			if u.Role == r {
				return true
			}
		}
		return false
	}
}

// alertReaders: the DSL, the headteacher and the chair of governors (each
// sees only what is routed to them).
func alertReaders(u *store.User) bool {
	return u.Role == RoleDSL || u.Role == RoleHeadteacher || u.Role == RoleGovernor && u.Chair
}

func anyone(*store.User) bool { return true }

// Handler routes the console: the API and the UI.
func (s *Server) Handler() http.Handler {
	mux := &routeMux{ServeMux: http.NewServeMux()}
	defer func() { s.patterns = mux.patterns }()
	mux.HandleFunc("POST /api/v1/session", s.login)
	mux.Handle("DELETE /api/v1/session", s.api(anyone, s.logout))
	mux.Handle("GET /api/v1/me", s.api(anyone, s.me))
	s.oidcRoutes(mux) // public: GET /api/v1/oidc, /api/v1/oidc/login, /api/v1/oidc/callback

	mux.Handle("GET /api/v1/alerts", s.api(alertReaders, s.listAlerts))
	mux.Handle("GET /api/v1/alert-categories", s.api(alertReaders, s.alertCategories))
	mux.Handle("GET /api/v1/alerts/{id}", s.api(alertReaders, s.alertDetail))
	mux.Handle("POST /api/v1/alerts/{id}/actions", s.api(alertReaders, s.alertAction))
	mux.Handle("GET /api/v1/alerts/{id}/form.pdf", s.api(alertReaders, s.formPDF))
	// Who may reveal is evidence.Service.Reveal's decision, for every entry point.
	mux.Handle("POST /api/v1/evidence/{alert}/{evidence}", s.api(anyone, s.evidence))
	mux.Handle("GET /api/v1/exclusions", s.api(roles(RoleDSL), s.listExclusions))
	mux.Handle("POST /api/v1/exclusions/{id}/approve", s.api(roles(RoleDSL), s.approveExclusion))
	s.termRoutes(mux)
	mux.Handle("GET /api/v1/access-log", s.api(roles(RoleAdmin, RoleHeadteacher), s.accessLog))
	mux.Handle("GET /api/v1/incidents.csv", s.api(roles(RoleDSL, RoleHeadteacher), s.incidentsCSV))
	mux.Handle("GET /api/v1/devices", s.api(roles(RoleTechnician, RoleDSL, RoleHeadteacher), s.devices))
	mux.Handle("GET /api/v1/devices/{id}", s.api(roles(RoleTechnician, RoleDSL, RoleHeadteacher), s.deviceDetail))
	s.reportRoutes(mux)
	mux.Handle("GET /api/v1/trends", s.api(roles(RoleGovernor, RoleHeadteacher, RoleDSL), s.trends))
	s.userRoutes(mux)
	s.auditRoutes(mux)
	s.deployRoutes(mux)
	s.releaseRoutes(mux)
	s.licenceRoutes(mux)
	s.dfeRoutes(mux)
	s.coverageRoutes(mux)
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		jsonError(w, http.StatusNotFound, "no such API endpoint")
	})
	mux.Handle("/", staticHandler())
	return securityHeaders(mux.ServeMux)
}

// securityHeaders sets the headers every response carries.
func securityHeaders(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		h := w.Header()
		// blob: images are the revealed screenshots, fetched with a POST
		// (the reason in the body) and shown from memory.
		h.Set("Content-Security-Policy", "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'")
		h.Set("X-Content-Type-Options", "nosniff")
		h.Set("Referrer-Policy", "no-referrer")
		h.Set("X-Frame-Options", "DENY")
		if strings.HasPrefix(r.URL.Path, "/api/") {
			h.Set("Cache-Control", "no-store")
		}
		next.ServeHTTP(w, r)
	})
}

func writeJSON(w http.ResponseWriter, code int, v any) {
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(v)
}

func jsonError(w http.ResponseWriter, code int, format string, a ...any) {
	writeJSON(w, code, map[string]string{"error": fmt.Sprintf(format, a...)})
}

// decodeBody reads a JSON request body (at most 1 MiB).
func decodeBody(r *http.Request, v any) error {
	dec := json.NewDecoder(http.MaxBytesReader(nil, r.Body, 1<<20))
	if err := dec.Decode(v); err != nil {
		return fmt.Errorf("request body: %v", err)
	}
	return nil
}

func (s *Server) internal(w http.ResponseWriter, what string, err error) {
	if s.diskFull(w, what, err) {
		return
	}
	s.log.Error("console: "+what, "err", err)
	jsonError(w, http.StatusInternalServerError, "%s failed; see the collector log", what)
}

func ts(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format(time.RFC3339Nano)
}

func tsPtr(t time.Time) *string {
	if t.IsZero() {
		return nil
	}
	v := ts(t)
	return &v
}
