// Package tenancy is the school dimension of who may see what: a trust is
// one installation with schools as tenants (collector/store School), and a
// school's DSL, headteacher, technician and governors see only the
// devices, alerts, findings and evidence of their own school. Every entry
// point asks here: the console's alert routing (console.visible, which the
// alert list and categories, detail, actions, review form, incidents CSV,
// device timeline, monitoring report and collector/evidence's reveal all
// call), the device pages, the trends and governors' aggregates, the token
// and package endpoints, and the route gate every console API call passes
// (RouteOpen) for the routes that are not school-aware yet.
//
// What another school owns is answered exactly as something that does not
// exist: the callers map a false here to the same not-found they give an
// unknown id, with no data in the body.
package tenancy

import (
	"fmt"
	"slices"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Directory is what the policy reads: which school each device is in, and
// how many schools there are.
type Directory interface {
	DeviceSchool(id string) (string, bool)
	Schools() ([]store.School, error)
}

// Policy decides the school dimension. Construct it in the wiring over the
// collector's store.
type Policy struct {
	Dir Directory
}

// InstallationWide says whether u administers the installation rather than
// one school: admin accounts, and the collector's operator (nil: the admin
// socket, with the same trust as the data dir). Admin accounts see no
// safeguarding content whatever their school (their role never reaches
// it); they manage accounts and the installation.
func InstallationWide(u *store.User) bool { return u == nil || u.Role == auth.RoleAdmin }

// SchoolOf is the school an account belongs to.
func SchoolOf(u *store.User) string {
	if u == nil {
		return ""
	}
	return store.SchoolOf(u.School)
}

// SeesSchool says whether u may see what school owns: their own school,
// or one granted to them as a trust safeguarding lead.
func SeesSchool(u *store.User, school string) bool {
	school = store.SchoolOf(school)
	return InstallationWide(u) || SchoolOf(u) == school || granted(u, school)
}

// granted: a grant counts for the trust roles only; Grant refuses others,
// and a role changed since does not keep it.
func granted(u *store.User, school string) bool {
	return TrustRole(u) != "" && slices.Contains(u.Granted, school)
}

// TrustRole names what an account granted further schools is to the
// trust: a DSL is a trust safeguarding lead (alerts of those schools, by
// the same routing), a technician a trust IT lead (their fleets, tokens and
// packages), a governor who is not a school's chair a trust governor (the
// governors' aggregates over those schools, nothing more: the role never
// reaches an alert). "" for roles that are never granted: a headteacher
// and a chair of governors review concerns about staff and the head of
// their own school, which another school's must not see.
func TrustRole(u *store.User) string {
	switch {
	case u.Role == auth.RoleDSL:
		return "trust safeguarding lead"
	case u.Role == auth.RoleTechnician:
		return "trust IT lead"
	case u.Role == auth.RoleGovernor && !u.Chair:
		return "trust governor"
	}
	return ""
}

// MayGrant says whether u may be granted school: an account of a trust
// role (TrustRole) of another school.
func MayGrant(u *store.User, school string) error {
	if TrustRole(u) == "" {
		role := u.Role
		if u.Chair {
			role = "chair of governors"
		}
		return fmt.Errorf("only dsl, technician and governor (not chair) accounts are granted schools (a trust safeguarding lead, IT lead or governor); %s is %s", u.Username, role)
	}
	if SchoolOf(u) == store.SchoolOf(school) {
		return fmt.Errorf("%s is an account of %s already", u.Username, store.SchoolOf(school))
	}
	return nil
}

// DeviceSchool is the school a device is in. A device without a record
// (findings are only accepted from enrolled devices, so only a record
// written before the device table) is the default school's, like every
// other record that names no school.
func (p *Policy) DeviceSchool(id string) string {
	if sc, ok := p.Dir.DeviceSchool(id); ok {
		return sc
	}
	return store.DefaultSchool
}

// ReadsAccessLog answers the filter of the access log for u: every entry
// for an installation-wide account and in a trust of one (a single school
// reads its whole log, as before schools existed), else SeesAccessEntry.
func (p *Policy) ReadsAccessLog(u *store.User) (func(store.AccessEntry) bool, error) {
	all := func(store.AccessEntry) bool { return true }
	if InstallationWide(u) {
		return all, nil
	}
	schools, err := p.Dir.Schools()
	if err != nil {
		return nil, err
	}
	if len(schools) == 1 {
		return all, nil
	}
	return func(e store.AccessEntry) bool { return p.SeesAccessEntry(u, e) }, nil
}

// SeesAccessEntry says whether u may read an entry of the access log: an
// installation-wide account reads every entry; a school account those
// about a device (named, or by the alert) of a school it sees, whoever
// acted. Entries about no device (schools, accounts, settings) and about
// a device that no longer exists (its school deleted: the log is kept,
// the device is not, and the default school must not inherit it) are the
// installation's.
//
// ReadsAccessLog is the filter an entry point applies to the whole log.
func (p *Policy) SeesAccessEntry(u *store.User, e store.AccessEntry) bool {
	if InstallationWide(u) {
		return true
	}
	device := e.DeviceID
	if device == "" && e.AlertID != "" {
		device, _, _ = store.ParseAlertID(e.AlertID)
	}
	if device == "" {
		return false
	}
	school, ok := p.Dir.DeviceSchool(device)
	return ok && SeesSchool(u, school)
}

// SeesDevice says whether u may see device id and what it reported
// (findings, alerts, evidence, audits).
func (p *Policy) SeesDevice(u *store.User, id string) bool {
	return InstallationWide(u) || SeesSchool(u, p.DeviceSchool(id))
}

// SeesTerm says whether u may see keyword term t: a school's term by those
// who see the school, a trust-wide term by every account (it is in force
// on their school's devices, so their DSL must know what is matched).
func SeesTerm(u *store.User, t store.SchoolTerm) bool {
	return t.TrustWide || SeesSchool(u, t.School)
}

// SeesTermDecision says whether u may read an entry of the terms' decision
// log: a school's suppression or restore by those who see that school,
// anything else by those who see the term.
func SeesTermDecision(u *store.User, d store.TermDecision) bool {
	if d.School != "" {
		return SeesSchool(u, d.School)
	}
	return SeesTerm(u, d.Term)
}

// SeesExclusion says whether u may see an exclusion in full: those who see
// the school whose alert proposed it. A trust-wide exclusion applies in
// every school, so every account sees that it exists (ExclusionSummary),
// but the proposal (its alert, proposer and reason) stays with the school.
func SeesExclusion(u *store.User, x store.Exclusion) bool { return SeesSchool(u, x.School) }

// ExclusionSummary is what an account of another school sees of a
// trust-wide exclusion: what is excluded, by whom approved, why and until
// when; not the alert, the proposer or the proposal's reason.
func ExclusionSummary(x store.Exclusion) store.Exclusion {
	return store.Exclusion{ID: x.ID, RuleID: x.RuleID, Library: x.Library, Term: x.Term, Category: x.Category, Status: x.Status,
		ApprovedBy: x.ApprovedBy, ApprovedAt: x.ApprovedAt, ApprovalReason: x.ApprovalReason, ExpiresAt: x.ExpiresAt, TrustWide: true}
}

// SetsTrustWide says whether u may set what is in force in every school
// (trust-wide keyword terms and exclusions): an account that sees every
// school of the installation, such as a trust safeguarding lead granted
// them all. In a trust of one, the school's own DSL.
func (p *Policy) SetsTrustWide(u *store.User) (bool, error) {
	all, err := p.Dir.Schools()
	if err != nil {
		return false, err
	}
	for _, sc := range all {
		if !SeesSchool(u, sc.ID) {
			return false, nil
		}
	}
	return true, nil
}

// Scope says how a console route treats schools.
type Scope int

// The scopes.
const (
	// Unclassified: a route nobody has classified. It is treated as
	// Installation (closed to school accounts once there are two schools),
	// and the isolation test fails until it is classified.
	Unclassified Scope = iota
	// Account: the route shows only the caller's own account or session.
	Account
	// Public: before sign-in (the sign-in itself, OIDC); no school data.
	Public
	// Scoped: the handler asks this package about everything it returns or
	// changes, so it is open to every school's accounts.
	Scoped
	// Installation: not school-aware yet (aggregates over every device,
	// installation-wide settings). While the installation is one school it
	// is open as before; once there are more, only installation-wide
	// accounts (admin) may use it, and school accounts are refused with no
	// data rather than shown another school's.
	Installation
)

// Routes classifies every route the console registers, by its ServeMux
// pattern. The isolation test enumerates the console's registered routes
// and fails for any that is missing here; a route missing here is treated
// as Installation (closed to school accounts once there are two schools).
func Routes() map[string]Scope { return routes }

// routes is a constant table (Routes hands it out; nothing writes it).
var routes = map[string]Scope{
	"POST /api/v1/session":                     Public,
	"GET /api/v1/oidc":                         Public,
	"GET /api/v1/oidc/login":                   Public,
	"GET /api/v1/oidc/callback":                Public,
	"DELETE /api/v1/session":                   Account,
	"GET /api/v1/me":                           Account,
	"POST /api/v1/me/password":                 Account,
	"/api/":                                    Public, // the JSON 404 for unknown API paths
	"/":                                        Public, // the embedded web UI (static files)
	"GET /api/v1/alerts":                       Scoped,
	"GET /api/v1/alert-categories":             Scoped,
	"GET /api/v1/alerts/{id}":                  Scoped,
	"POST /api/v1/alerts/{id}/actions":         Scoped,
	"GET /api/v1/alerts/{id}/form.pdf":         Scoped,
	"POST /api/v1/evidence/{alert}/{evidence}": Scoped,
	"GET /api/v1/incidents.csv":                Scoped,
	"GET /api/v1/devices":                      Scoped,
	"GET /api/v1/devices/{id}":                 Scoped,
	"GET /api/v1/deploy":                       Scoped,
	"GET /api/v1/tokens":                       Scoped,
	"POST /api/v1/tokens/{id}/revoke":          Scoped,
	"POST /api/v1/packages":                    Scoped,
	// Aggregates and reports over the viewer's school only.
	"GET /api/v1/trends":                  Scoped,
	"GET /api/v1/coverage":                Scoped,
	"GET /api/v1/coverage/{device}":       Scoped,
	"POST /api/v1/coverage/{device}/ack":  Scoped,
	"GET /api/v1/reports/monitoring.json": Scoped,
	"GET /api/v1/reports/monitoring.csv":  Scoped,
	"GET /api/v1/reports/monitoring.pdf":  Scoped,
	"GET /api/v1/reports/governors.json":  Scoped,
	"GET /api/v1/reports/governors.csv":   Scoped,
	"GET /api/v1/reports/governors.pdf":   Scoped,
	// Device audits: an audit is of one school and covers its devices
	// only; collector/audit asks SeesSchool on every read (audit.Reader).
	// The inventory lists the devices the viewer may see (SeesDevice).
	"GET /api/v1/inventory": Scoped,
	// The access log: a school account reads the entries about its
	// school's devices (SeesAccessEntry); the rest is the installation's.
	"GET /api/v1/access-log":             Scoped,
	"GET /api/v1/audits":                 Scoped,
	"POST /api/v1/audits":                Scoped,
	"GET /api/v1/audits/{id}":            Scoped,
	"GET /api/v1/audits/{id}/progress":   Scoped,
	"POST /api/v1/audits/{id}/sign":      Scoped,
	"GET /api/v1/audits/{id}/report.pdf": Scoped,
	"GET /api/v1/audits/{id}/report.csv": Scoped,
	// Exclusions and keyword terms are a school's (in its rules bundles
	// only) or trust-wide (in every school's unless a school suppresses
	// a term): SeesTerm, SeesTermDecision, SeesExclusion, SetsTrustWide.
	"GET /api/v1/exclusions":               Scoped,
	"POST /api/v1/exclusions/{id}/approve": Scoped,
	"GET /api/v1/terms":                    Scoped,
	"POST /api/v1/terms":                   Scoped,
	"POST /api/v1/terms/{id}/remove":       Scoped,
	"POST /api/v1/terms/{id}/suppress":     Scoped,
	"POST /api/v1/terms/{id}/restore":      Scoped,
	"GET /api/v1/terms/decisions":          Scoped,
	// Not school-aware yet: see the comment of Installation. The DfE
	// register is the installation's.
	"GET /api/v1/licences":                  Installation,
	"POST /api/v1/licences":                 Installation,
	"PUT /api/v1/licences/{id}":             Installation,
	"DELETE /api/v1/licences/{id}":          Installation,
	"POST /api/v1/licences/import":          Installation,
	"GET /api/v1/licences/reconcile":        Installation,
	"POST /api/v1/licences/aliases":         Installation,
	"DELETE /api/v1/licences/aliases":       Installation,
	"GET /api/v1/users":                     Installation,
	"POST /api/v1/users":                    Installation,
	"POST /api/v1/users/{username}/disable": Installation,
	"POST /api/v1/users/{username}/enable":  Installation,
	"POST /api/v1/users/{username}/reset":   Installation,
	"GET /api/v1/dfe/status":                Installation,
	"GET /api/v1/dfe/roles":                 Installation,
	"PUT /api/v1/dfe/roles":                 Installation,
	"GET /api/v1/dfe/reviews":               Installation,
	"POST /api/v1/dfe/reviews":              Installation,
	"POST /api/v1/dfe/checks":               Installation,
	"GET /api/v1/dfe/checks/{id}":           Installation,
	"GET /api/v1/reports/dfe.json":          Installation,
	"GET /api/v1/reports/dfe.csv":           Installation,
	"GET /api/v1/reports/dfe.pdf":           Installation,
	// Agent releases and rollouts are the installation's: one signing key,
	// groups that are not per school.
	"GET /api/v1/releases":           Installation,
	"POST /api/v1/releases":          Installation,
	"GET /api/v1/releases/status":    Installation,
	"POST /api/v1/releases/rollout":  Installation,
	"POST /api/v1/releases/rollback": Installation,
	"POST /api/v1/releases/minimum":  Installation,
}

// RouteOpen says whether u may use the route with this ServeMux pattern
// as far as schools go (the role check is the console's). A route that is
// not school-aware is open to a school account only while the
// installation has one school.
func (p *Policy) RouteOpen(pattern string, u *store.User) (bool, error) {
	switch routes[pattern] {
	case Public, Account, Scoped:
		return true, nil
	}
	if InstallationWide(u) {
		return true, nil
	}
	all, err := p.Dir.Schools()
	if err != nil {
		return false, err
	}
	return len(all) == 1, nil
}
