package tenancy

import (
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestPolicy: over a real store, a school account sees its school's
// devices only, records naming no school are the default school's, admin
// accounts and the operator are installation-wide, and installation-wide
// routes close to school accounts once a second school exists.
func TestPolicy(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p := &Policy{Dir: st}
	ash := &store.User{Username: "ashdsl", Role: auth.RoleDSL}
	oak := &store.User{Username: "oakdsl", Role: auth.RoleDSL, School: "oak"}
	admin := &store.User{Username: "admin", Role: auth.RoleAdmin}

	const route = "GET /api/v1/licences"
	if open, err := p.RouteOpen(route, ash); err != nil || !open {
		t.Errorf("a trust of one: installation routes stay open to its accounts: %v %v", open, err)
	}
	if open, _ := p.RouteOpen("GET /api/v1/never-classified", ash); !open {
		t.Error("a trust of one: an unclassified route is open as before")
	}
	if _, err := st.AddSchool(store.School{ID: "oak", Name: "Oak"}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutDevice(store.Device{DeviceID: "d-ash"}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutDevice(store.Device{DeviceID: "d-oak", School: "oak"}); err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		u    *store.User
		dev  string
		want bool
	}{
		{ash, "d-ash", true}, {ash, "d-oak", false}, {ash, "d-unknown", true},
		{oak, "d-oak", true}, {oak, "d-ash", false}, {oak, "d-unknown", false},
		{admin, "d-oak", true}, {admin, "d-ash", true}, {nil, "d-oak", true},
	} {
		name := "operator"
		if c.u != nil {
			name = c.u.Username
		}
		if got := p.SeesDevice(c.u, c.dev); got != c.want {
			t.Errorf("%s sees %s: %v, want %v", name, c.dev, got, c.want)
		}
	}
	lead := &store.User{Username: "lead", Role: auth.RoleDSL, Granted: []string{"oak"}}
	techGranted := &store.User{Username: "t", Role: auth.RoleTechnician, Granted: []string{"oak"}}
	govGranted := &store.User{Username: "g", Role: auth.RoleGovernor, Granted: []string{"oak"}}
	chairGranted := &store.User{Username: "c", Role: auth.RoleGovernor, Chair: true, Granted: []string{"oak"}}
	headGranted := &store.User{Username: "h", Role: auth.RoleHeadteacher, Granted: []string{"oak"}}
	for _, u := range []*store.User{lead, techGranted, govGranted} {
		if !p.SeesDevice(u, "d-oak") || !p.SeesDevice(u, "d-ash") || TrustRole(u) == "" {
			t.Errorf("%s (%s): a trust role's grant counts", u.Username, u.Role)
		}
	}
	// A chair and a headteacher review their own school's staff and
	// head: a grant (written before a role change) never counts for them.
	for _, u := range []*store.User{chairGranted, headGranted} {
		if p.SeesDevice(u, "d-oak") || TrustRole(u) != "" || MayGrant(u, "oak") == nil {
			t.Errorf("%s (%s): a grant counts", u.Username, u.Role)
		}
	}
	if MayGrant(lead, "") == nil || MayGrant(techGranted, "elm") != nil || MayGrant(govGranted, "elm") != nil || MayGrant(ash, "oak") != nil {
		t.Error("MayGrant")
	}
	if !SeesSchool(oak, "oak") || SeesSchool(oak, "") || !SeesSchool(ash, store.DefaultSchool) || !SeesSchool(admin, "oak") {
		t.Error("SeesSchool")
	}
	for _, c := range []struct {
		u       *store.User
		pattern string
		want    bool
	}{
		{ash, route, false}, {oak, route, false}, {admin, route, true},
		{oak, "GET /api/v1/never-classified", false}, {admin, "GET /api/v1/never-classified", true},
		{oak, "GET /api/v1/alerts", true}, {oak, "GET /api/v1/me", true},
	} {
		if open, err := p.RouteOpen(c.pattern, c.u); err != nil || open != c.want {
			t.Errorf("two schools: %s on %s: %v %v, want %v", c.u.Username, c.pattern, open, err, c.want)
		}
	}
}
