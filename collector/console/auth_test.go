package console

import (
	"encoding/json"
	"github.com/vigil-safeguarding/vigil/collector/auth"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestCSRF: state-changing requests need the session's token (and no
// foreign Origin); sign-in itself does not.
func TestCSRF(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	id := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_HIGH, "t", time.Now())
	c := e.login("dsl1")
	token := c.csrf
	path := "/api/v1/alerts/" + id + "/actions"
	body := map[string]string{"action": "note", "text": "n"}
	for name, hdr := range map[string]map[string]string{
		"no token":      {"X-CSRF-Token": ""},
		"wrong token":   {"X-CSRF-Token": token + "x"},
		"foreign site":  {"X-CSRF-Token": token, "Origin": "https://evil.example"},
		"other session": {"X-CSRF-Token": e.login("dsl1").csrf},
	} {
		c.csrf = ""
		resp := c.req("POST", path, body, hdr)
		resp.Body.Close()
		if resp.StatusCode != 403 {
			t.Errorf("%s: %d, want 403", name, resp.StatusCode)
		}
	}
	c.csrf = ""
	if resp := c.req("DELETE", "/api/v1/session", nil, nil); resp.StatusCode != 403 {
		t.Errorf("sign-out without token: %d", resp.StatusCode)
	}
	c.csrf = token
	resp := c.req("POST", path, body, map[string]string{"Origin": e.http.URL})
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Errorf("same-origin with token: %d", resp.StatusCode)
	}
	var d alertDetail
	c.getJSON("/api/v1/alerts/"+id, &d)
	if len(d.Review.Notes) != 1 {
		t.Errorf("refused requests changed state: %+v", d.Review.Notes)
	}
}

// TestLoginRateLimitCookieAndHeaders.
func TestLoginRateLimitCookieAndHeaders(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	e.user("dsl2", RoleDSL, false, "")
	t0 := time.Date(2026, 11, 23, 9, 0, 0, 0, time.UTC)
	e.setNow(t0)
	c := e.anon()
	// Unknown user and wrong password read the same.
	_, b1 := c.do("POST", "/api/v1/session", map[string]string{"username": "nobody", "password": "x"})
	code, b2 := c.do("POST", "/api/v1/session", map[string]string{"username": "dsl1", "password": "wrong"})
	if code != 401 || string(b1) != string(b2) {
		t.Errorf("unknown vs wrong: %s / %s", b1, b2)
	}
	for i := 0; i < 4; i++ {
		if code, _ := c.do("POST", "/api/v1/session", map[string]string{"username": "dsl1", "password": "wrong"}); code != 401 {
			t.Fatalf("failure %d: %d", i+2, code)
		}
	}
	// Five failures: now refused, even with the right password.
	resp := c.req("POST", "/api/v1/session", map[string]string{"username": "dsl1", "password": testPassword}, nil)
	resp.Body.Close()
	ra, _ := strconv.Atoi(resp.Header.Get("Retry-After"))
	if resp.StatusCode != 429 || ra <= 0 || ra > 900 {
		t.Fatalf("6th attempt: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	// Another account from the same address is not locked.
	if code, _ := c.do("POST", "/api/v1/session", map[string]string{"username": "dsl2", "password": testPassword}); code != 200 {
		t.Errorf("other user: %d", code)
	}
	e.setNow(t0.Add(15*time.Minute + time.Second))
	resp = c.req("POST", "/api/v1/session", map[string]string{"username": "dsl1", "password": testPassword}, nil)
	defer resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("after the window: %d", resp.StatusCode)
	}
	var ck *http.Cookie
	for _, x := range resp.Cookies() {
		if x.Name == CookieName {
			ck = x
		}
	}
	if ck == nil || !ck.HttpOnly || ck.SameSite != http.SameSiteStrictMode || ck.Path != "/" || ck.Secure || len(ck.Value) != 43 {
		t.Errorf("cookie: %+v", ck)
	}
	for k, v := range map[string]string{
		"Content-Security-Policy": "default-src 'self'; img-src 'self' blob:; frame-ancestors 'none'",
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	} {
		for _, p := range []string{"/api/v1/session", "/", "/api/v1/alerts", "/app.js", "/nosuch"} {
			r := c.req("GET", p, nil, nil)
			r.Body.Close()
			if r.Header.Get(k) != v {
				t.Errorf("%s %s: %q", p, k, r.Header.Get(k))
			}
		}
	}
	// The session token is stored only as a hash.
	if _, err := e.st.GetSession(ck.Value); err == nil {
		t.Error("session stored under the raw token")
	}
	if _, err := e.st.GetSession(auth.TokenHash(ck.Value)); err != nil {
		t.Errorf("session by hash: %v", err)
	}
}

// TestTOTP: a user with TOTP needs a current code, once.
func TestTOTP(t *testing.T) {
	// RFC 6238 appendix B, SHA1, T=59 → 94287082 (8 digits) → 287082.
	if code, _ := auth.TOTPCode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 59/30); code != "287082" {
		t.Fatalf("RFC 6238 vector: %s", code)
	}
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	u, _ := e.st.GetUser("dsl1")
	u.TOTPSecret = auth.NewTOTPSecret()
	e.st.PutUser(u)
	c := e.anon()
	code, b := c.do("POST", "/api/v1/session", map[string]string{"username": "dsl1", "password": testPassword})
	var m map[string]any
	json.Unmarshal(b, &m)
	if code != 401 || m["totp_required"] != true {
		t.Fatalf("no code: %d %s", code, b)
	}
	now := time.Now()
	e.setNow(now)
	good, _ := auth.TOTPCode(u.TOTPSecret, now.Unix()/30)
	bad := "000000"
	if bad == good {
		bad = "111111"
	}
	if code, _ := c.do("POST", "/api/v1/session", map[string]string{"username": "dsl1", "password": testPassword, "totp": bad}); code != 401 {
		t.Errorf("wrong code: %d", code)
	}
	if code, _ := c.do("POST", "/api/v1/session", map[string]string{"username": "dsl1", "password": testPassword, "totp": good}); code != 200 {
		t.Errorf("right code: %d", code)
	}
	if code, _ := c.do("POST", "/api/v1/session", map[string]string{"username": "dsl1", "password": testPassword, "totp": good}); code != 401 {
		t.Errorf("replayed code: %d", code)
	}
}

