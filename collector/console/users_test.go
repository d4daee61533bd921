package console

import (
	"encoding/json"
	"errors"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/auth"
)

func loginWith(e *env, username, password string) (*client, int, meResponse) {
	c := e.anon()
	code, body := c.do("POST", "/api/v1/session", map[string]string{"username": username, "password": password})
	var me meResponse
	json.Unmarshal(body, &me)
	c.csrf = me.CSRFToken
	return c, code, me
}

func usersByName(t *testing.T, c *client) map[string]UserJSON {
	t.Helper()
	var list []UserJSON
	if code := c.getJSON("/api/v1/users", &list); code != 200 {
		t.Fatalf("GET /api/v1/users: %d", code)
	}
	m := map[string]UserJSON{}
	for _, u := range list {
		m[u.Username] = u
	}
	return m
}

// TestAccountDisableEndsSessions: a disabled account's open session is
// refused at once (and deleted), it cannot sign in, the list says who
// disabled it; enabled again it signs in. Nobody disables themselves or
// the last admin.
func TestAccountDisableEndsSessions(t *testing.T) {
	e := newEnv(t)
	e.user("admin1", RoleAdmin, false, "")
	e.user("dsl1", RoleDSL, false, "")
	admin := e.login("admin1")
	dsl := e.login("dsl1")
	if code := dsl.getJSON("/api/v1/alerts", nil); code != 200 {
		t.Fatalf("dsl before: %d", code)
	}
	u := usersByName(t, admin)["dsl1"]
	if u.LastSignIn == "" {
		t.Errorf("dsl1's last sign-in not recorded: %+v", u)
	}
	if code, b := admin.do("POST", "/api/v1/users/dsl1/disable", nil); code != 200 {
		t.Fatalf("disable: %d %s", code, b)
	}
	if code := dsl.getJSON("/api/v1/alerts", nil); code != 401 {
		t.Errorf("the disabled account's session answered %d, want 401", code)
	}
	if n, err := e.st.DeleteUserSessions("dsl1", ""); err != nil || n != 0 {
		t.Errorf("sessions of the disabled account left in the store: %d %v", n, err)
	}
	if _, code, _ := loginWith(e, "dsl1", testPassword); code != 401 {
		t.Errorf("disabled account signed in: %d", code)
	}
	u = usersByName(t, admin)["dsl1"]
	if !u.Disabled || u.DisabledBy != "admin1" || u.DisabledAt == "" {
		t.Errorf("list after disable: %+v", u)
	}
	if code, b := admin.do("POST", "/api/v1/users/admin1/disable", nil); code != 409 || !strings.Contains(string(b), "your own") {
		t.Errorf("disable self: %d %s", code, b)
	}
	e.user("admin2", RoleAdmin, false, "")
	a2 := e.login("admin2")
	if code, _ := a2.do("POST", "/api/v1/users/admin1/disable", nil); code != 200 {
		t.Errorf("admin2 disables admin1: %d", code)
	}
	e.user("admin3", RoleAdmin, false, "")
	a3 := e.login("admin3")
	if code, _ := a3.do("POST", "/api/v1/users/admin2/disable", nil); code != 200 {
		t.Errorf("admin3 disables admin2: %d", code)
	}
	// admin3 is the last enabled admin; a technician may not try at all.
	e.user("tech1", RoleTechnician, false, "")
	if code, _ := e.login("tech1").do("POST", "/api/v1/users/admin3/disable", nil); code != 403 {
		t.Errorf("technician disables an admin: %d", code)
	}
	if code, _ := a3.do("POST", "/api/v1/users/nosuch/disable", nil); code != 404 {
		t.Errorf("disable unknown: %d", code)
	}
	if code, _ := a3.do("POST", "/api/v1/users/admin1/enable", nil); code != 200 {
		t.Fatal("enable admin1")
	}
	if code, b := e.login("admin1").do("POST", "/api/v1/users/admin3/disable", nil); code != 200 {
		t.Errorf("admin1 disables admin3 (admin1 now enabled): %d %s", code, b)
	}
	if code, b := a3.do("POST", "/api/v1/users/dsl1/enable", nil); code != 401 {
		t.Errorf("disabled admin3 still acts: %d %s", code, b)
	}
	a1 := e.login("admin1")
	// Only admin1 is enabled now: it may not be disabled by anyone (here
	// checked through the service, as every entry point is).
	if _, err := a1.e.srv.auth.SetDisabled("admin socket", "admin1", true); !isConflict(err) {
		t.Errorf("disable the last admin: %v", err)
	}
	if code, _ := a1.do("POST", "/api/v1/users/dsl1/enable", nil); code != 200 {
		t.Fatal("enable dsl1")
	}
	if _, code, _ := loginWith(e, "dsl1", testPassword); code != 200 {
		t.Errorf("enabled account cannot sign in: %d", code)
	}
}

