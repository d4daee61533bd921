package console

// The console's side of schools as tenants: which school an account is
// created in, and the glue to collector/tenancy, where the policy lives.

import (
	"errors"
	"fmt"
	"net/http"
	"slices"

	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
)

// tenancyPolicy is the school policy over the console's store.
func (s *Server) tenancyPolicy() *tenancy.Policy {
	if s.tenants == nil {
		s.tenants = &tenancy.Policy{Dir: s.st}
	}
	return s.tenants
}

// accountSchool resolves the school a new account is for: "" for the
// default school (records that name none belong to it). Admin accounts
// administer the installation and belong to no school: trust-level roles
// are not built yet, so a school-bound admin would be a role without a
// meaning.
func (s *Server) accountSchool(role, school string) (string, error) {
	sc, err := s.st.FindSchool(school)
	if errors.Is(err, store.ErrNotFound) {
		return "", err
	}
	if err != nil {
		return "", fmt.Errorf("find school %q: %w", school, err)
	}
	if role == RoleAdmin && sc.ID != store.DefaultSchool {
		return "", fmt.Errorf("admin accounts administer the whole installation; give --school only to dsl, headteacher, technician and governor accounts")
	}
	if sc.ID == store.DefaultSchool {
		return "", nil
	}
	return sc.ID, nil
}

// seesDevice is tenancy's answer for u and a device.
func (s *Server) seesDevice(u *store.User, device string) bool {
	return s.tenancyPolicy().SeesDevice(u, device)
}

// schoolSnapshot keeps of a report snapshot what u's school owns: its
// alerts, its devices, and the exclusions proposed on its alerts. The
// governors' report is a school's aggregates; the monitoring report then
// narrows the alerts further by routing (visible).
func (s *Server) schoolSnapshot(u *store.User, snap *reports.Snapshot) {
	if tenancy.InstallationWide(u) {
		return
	}
	alerts := snap.Alerts[:0]
	for _, a := range snap.Alerts {
		if s.seesDevice(u, a.Finding.GetDeviceId()) {
			alerts = append(alerts, a)
		}
	}
	snap.Alerts = alerts
	devs := snap.Devices[:0]
	for _, d := range snap.Devices {
		if s.seesDevice(u, d.Device.DeviceID) {
			devs = append(devs, d)
		}
	}
	snap.Devices = devs
	excl := snap.Exclusions[:0]
	for _, x := range snap.Exclusions {
		if tenancy.SeesExclusion(u, x) {
			excl = append(excl, x)
		}
	}
	snap.Exclusions = excl
}

// seesToken: a token (and the package that carries it) is its school's.
func (s *Server) seesToken(u *store.User, t tokens.Info) bool {
	return tenancy.SeesSchool(u, t.School)
}

// requestSchool is the school a request of u's is for (the school a
// package enrolls into, the school an audit covers): a school account's
// own (asking for another school is answered as for a school
// that does not exist); an installation-wide account may name any.
func (s *Server) requestSchool(u *store.User, asked string) (string, error) {
	sc, err := s.st.FindSchool(asked)
	if err != nil {
		return "", err
	}
	if asked == "" && !tenancy.InstallationWide(u) {
		return tenancy.SchoolOf(u), nil
	}
	if !tenancy.SeesSchool(u, sc.ID) {
		return "", fmt.Errorf("%w: no school %q", store.ErrNotFound, asked)
	}
	return sc.ID, nil
}

// routeMux is the console's ServeMux, remembering each pattern it is
// given: the tenant isolation test enumerates them, so a route added
// without a school decision (collector/tenancy.Routes) fails it.
type routeMux struct {
	*http.ServeMux
	patterns []string
}

func (m *routeMux) Handle(pattern string, h http.Handler) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.Handle(pattern, h)
}

func (m *routeMux) HandleFunc(pattern string, h func(http.ResponseWriter, *http.Request)) {
	m.patterns = append(m.patterns, pattern)
	m.ServeMux.HandleFunc(pattern, h)
}

// GrantRequest is the body of POST /v1/users/{username}/grant and
// .../ungrant on the admin socket.
type GrantRequest struct {
	School string `json:"school"`
	Reason string `json:"reason"`
}

// grantSchool gives a DSL account (a trust safeguarding lead) sight of a
// further school, or takes it away, recorded in the access log.
func (s *Server) grantSchool(w http.ResponseWriter, r *http.Request, by string, grant bool) {
	var req GrantRequest
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	req.Reason = cleanText(req.Reason, 500)
	if req.Reason == "" {
		jsonError(w, http.StatusBadRequest, "say why (--reason): it goes in the access log")
		return
	}
	sc, err := s.st.FindSchool(req.School)
	if errors.Is(err, store.ErrNotFound) {
		jsonError(w, http.StatusNotFound, "%v", err)
		return
	}
	if err != nil {
		s.internal(w, "find school", err)
		return
	}
	cur, err := s.st.GetUser(r.PathValue("username"))
	if errors.Is(err, store.ErrNotFound) {
		jsonError(w, http.StatusNotFound, "no such user")
		return
	}
	if err != nil {
		s.internal(w, "find the account", err)
		return
	}
	if grant {
		if err := tenancy.MayGrant(&cur, sc.ID); err != nil {
			jsonError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	action := "grant-school"
	if !grant {
		action = "revoke-school-grant"
	}
	// Logged first: a grant the log does not show must not exist, while
	// an entry for a change that then failed only over-reports.
	if err := s.st.LogAccess(store.AccessEntry{Time: s.now().UTC(), Who: by, Action: action, Reason: req.Reason,
		Detail: "account " + cur.Username + ", school " + sc.ID}); err != nil {
		s.internal(w, "write access log", err)
		return
	}
	u, err := s.st.UpdateUser(cur.Username, func(u *store.User) error {
		u.Granted = slices.DeleteFunc(u.Granted, func(x string) bool { return x == sc.ID })
		if grant {
			u.Granted = append(u.Granted, sc.ID)
		}
		return nil
	})
	if err != nil {
		s.internal(w, "change the account's schools", err)
		return
	}
	s.log.Info("console: school grant changed", "action", action, "account", u.Username, "school", sc.ID, "by", by)
	writeJSON(w, http.StatusOK, userJSON(u))
}