// TestStaticUI: the embedded UI at /, index.html for unknown non-API paths,
// JSON 404 for unknown API paths.
func TestStaticUI(t *testing.T) {
	e := newEnv(t)
	c := e.anon()
	index, err := webFS.ReadFile("web/index.html")
	if err != nil {
		t.Skip("the UI has no index.html yet")
	}
	for _, p := range []string{"/", "/alerts/x", "/index.html"} {
		code, b := c.do("GET", p, nil)
		if code != 200 || string(b) != string(index) {
			t.Errorf("%s: %d", p, code)
		}
	}
	code, b := c.do("GET", "/api/v1/nosuch", nil)
	if code != 404 || !strings.Contains(string(b), `"error"`) {
		t.Errorf("unknown API path: %d %s", code, b)
	}
}

// TestEnsureAdmin: the first start creates admin with a password file.
func TestEnsureAdmin(t *testing.T) {
	e := newEnv(t)
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	if err := auth.EnsureAdmin(e.st, e.dir, log); err != nil {
		t.Fatal(err)
	}
	path := filepath.Join(e.dir, InitialPasswordFile)
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("password file: %v %v", fi, err)
	}
	pw, _ := os.ReadFile(path)
	if len(strings.TrimSpace(string(pw))) != 20 {
		t.Errorf("password %q", pw)
	}
	c := e.anon()
	code, b := c.do("POST", "/api/v1/session", map[string]string{"username": "admin", "password": strings.TrimSpace(string(pw))})
	if code != 200 || !strings.Contains(string(b), `"role":"admin"`) {
		t.Fatalf("admin sign-in: %d %s", code, b)
	}
	os.Remove(path)
	if err := auth.EnsureAdmin(e.st, e.dir, log); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(path); err == nil {
		t.Error("second start made another admin")
	}
}
