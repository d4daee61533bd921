package e2e

import (
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestUserLifecycleCLI: `vigil-collector user list|disable|enable|reset`
// over the admin socket of a running collector: a disabled account's
// browser session ends at once; a reset prints a password that signs in
// but must be changed first; the list shows last sign-in and state.
func TestUserLifecycleCLI(t *testing.T) {
	c := newCollector(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	os.WriteFile(pwFile, []byte("dsl1-correct-horse-battery\n"), 0o600)
	mustRun(t, "vigil-collector", "user", "add", "--data", c.data, "--username", "dsl1", "--role", "dsl",
		"--display-name", "Łucja Wiśniewska", "--password-file", pwFile)

	signIn := func(pw string) (*http.Client, int, map[string]any) {
		hc := c.https()
		hc.Jar, _ = cookiejar.New(nil)
		resp, err := hc.Post(c.url("/api/v1/session"), "application/json",
			strings.NewReader(`{"username":"dsl1","password":"`+pw+`"}`))
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var me map[string]any
		json.NewDecoder(resp.Body).Decode(&me)
		return hc, resp.StatusCode, me
	}
	status := func(hc *http.Client, path string) int {
		resp, err := hc.Get(c.url(path))
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	hc, code, _ := signIn("dsl1-correct-horse-battery")
	if code != 200 || status(hc, "/api/v1/alerts") != 200 {
		t.Fatalf("sign in: %d", code)
	}
	list := mustRun(t, "vigil-collector", "user", "list", "--data", c.data)
	if !strings.Contains(list, "Łucja Wiśniewska") || strings.Contains(lineOf(list, "dsl1"), "never") {
		t.Errorf("user list after a sign-in:\n%s", list)
	}
	if out := mustRun(t, "vigil-collector", "user", "disable", "--data", c.data, "--username", "dsl1"); !strings.Contains(out, "disabled") {
		t.Errorf("disable: %s", out)
	}
	if got := status(hc, "/api/v1/alerts"); got != 401 {
		t.Errorf("the disabled account's session answered %d, want 401", got)
	}
	if _, code, _ := signIn("dsl1-correct-horse-battery"); code != 401 {
		t.Errorf("disabled account signs in: %d", code)
	}
	if l := lineOf(mustRun(t, "vigil-collector", "user", "list", "--data", c.data), "dsl1"); !strings.Contains(l, "disabled by os:") {
		t.Errorf("list after disable: %s", l)
	}
	mustRun(t, "vigil-collector", "user", "enable", "--data", c.data, "--username", "dsl1")
	out := mustRun(t, "vigil-collector", "user", "reset", "--data", c.data, "--username", "dsl1")
	var temp string
	for _, l := range strings.Split(out, "\n") {
		if v, ok := strings.CutPrefix(l, "temporary password: "); ok {
			temp = strings.TrimSpace(v)
		}
	}
	if len(temp) != 16 {
		t.Fatalf("reset printed no temporary password:\n%s", out)
	}
	hc, code, me := signIn(temp)
	if code != 200 || me["must_change_password"] != true {
		t.Fatalf("sign in with the temporary password: %d %v", code, me)
	}
	if got := status(hc, "/api/v1/alerts"); got != 403 {
		t.Errorf("alerts before the forced change: %d", got)
	}
	if l := lineOf(mustRun(t, "vigil-collector", "user", "list", "--data", c.data), "dsl1"); !strings.Contains(l, "must change password") {
		t.Errorf("list after reset: %s", l)
	}
	if _, errOut, code := run(t, "vigil-collector", "user", "disable", "--data", c.data, "--username", "nosuch"); code == 0 || !strings.Contains(errOut, "no such account") {
		t.Errorf("disable unknown: %d %s", code, errOut)
	}
}

func lineOf(out, prefix string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.HasPrefix(l, prefix+" ") {
			return l
		}
	}
	return ""
}
