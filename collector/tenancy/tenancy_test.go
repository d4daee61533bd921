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

// TestSeesAccessEntry: a school account reads the access-log entries about
// its school's devices (named or through the alert), whoever acted; not
// those about no device, nor about a device that no longer exists (a
// deleted school's), which the default school must not inherit.
func TestSeesAccessEntry(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	p := &Policy{Dir: st}
	// A trust of one reads its whole log, as before schools existed.
	sees, err := p.ReadsAccessLog(&store.User{Username: "head", Role: auth.RoleHeadteacher})
	if err != nil || !sees(store.AccessEntry{Action: "add-user", Who: "admin"}) {
		t.Errorf("a single school's headteacher does not read an entry about no device: %v", err)
	}
	if _, err := st.AddSchool(store.School{ID: "oak", Name: "Oak"}); err != nil {
		t.Fatal(err)
	}
	if sees, _ := p.ReadsAccessLog(&store.User{Username: "head", Role: auth.RoleHeadteacher}); sees(store.AccessEntry{Action: "add-user", Who: "admin"}) {
		t.Error("with two schools a school's headteacher reads an entry about no device")
	}
	for _, d := range []store.Device{{DeviceID: "d-ash"}, {DeviceID: "d-oak", School: "oak"}} {
		if err := st.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	ash := &store.User{Username: "ashhead", Role: auth.RoleHeadteacher}
	oak := &store.User{Username: "oakhead", Role: auth.RoleHeadteacher, School: "oak"}
	lead := &store.User{Username: "lead", Role: auth.RoleDSL, Granted: []string{"oak"}}
	admin := &store.User{Username: "admin", Role: auth.RoleAdmin}
	for _, c := range []struct {
		e                     store.AccessEntry
		ash, oak, lead, admin bool
	}{
		{store.AccessEntry{DeviceID: "d-oak", Who: "lead"}, false, true, true, true},
		{store.AccessEntry{AlertID: store.AlertID("d-oak", 3), Who: "oakdsl"}, false, true, true, true},
		{store.AccessEntry{DeviceID: "d-ash", Who: "ashdsl"}, true, false, true, true},
		{store.AccessEntry{Action: "add-school", Who: "cli", Detail: "school oak"}, false, false, false, true},
		{store.AccessEntry{DeviceID: "d-gone", Who: "cli"}, false, false, false, true},
	} {
		for u, want := range map[*store.User]bool{ash: c.ash, oak: c.oak, lead: c.lead, admin: c.admin} {
			if got := p.SeesAccessEntry(u, c.e); got != want {
				t.Errorf("%s reads %+v: %v, want %v", u.Username, c.e, got, want)
			}
		}
	}
}