func isConflict(err error) bool {
	var c *auth.ConflictError
	return errors.As(err, &c)
}

// TestPasswordResetForcesChange: an admin's reset ends the account's
// sessions; the generated password signs in, but only the password change
// is open until it is done; the change needs the current password.
func TestPasswordResetForcesChange(t *testing.T) {
	e := newEnv(t)
	e.user("admin1", RoleAdmin, false, "")
	e.user("dsl1", RoleDSL, false, "")
	admin := e.login("admin1")
	old := e.login("dsl1")
	code, b := admin.do("POST", "/api/v1/users/dsl1/reset", map[string]string{})
	if code != 200 {
		t.Fatalf("reset: %d %s", code, b)
	}
	var res UserResetResponse
	json.Unmarshal(b, &res)
	if len(res.TemporaryPassword) != 16 || !res.User.MustChangePassword {
		t.Fatalf("reset answer: %s", b)
	}
	if code := old.getJSON("/api/v1/me", nil); code != 401 {
		t.Errorf("session from before the reset: %d", code)
	}
	if _, code, _ := loginWith(e, "dsl1", testPassword); code != 401 {
		t.Errorf("old password after reset: %d", code)
	}
	c, code, me := loginWith(e, "dsl1", res.TemporaryPassword)
	if code != 200 || !me.MustChangePassword {
		t.Fatalf("sign in with the temporary password: %d %+v", code, me)
	}
	code, b = c.do("GET", "/api/v1/alerts", nil)
	if code != 403 || !strings.Contains(string(b), `"password_change_required":true`) {
		t.Errorf("alerts before the change: %d %s", code, b)
	}
	if code := c.getJSON("/api/v1/me", nil); code != 200 {
		t.Errorf("me before the change: %d", code)
	}
	for _, bad := range []PasswordChangeRequest{
		{Current: "wrong-password-1", New: "a-good-new-password"},
		{Current: res.TemporaryPassword, New: "short"},
		{Current: res.TemporaryPassword, New: res.TemporaryPassword},
	} {
		if code, b := c.do("POST", "/api/v1/me/password", bad); code != 400 {
			t.Errorf("change %+v: %d %s", bad, code, b)
		}
	}
	if code, b := c.do("POST", "/api/v1/me/password", PasswordChangeRequest{Current: res.TemporaryPassword, New: "a-good-new-password"}); code != 200 {
		t.Fatalf("change: %d %s", code, b)
	}
	if code := c.getJSON("/api/v1/alerts", nil); code != 200 {
		t.Errorf("alerts after the change: %d", code)
	}
	if _, code, me := loginWith(e, "dsl1", "a-good-new-password"); code != 200 || me.MustChangePassword {
		t.Errorf("sign in with the new password: %d %+v", code, me)
	}
	// An admin may set the password instead of having one generated.
	code, b = admin.do("POST", "/api/v1/users/dsl1/reset", UserResetRequest{Password: "typed-by-the-admin"})
	res = UserResetResponse{}
	json.Unmarshal(b, &res)
	if code != 200 || res.TemporaryPassword != "" {
		t.Errorf("reset with a given password: %d %s", code, b)
	}
	if code, _ := admin.do("POST", "/api/v1/users/dsl1/reset", UserResetRequest{Password: "short"}); code != 400 {
		t.Errorf("reset to a weak password: %d", code)
	}
	// Changing your own password ends your other sessions, not this one.
	c1, _, _ := loginWith(e, "dsl1", "typed-by-the-admin")
	c2, _, _ := loginWith(e, "dsl1", "typed-by-the-admin")
	if code, b := c1.do("POST", "/api/v1/me/password", PasswordChangeRequest{Current: "typed-by-the-admin", New: "mine-and-only-mine"}); code != 200 {
		t.Fatalf("change: %d %s", code, b)
	}
	if code := c1.getJSON("/api/v1/alerts", nil); code != 200 {
		t.Errorf("the changing session: %d", code)
	}
	if code := c2.getJSON("/api/v1/me", nil); code != 401 {
		t.Errorf("the other session after a change: %d", code)
	}
}

