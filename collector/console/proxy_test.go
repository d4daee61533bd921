package console

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
)

// behindProxies serves e's store through a console that trusts ranges as
// reverse proxies. The test's requests come from 127.0.0.1.
func behindProxies(t *testing.T, e *env, ranges string) {
	t.Helper()
	p, err := ParseTrustedProxies(ranges)
	if err != nil {
		t.Fatal(err)
	}
	srv, err := New(Config{Store: e.st, EvidenceKey: e.key, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: e.clock,
		Connected: func(string) bool { return false }, Proxies: p})
	if err != nil {
		t.Fatal(err)
	}
	e.http.Close()
	e.srv, e.http = srv, httptest.NewServer(p.HSTS(srv.Handler()))
}

func signIn(c *client, password string, hdr map[string]string) *http.Response {
	c.t.Helper()
	resp := c.req("POST", "/api/v1/session", map[string]string{"username": "dsl", "password": password}, hdr)
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp
}

func sessionCookie(resp *http.Response) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == CookieName {
			return c
		}
	}
	return nil
}

// TestForwardedHeadersIgnoredFromUntrustedPeer: a client that writes
// X-Forwarded-For itself cannot escape the sign-in limit by rotating it,
// and X-Forwarded-Proto from it neither marks cookies Secure nor sends HSTS.
func TestForwardedHeadersIgnoredFromUntrustedPeer(t *testing.T) {
	e := newEnv(t)
	e.user("dsl", RoleDSL, false, "")
	behindProxies(t, e, "10.0.0.0/8") // the test's 127.0.0.1 is not a proxy
	for i := 0; i < 5; i++ {
		resp := signIn(e.anon(), "wrong password", map[string]string{"X-Forwarded-For": "198.51.100." + string(rune('1'+i))})
		if resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, resp.StatusCode)
		}
	}
	resp := signIn(e.anon(), testPassword, map[string]string{"X-Forwarded-For": "198.51.100.99", "X-Forwarded-Proto": "https"})
	if resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("after 5 guesses with rotated X-Forwarded-For from an untrusted peer: %d, want 429", resp.StatusCode)
	}
	e.srv.auth.ResetLimit("dsl|127.0.0.1")
	resp = signIn(e.anon(), testPassword, map[string]string{"X-Forwarded-Proto": "https"})
	c := sessionCookie(resp)
	if resp.StatusCode != 200 || c == nil {
		t.Fatalf("sign-in: %d, cookie %v", resp.StatusCode, c)
	}
	if c.Secure {
		t.Error("X-Forwarded-Proto: https from an untrusted peer marked the cookie Secure")
	}
	if h := resp.Header.Get("Strict-Transport-Security"); h != "" {
		t.Errorf("HSTS sent over plain HTTP on an untrusted peer's say-so: %q", h)
	}
}

// TestForwardedHeadersHonouredFromTrustedProxy: behind a trusted proxy each
// browser is limited by its own address (the proxy's is shared by all),
// entries a client prepends to X-Forwarded-For do not change who it is, and
// the proxy's X-Forwarded-Proto: https gives Secure cookies and HSTS.
func TestForwardedHeadersHonouredFromTrustedProxy(t *testing.T) {
	e := newEnv(t)
	e.user("dsl", RoleDSL, false, "")
	behindProxies(t, e, "127.0.0.1/32, 10.1.0.0/16")
	for i := 0; i < 5; i++ {
		// The attacker rotates a prefix; the proxies append what they saw.
		xff := "192.0.2." + string(rune('1'+i)) + ", 203.0.113.5, 10.1.2.3"
		if resp := signIn(e.anon(), "wrong password", map[string]string{"X-Forwarded-For": xff}); resp.StatusCode != http.StatusUnauthorized {
			t.Fatalf("guess %d: %d", i, resp.StatusCode)
		}
	}
	if resp := signIn(e.anon(), testPassword, map[string]string{"X-Forwarded-For": "9.9.9.9, 203.0.113.5"}); resp.StatusCode != http.StatusTooManyRequests {
		t.Fatalf("the guessing browser 203.0.113.5 with a new spoofed prefix: %d, want 429", resp.StatusCode)
	}
	resp := signIn(e.anon(), testPassword, map[string]string{"X-Forwarded-For": "203.0.113.6", "X-Forwarded-Proto": "https"})
	if resp.StatusCode != 200 {
		t.Fatalf("another browser behind the same proxy: %d, want 200 (its own limit)", resp.StatusCode)
	}
	c := sessionCookie(resp)
	if c == nil || !c.Secure || !c.HttpOnly || c.SameSite != http.SameSiteStrictMode {
		t.Errorf("session cookie behind a trusted https proxy: %+v, want Secure HttpOnly SameSite=Strict", c)
	}
	if h := resp.Header.Get("Strict-Transport-Security"); h != "max-age=31536000" {
		t.Errorf("HSTS behind a trusted https proxy: %q", h)
	}
	resp = signIn(e.anon(), testPassword, map[string]string{"X-Forwarded-For": "203.0.113.7", "X-Forwarded-Proto": "http"})
	if c := sessionCookie(resp); resp.StatusCode != 200 || c == nil || c.Secure {
		t.Errorf("proxy saying http: %d cookie %+v, want a cookie without Secure", resp.StatusCode, c)
	}
}

func TestClientIP(t *testing.T) {
	p, err := ParseTrustedProxies("10.0.0.0/8,192.168.1.10,fd00::/8")
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ peer, xff, want string }{
		{"203.0.113.1:5000", "1.2.3.4", "203.0.113.1"},        // untrusted peer: header ignored
		{"10.0.0.1:5000", "", "10.0.0.1"},                     // trusted, nothing forwarded
		{"10.0.0.1:5000", "1.2.3.4", "1.2.3.4"},               // one proxy
		{"10.0.0.1:5000", "6.6.6.6, 1.2.3.4", "1.2.3.4"},      // client-written prefix ignored
		{"10.0.0.1:5000", "1.2.3.4, 192.168.1.10", "1.2.3.4"}, // two proxies
		{"10.0.0.1:5000", "garbage, 10.0.0.7", "10.0.0.7"},    // unreadable: last known hop
		{"10.0.0.1:5000", "1.2.3.4:999", "1.2.3.4"},           // with a port
		{"[fd00::1]:5000", "[2001:db8::5]:80", "2001:db8::5"}, // IPv6
		{"[::ffff:10.0.0.1]:5000", "1.2.3.4", "1.2.3.4"},      // v4-mapped peer
		{"192.168.1.11:5000", "1.2.3.4", "192.168.1.11"},      // a bare address is a /32
	} {
		r := httptest.NewRequest("GET", "/", nil)
		r.RemoteAddr = tc.peer
		if tc.xff != "" {
			r.Header.Set("X-Forwarded-For", tc.xff)
		}
		if got := p.ClientIP(r); got != tc.want {
			t.Errorf("peer %s X-Forwarded-For %q: %s, want %s", tc.peer, tc.xff, got, tc.want)
		}
	}
	for _, bad := range []string{"10.0.0.0/33", "example.com", "10.0.0"} {
		if _, err := ParseTrustedProxies(bad); err == nil || !strings.Contains(err.Error(), "not an address") {
			t.Errorf("ParseTrustedProxies(%q): %v", bad, err)
		}
	}
}
