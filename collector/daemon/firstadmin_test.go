package daemon_test

import (
	"crypto/tls"
	"encoding/json"
	"errors"
	"io/fs"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/console"
	"github.com/vigil-safeguarding/vigil/collector/daemon"
)

// signInFirstAdmin signs in as the admin the first start created, with the
// password from DATA/initial-admin-password, meets the forced change (the
// console refuses everything else), sets a new password, and checks the
// file is gone (issue 10 item 4). hc keeps the session.
func signInFirstAdmin(t *testing.T, c *collector, hc *http.Client) {
	t.Helper()
	path := filepath.Join(c.dir, console.InitialPasswordFile)
	pw, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	resp := c.do(t, hc, "POST", "/api/v1/session", `{"username":"admin","password":"`+strings.TrimSpace(string(pw))+`"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	var me struct {
		CSRF       string `json:"csrf_token"`
		MustChange bool   `json:"must_change_password"`
	}
	decodeJSON(t, resp, &me)
	if !me.MustChange {
		t.Fatal("the first admin is not asked to change the initial password")
	}
	resp = c.do(t, hc, "GET", "/api/v1/users", "")
	var refusal map[string]any
	json.NewDecoder(resp.Body).Decode(&refusal)
	if resp.StatusCode != 403 || refusal["password_change_required"] != true {
		t.Fatalf("before the change GET /api/v1/users answered %d %v, want 403 password_change_required", resp.StatusCode, refusal)
	}
	req, _ := http.NewRequest("POST", "https://"+c.httpAddr+"/api/v1/me/password",
		strings.NewReader(`{"current_password":"`+strings.TrimSpace(string(pw))+`","new_password":"a-new-admin-password-2026"}`))
	req.Header.Set("Content-Type", "application/json")
	req.Header.Set("X-CSRF-Token", me.CSRF)
	r2, err := hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	r2.Body.Close()
	if r2.StatusCode != 200 {
		t.Fatalf("change password: %d", r2.StatusCode)
	}
	if _, err := os.Stat(path); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("%s still there after the first admin chose a password: %v", path, err)
	}
}

// TestFirstAdminChangesInitialPassword: through the daemon's wiring (the
// data dir the file is in), the change removes the file, and the new
// password then signs in.
func TestFirstAdminChangesInitialPassword(t *testing.T) {
	c := startCollector(t, daemon.Config{})
	cfg, err := c.consoleTLS()
	if err != nil {
		t.Fatal(err)
	}
	hc := newJarClient(cfg)
	signInFirstAdmin(t, c, hc)
	if resp := c.do(t, hc, "GET", "/api/v1/users", ""); resp.StatusCode != 200 {
		t.Errorf("after the change GET /api/v1/users: %d", resp.StatusCode)
	}
	hc2 := newJarClient(cfg)
	if resp := c.do(t, hc2, "POST", "/api/v1/session", `{"username":"admin","password":"a-new-admin-password-2026"}`); resp.StatusCode != 200 {
		t.Errorf("sign in with the new password: %d", resp.StatusCode)
	}
}

func newJarClient(cfg *tls.Config) *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
}