// TestFirstAdminForcedChangeRemovesFile: the first start's admin must
// change the initial password, and the change removes the file; a file
// left by an older collector is adopted (its password still works: change
// forced) or removed (it no longer works).
func TestFirstAdminForcedChangeRemovesFile(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, InitialPasswordFile)
	srv, err := New(Config{Store: e.st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), InitialPasswordFile: path})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.http.Config.Handler = srv.Handler()
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := auth.EnsureAdmin(e.st, e.dir, log); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(path)
	pw := strings.TrimSpace(string(b))
	c, code, me := loginWith(e, "admin", pw)
	if code != 200 || !me.MustChangePassword {
		t.Fatalf("first admin: %d %+v", code, me)
	}
	if code := c.getJSON("/api/v1/users", nil); code != 403 {
		t.Errorf("users before the change: %d", code)
	}
	if code, b := c.do("POST", "/api/v1/me/password", PasswordChangeRequest{Current: pw, New: "the-school-admin-pw"}); code != 200 {
		t.Fatalf("change: %d %s", code, b)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("initial password file after the change: %v", err)
	}
	if code := c.getJSON("/api/v1/users", nil); code != 200 {
		t.Errorf("users after the change: %d", code)
	}

	// Upgrade from a collector that never forced the change: the file
	// still holds the working password.
	u, _ := e.st.GetUser("admin")
	u.MustChangePassword, u.InitialAdmin = false, false
	u.PasswordHash, _ = auth.HashPassword("left-on-disk-pw")
	e.st.PutUser(u)
	os.WriteFile(path, []byte("left-on-disk-pw\n"), 0o600)
	if err := auth.EnsureAdmin(e.st, e.dir, log); err != nil {
		t.Fatal(err)
	}
	if u, _ := e.st.GetUser("admin"); !u.MustChangePassword || !u.InitialAdmin {
		t.Errorf("a working initial password file did not force a change: %+v", u)
	}
	if _, err := os.Stat(path); err != nil {
		t.Errorf("file removed before the change: %v", err)
	}
	// ...and one whose password no longer works is removed at start.
	os.WriteFile(path, []byte("not-the-password-now\n"), 0o600)
	u, _ = e.st.GetUser("admin")
	u.InitialAdmin = false
	e.st.PutUser(u)
	if err := auth.EnsureAdmin(e.st, e.dir, log); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("stale initial password file kept: %v", err)
	}
}

// TestHumanWait: the sign-in limit says minutes, not "882 seconds".
func TestHumanWait(t *testing.T) {
	for d, want := range map[time.Duration]string{
		882 * time.Second: "15 minutes", 15 * time.Minute: "15 minutes", 61 * time.Second: "2 minutes",
		60 * time.Second: "1 minute", 40 * time.Second: "40 seconds", 300 * time.Millisecond: "1 second",
	} {
		if got := auth.HumanWait(d); got != want {
			t.Errorf("HumanWait(%v) = %q, want %q", d, got, want)
		}
	}
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	for range 5 {
		loginWith(e, "dsl1", "wrong-password!")
	}
	c := e.anon()
	code, b := c.do("POST", "/api/v1/session", map[string]string{"username": "dsl1", "password": "wrong-password!"})
	if code != 429 || !strings.Contains(string(b), "try again in 15 minutes") {
		t.Errorf("limited sign-in: %d %s", code, b)
	}
}
