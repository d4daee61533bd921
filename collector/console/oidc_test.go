package console

// OIDC sign-in against an in-process identity provider: a test double for
// Google Workspace / Microsoft Entra ID (which cannot run here) that speaks
// the same protocol: discovery, JWKS, the authorization endpoint and the
// token endpoint with client authentication and PKCE (S256). Its ID tokens
// are signed RS256 here with crypto/rsa (not with go-jose, which go-oidc
// verifies with), so signing and verification are independent code. The
// console is the real handler over a real store; the browser is an
// http.Client with a cookie jar following redirects.

import (
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"github.com/vigil-safeguarding/vigil/collector/auth"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"
)

const (
	idpClientID     = "vigil-test-client"
	idpClientSecret = "idp-client-secret-for-tests"
)

// testIdP is a minimal OpenID provider.
type testIdP struct {
	t        *testing.T
	srv      *httptest.Server
	key      *rsa.PrivateKey
	redirect string // the registered redirect URI

	mu sync.Mutex
	// Who signs in at /authorize and how the ID token is altered.
	email    string
	verified any // email_verified claim; nil leaves it out
	mutate   func(claims map[string]any)
	signKey  *rsa.PrivateKey // nil: key (published in the JWKS)
	deny     bool            // /authorize answers error=access_denied
	codes    map[string]idpCode
	lastAuth url.Values // the last /authorize query
	tokenErr string     // the last /token refusal
}

type idpCode struct {
	nonce, challenge, redirect string
}

func newTestIdP(t *testing.T) *testIdP {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	p := &testIdP{t: t, key: key, codes: map[string]idpCode{}, verified: true}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /.well-known/openid-configuration", p.discovery)
	mux.HandleFunc("GET /jwks", p.jwks)
	mux.HandleFunc("GET /authorize", p.authorize)
	mux.HandleFunc("POST /token", p.token)
	p.srv = httptest.NewServer(mux)
	t.Cleanup(p.srv.Close)
	return p
}

func (p *testIdP) issuer() string { return p.srv.URL }

func (p *testIdP) set(f func(p *testIdP)) {
	p.mu.Lock()
	defer p.mu.Unlock()
	f(p)
}

func (p *testIdP) discovery(w http.ResponseWriter, r *http.Request) {
	writeJSON(w, 200, map[string]any{
		"issuer":                                p.issuer(),
		"authorization_endpoint":                p.issuer() + "/authorize",
		"token_endpoint":                        p.issuer() + "/token",
		"jwks_uri":                              p.issuer() + "/jwks",
		"response_types_supported":              []string{"code"},
		"subject_types_supported":               []string{"public"},
		"id_token_signing_alg_values_supported": []string{"RS256"},
		"code_challenge_methods_supported":      []string{"S256"},
		"token_endpoint_auth_methods_supported": []string{"client_secret_basic", "client_secret_post"},
	})
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

func (p *testIdP) jwks(w http.ResponseWriter, r *http.Request) {
	pub := p.key.PublicKey
	writeJSON(w, 200, map[string]any{"keys": []map[string]string{{
		"kty": "RSA", "use": "sig", "alg": "RS256", "kid": "k1",
		"n": b64(pub.N.Bytes()), "e": b64(big.NewInt(int64(pub.E)).Bytes()),
	}}})
}

// authorize "signs the user in" at once and sends the browser back with a
// code remembered with the nonce and the PKCE challenge.
func (p *testIdP) authorize(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.lastAuth = q
	if q.Get("client_id") != idpClientID || q.Get("redirect_uri") != p.redirect {
		http.Error(w, "unknown client or redirect_uri", 400) // never redirect to an unregistered URI
		return
	}
	back, _ := url.Parse(p.redirect)
	v := url.Values{"state": {q.Get("state")}}
	switch {
	case p.deny:
		v.Set("error", "access_denied")
	case q.Get("response_type") != "code" || !strings.Contains(" "+q.Get("scope")+" ", " openid ") ||
		q.Get("code_challenge_method") != "S256" || q.Get("code_challenge") == "":
		v.Set("error", "invalid_request")
	default:
		code := randomToken()
		p.codes[code] = idpCode{nonce: q.Get("nonce"), challenge: q.Get("code_challenge"), redirect: q.Get("redirect_uri")}
		v.Set("code", code)
	}
	back.RawQuery = v.Encode()
	http.Redirect(w, r, back.String(), http.StatusFound)
}

func (p *testIdP) tokenError(w http.ResponseWriter, code, why string) {
	p.tokenErr = code + ": " + why
	writeJSON(w, 400, map[string]string{"error": code, "error_description": why})
}

// token checks the client, the code and the PKCE verifier, then issues an
// ID token.
func (p *testIdP) token(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if err := r.ParseForm(); err != nil {
		p.tokenError(w, "invalid_request", err.Error())
		return
	}
	id, secret, ok := r.BasicAuth()
	if ok {
		id, _ = url.QueryUnescape(id)
		secret, _ = url.QueryUnescape(secret)
	} else {
		id, secret = r.PostForm.Get("client_id"), r.PostForm.Get("client_secret")
	}
	if id != idpClientID || secret != idpClientSecret {
		writeJSON(w, 401, map[string]string{"error": "invalid_client"})
		return
	}
	if r.PostForm.Get("grant_type") != "authorization_code" {
		p.tokenError(w, "unsupported_grant_type", r.PostForm.Get("grant_type"))
		return
	}
	c, ok := p.codes[r.PostForm.Get("code")]
	if !ok {
		p.tokenError(w, "invalid_grant", "unknown or used code")
		return
	}
	delete(p.codes, r.PostForm.Get("code")) // one use
	if r.PostForm.Get("redirect_uri") != c.redirect {
		p.tokenError(w, "invalid_grant", "redirect_uri differs")
		return
	}
	verifier := r.PostForm.Get("code_verifier")
	sum := sha256.Sum256([]byte(verifier))
	if verifier == "" || b64(sum[:]) != c.challenge {
		p.tokenError(w, "invalid_grant", "PKCE verifier missing or not matching the challenge")
		return
	}
	now := time.Now()
	claims := map[string]any{
		"iss": p.issuer(), "sub": "sub-" + p.email, "aud": idpClientID, "iat": now.Unix(), "exp": now.Add(5 * time.Minute).Unix(),
		"nonce": c.nonce, "email": p.email, "name": "Test Person",
	}
	if p.verified != nil {
		claims["email_verified"] = p.verified
	}
	if p.mutate != nil {
		p.mutate(claims)
	}
	key := p.key
	if p.signKey != nil {
		key = p.signKey
	}
	writeJSON(w, 200, map[string]any{"access_token": randomToken(), "token_type": "Bearer", "expires_in": 3600,
		"id_token": signRS256(p.t, key, "k1", claims)})
}

// signRS256 makes a compact JWS (RFC 7515) with RSASSA-PKCS1-v1_5 SHA-256.
func signRS256(t *testing.T, key *rsa.PrivateKey, kid string, claims map[string]any) string {
	hdr, _ := json.Marshal(map[string]string{"alg": "RS256", "typ": "JWT", "kid": kid})
	body, _ := json.Marshal(claims)
	input := b64(hdr) + "." + b64(body)
	sum := sha256.Sum256([]byte(input))
	sig, err := rsa.SignPKCS1v15(rand.Reader, key, crypto.SHA256, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	return input + "." + b64(sig)
}

// syncBuf collects the console's log.
type syncBuf struct {
	mu sync.Mutex
	b  strings.Builder
}

func (s *syncBuf) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

// take returns what was logged since the last call.
func (s *syncBuf) take() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := s.b.String()
	s.b.Reset()
	return out
}

// newOIDCEnv is newEnv with the console configured for the test IdP.
func newOIDCEnv(t *testing.T, mod func(*OIDCConfig)) (*env, *testIdP) {
	e, idp, _ := newOIDCEnvLog(t, mod)
	return e, idp
}

func newOIDCEnvLog(t *testing.T, mod func(*OIDCConfig)) (*env, *testIdP, *syncBuf) {
	t.Helper()
	e := newEnv(t)
	idp := newTestIdP(t)
	e.http.Close()
	ts := httptest.NewUnstartedServer(nil)
	cfg := OIDCConfig{Issuer: idp.issuer(), ClientID: idpClientID, ClientSecret: idpClientSecret,
		RedirectURL: "http://" + ts.Listener.Addr().String() + "/api/v1/oidc/callback", Name: "Test IdP"}
	if mod != nil {
		mod(&cfg)
	}
	idp.redirect = cfg.RedirectURL
	logs := &syncBuf{}
	srv, err := New(Config{Store: e.st, EvidenceKey: e.key, Logger: slog.New(slog.NewTextHandler(logs, nil)),
		Now: e.clock, Connected: func(string) bool { return false }, OIDC: &cfg})
	if err != nil {
		t.Fatal(err)
	}
	ts.Config.Handler = srv.Handler()
	ts.Start()
	e.srv, e.http = srv, ts // newEnv's cleanup closes e.http: now this one
	return e, idp, logs
}

// browser is a cookie-jar client that follows redirects and records where
// it was sent.
type browser struct {
	*client
	hops []string // Location of every redirect followed
	// rewrite, if set, may change a request before it is sent (to play an
	// attacker tampering with the callback).
	rewrite func(u *url.URL)
}

func (e *env) browser() *browser {
	jar, _ := cookiejar.New(nil)
	b := &browser{client: &client{t: e.t, e: e}}
	b.hc = &http.Client{Jar: jar, CheckRedirect: func(req *http.Request, via []*http.Request) error {
		b.hops = append(b.hops, req.Response.Header.Get("Location"))
		if b.rewrite != nil {
			b.rewrite(req.URL)
		}
		if len(via) > 10 {
			return http.ErrUseLastResponse
		}
		return nil
	}}
	return b
}

// signIn runs the whole flow from the login button and returns where the
// console finally sent the browser (the last redirect).
func (b *browser) signIn() string {
	b.t.Helper()
	b.hops = nil
	code, body := b.do("GET", "/api/v1/oidc/login", nil)
	if code != 200 || !strings.Contains(string(body), "<title>Vigil console</title>") {
		b.t.Fatalf("flow did not end on the console page: %d %.200s (hops %v)", code, body, b.hops)
	}
	if len(b.hops) == 0 {
		b.t.Fatal("no redirects")
	}
	return b.hops[len(b.hops)-1]
}

func (b *browser) me() (int, meResponse) {
	b.t.Helper()
	var me meResponse
	code := b.getJSON("/api/v1/me", &me)
	return code, me
}

func TestOIDCSignIn(t *testing.T) {
	e, idp := newOIDCEnv(t, nil)
	e.user("dsl", RoleDSL, false, "Dana.Lead@School.example")
	e.user("tech", RoleTechnician, false, "tech@school.example")

	var info map[string]any
	if code := e.anon().getJSON("/api/v1/oidc", &info); code != 200 || info["enabled"] != true || info["name"] != "Test IdP" {
		t.Fatalf("GET /api/v1/oidc: %d %v", code, info)
	}

	idp.set(func(p *testIdP) { p.email = "dana.lead@school.example" }) // case differs from the account
	b := e.browser()
	if got := b.signIn(); got != "/#/" {
		t.Fatalf("landed on %q, want /#/ (hops %v)", got, b.hops)
	}
	// The authorization request carried PKCE S256, a nonce and state.
	idp.mu.Lock()
	auth := idp.lastAuth
	idp.mu.Unlock()
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(auth.Get(k)) < 40 {
			t.Errorf("authorization request %s = %q: want a random value", k, auth.Get(k))
		}
	}
	if auth.Get("code_challenge_method") != "S256" || auth.Get("code_verifier") != "" || auth.Get("client_secret") != "" {
		t.Errorf("authorization request: %v", auth)
	}
	code, me := b.me()
	if code != 200 || me.Username != "dsl" || me.Role != RoleDSL || me.CSRFToken == "" {
		t.Fatalf("/me after OIDC sign-in: %d %+v", code, me)
	}
	// The session is a full one: CSRF-protected writes work and sign-out ends it.
	b.csrf = me.CSRFToken
	if code, _ := b.do("GET", "/api/v1/alerts", nil); code != 200 {
		t.Errorf("alerts: %d", code)
	}
	if code, body := b.do("DELETE", "/api/v1/session", nil); code != 204 {
		t.Errorf("sign out: %d %s", code, body)
	}
	if code, _ := b.me(); code != 401 {
		t.Errorf("/me after sign-out: %d", code)
	}
	// The flow cookie was used once and removed.
	u, _ := url.Parse(e.http.URL + "/api/v1/oidc/callback")
	for _, c := range b.hc.Jar.Cookies(u) {
		if c.Name == oidcCookie {
			t.Errorf("flow cookie left behind: %v", c)
		}
	}
	// The same IdP account cannot replay its code: the callback URL from the
	// IdP is single-use (the flow cookie is gone, and the code too).
	var callback string
	for _, h := range b.hops {
		if strings.Contains(h, "/api/v1/oidc/callback?") {
			callback = h
		}
	}
	b2 := e.browser()
	b2.hops = nil
	if code, _ := b2.do("GET", strings.TrimPrefix(callback, e.http.URL), nil); code != 200 || len(b2.hops) == 0 || b2.hops[0] != "/#/login?error=expired" {
		t.Errorf("replayed callback: %d %v", code, b2.hops)
	}
	if code, _ := b2.me(); code != 401 {
		t.Errorf("replayed callback made a session")
	}

	// A technician lands on the same start route; the app picks its page.
	idp.set(func(p *testIdP) { p.email = "tech@school.example" })
	b3 := e.browser()
	b3.signIn()
	if code, me := b3.me(); code != 200 || me.Username != "tech" {
		t.Errorf("technician: %d %+v", code, me)
	}
	if code, _ := b3.do("GET", "/api/v1/alerts", nil); code != 403 {
		t.Errorf("technician signed in by OIDC reads alerts: %d", code)
	}
}

// TestOIDCRefusals: each bad token or flow ends on the login page with a
// reason and no session.
func TestOIDCRefusals(t *testing.T) {
	e, idp, logs := newOIDCEnvLog(t, nil)
	e.user("dsl", RoleDSL, false, "dsl@school.example")
	e.user("gone", RoleDSL, false, "gone@school.example")
	gone, _ := e.st.GetUser("gone")
	gone.Disabled = true
	if err := e.st.PutUser(gone); err != nil {
		t.Fatal(err)
	}
	e.user("twin1", RoleDSL, false, "shared@school.example")
	e.user("twin2", RoleHeadteacher, false, "SHARED@school.example")
	other, _ := rsa.GenerateKey(rand.Reader, 2048)

	cases := []struct {
		name  string
		setup func(p *testIdP)
		want  string
		log   string // why, in the collector log
	}{
		{"wrong nonce", func(p *testIdP) { p.mutate = func(c map[string]any) { c["nonce"] = "not-the-nonce" } }, "failed", "nonce does not match"},
		{"no nonce", func(p *testIdP) { p.mutate = func(c map[string]any) { delete(c, "nonce") } }, "failed", "nonce does not match"},
		{"wrong audience", func(p *testIdP) { p.mutate = func(c map[string]any) { c["aud"] = "another-client" } }, "failed", "expected audience"},
		{"several audiences, no azp", func(p *testIdP) {
			p.mutate = func(c map[string]any) { c["aud"] = []string{idpClientID, "another-client"} }
		}, "failed", "azp"},
		{"wrong issuer", func(p *testIdP) { p.mutate = func(c map[string]any) { c["iss"] = "https://evil.example" } }, "failed", "different provider"},
		{"expired", func(p *testIdP) {
			p.mutate = func(c map[string]any) {
				c["iat"] = time.Now().Add(-time.Hour).Unix()
				c["exp"] = time.Now().Add(-time.Minute).Unix()
			}
		}, "failed", "token is expired"},
		{"signed by another key", func(p *testIdP) { p.signKey = other }, "failed", "verify signature"},
		{"email_verified false", func(p *testIdP) { p.verified = false }, "unverified", "no verified e-mail"},
		{"email_verified absent", func(p *testIdP) { p.verified = nil }, "unverified", "no verified e-mail"},
		{"unknown email", func(p *testIdP) { p.email = "stranger@school.example" }, "not-registered", "no account has this e-mail"},
		{"disabled account", func(p *testIdP) { p.email = "gone@school.example" }, "disabled", "account disabled"},
		{"two accounts share the email", func(p *testIdP) { p.email = "shared@school.example" }, "failed", "several accounts"},
		{"user cancels at the IdP", func(p *testIdP) { p.deny = true }, "denied", "access_denied"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			idp.set(func(p *testIdP) {
				p.email, p.verified, p.mutate, p.signKey, p.deny = "dsl@school.example", true, nil, nil, false
				tc.setup(p)
			})
			b := e.browser()
			b.t = t
			if got := b.signIn(); got != "/#/login?error="+tc.want {
				t.Errorf("landed on %q, want error=%s (hops %v)", got, tc.want, b.hops)
			}
			if code, _ := b.me(); code != 401 {
				t.Errorf("session created: /me %d", code)
			}
			l := logs.take()
			if !strings.Contains(l, "OIDC sign-in refused") || !strings.Contains(l, tc.log) {
				t.Errorf("log does not say %q:\n%s", tc.log, l)
			}
			if strings.Contains(l, "id_token") || strings.Contains(l, "eyJ") {
				t.Errorf("a token in the log:\n%s", l)
			}
		})
	}
	// Control: the same set-up with nothing altered signs in.
	idp.set(func(p *testIdP) {
		p.email, p.verified, p.mutate, p.signKey, p.deny = "dsl@school.example", true, nil, nil, false
	})
	b := e.browser()
	if got := b.signIn(); got != "/#/" {
		t.Fatalf("control: %q %v", got, b.hops)
	}
	if l := logs.take(); !strings.Contains(l, "username=dsl") || !strings.Contains(l, "method=oidc") ||
		strings.Contains(l, "eyJ") || strings.Contains(l, idpClientSecret) {
		t.Errorf("sign-in log:\n%s", l)
	}
	// Entra ID: no email_verified, but xms_edov true and a string "true" are accepted.
	idp.set(func(p *testIdP) { p.verified = nil; p.mutate = func(c map[string]any) { c["xms_edov"] = true } })
	if got := e.browser().signIn(); got != "/#/" {
		t.Errorf("xms_edov: %q", got)
	}
	idp.set(func(p *testIdP) { p.verified = "true"; p.mutate = nil })
	if got := e.browser().signIn(); got != "/#/" {
		t.Errorf(`email_verified "true": %q`, got)
	}
}

// TestOIDCStateAndPKCE: the callback is bound to the browser that started
// the sign-in (state in the sealed cookie) and the code to its PKCE
// verifier.
func TestOIDCStateAndPKCE(t *testing.T) {
	e, idp := newOIDCEnv(t, nil)
	e.user("dsl", RoleDSL, false, "dsl@school.example")
	e.user("mallory", RoleTechnician, false, "mallory@school.example")
	isCallback := func(u *url.URL) bool { return u.Path == "/api/v1/oidc/callback" }

	t.Run("state tampered", func(t *testing.T) {
		idp.set(func(p *testIdP) { p.email = "dsl@school.example" })
		b := e.browser()
		b.rewrite = func(u *url.URL) {
			if isCallback(u) {
				q := u.Query()
				q.Set("state", randomToken())
				u.RawQuery = q.Encode()
			}
		}
		if got := b.signIn(); got != "/#/login?error=failed" {
			t.Errorf("landed on %q", got)
		}
		if code, _ := b.me(); code != 401 {
			t.Error("session created")
		}
	})

	t.Run("no flow cookie (login CSRF)", func(t *testing.T) {
		// Mallory completes the IdP step herself and gets a callback URL
		// with her code; she makes the victim's browser open it.
		idp.set(func(p *testIdP) { p.email = "mallory@school.example" })
		m := e.browser()
		var stolen string
		m.hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if isCallback(req.URL) {
				stolen = req.URL.RequestURI()
				return http.ErrUseLastResponse
			}
			return nil
		}
		m.do("GET", "/api/v1/oidc/login", nil)
		if stolen == "" {
			t.Fatal("no callback URL")
		}
		victim := e.browser()
		victim.do("GET", stolen, nil)
		if len(victim.hops) == 0 || victim.hops[0] != "/#/login?error=expired" {
			t.Errorf("victim sent to %v", victim.hops)
		}
		if code, _ := victim.me(); code != 401 {
			t.Error("victim signed in as mallory")
		}
	})

	t.Run("code injection: verifier does not match (IdP refuses)", func(t *testing.T) {
		// An attacker's code (issued for the attacker's PKCE challenge) is
		// swapped into the victim's callback. The state is the victim's, so
		// only PKCE stops it: the console sends the victim's verifier and
		// the IdP refuses the exchange.
		idp.set(func(p *testIdP) { p.email = "mallory@school.example" })
		m := e.browser()
		var attackerCode string
		m.hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if isCallback(req.URL) {
				attackerCode = req.URL.Query().Get("code")
				return http.ErrUseLastResponse
			}
			return nil
		}
		m.do("GET", "/api/v1/oidc/login", nil)
		if attackerCode == "" {
			t.Fatal("no attacker code")
		}
		idp.set(func(p *testIdP) { p.email = "dsl@school.example" })
		victim := e.browser()
		victim.rewrite = func(u *url.URL) {
			if isCallback(u) {
				q := u.Query()
				q.Set("code", attackerCode)
				u.RawQuery = q.Encode()
			}
		}
		if got := victim.signIn(); got != "/#/login?error=failed" {
			t.Errorf("landed on %q", got)
		}
		if code, _ := victim.me(); code != 401 {
			t.Error("session created with an injected code")
		}
		idp.mu.Lock()
		why := idp.tokenErr
		idp.mu.Unlock()
		if !strings.Contains(why, "PKCE") {
			t.Errorf("IdP refusal: %q, want the PKCE check", why)
		}
	})

	t.Run("token request without a verifier (IdP refuses)", func(t *testing.T) {
		// The double enforces PKCE: a code redeemed without code_verifier
		// (a client that dropped PKCE) is refused.
		idp.set(func(p *testIdP) { p.email = "dsl@school.example" })
		b := e.browser()
		var code string
		b.hc.CheckRedirect = func(req *http.Request, via []*http.Request) error {
			if isCallback(req.URL) {
				code = req.URL.Query().Get("code")
				return http.ErrUseLastResponse
			}
			return nil
		}
		b.do("GET", "/api/v1/oidc/login", nil)
		form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {idp.redirect},
			"client_id": {idpClientID}, "client_secret": {idpClientSecret}}
		resp, err := http.PostForm(idp.issuer()+"/token", form)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 400 || !strings.Contains(string(body), "invalid_grant") || strings.Contains(string(body), "id_token") {
			t.Errorf("token without verifier: %d %s", resp.StatusCode, body)
		}
	})

	t.Run("flow older than 10 minutes", func(t *testing.T) {
		idp.set(func(p *testIdP) { p.email = "dsl@school.example" })
		b := e.browser()
		b.rewrite = func(u *url.URL) {
			if isCallback(u) {
				e.setNow(time.Now().Add(11 * time.Minute))
			}
		}
		defer e.setNow(time.Time{})
		if got := b.signIn(); got != "/#/login?error=expired" {
			t.Errorf("landed on %q", got)
		}
	})
}

func TestOIDCAllowedDomain(t *testing.T) {
	e, idp := newOIDCEnv(t, func(c *OIDCConfig) { c.AllowedDomain = "school.example" })
	e.user("dsl", RoleDSL, false, "dsl@school.example")
	// No hd claim (a personal account with the same address): refused.
	idp.set(func(p *testIdP) { p.email = "dsl@school.example" })
	if got := e.browser().signIn(); got != "/#/login?error=domain" {
		t.Errorf("no hd: %q", got)
	}
	idp.set(func(p *testIdP) { p.mutate = func(c map[string]any) { c["hd"] = "other.example" } })
	if got := e.browser().signIn(); got != "/#/login?error=domain" {
		t.Errorf("other hd: %q", got)
	}
	idp.set(func(p *testIdP) { p.mutate = func(c map[string]any) { c["hd"] = "school.example" } })
	b := e.browser()
	if got := b.signIn(); got != "/#/" {
		t.Errorf("right hd: %q", got)
	}
	idp.mu.Lock()
	hd := idp.lastAuth.Get("hd")
	idp.mu.Unlock()
	if hd != "school.example" {
		t.Errorf("authorization request hd = %q", hd)
	}

	// Entra ID: the tenant ID in tid.
	const tenant = "72f988bf-86f1-41af-91ab-2d7cd011db47"
	e2, idp2 := newOIDCEnv(t, func(c *OIDCConfig) { c.AllowedDomain = tenant })
	e2.user("dsl", RoleDSL, false, "dsl@school.example")
	idp2.set(func(p *testIdP) {
		p.email = "dsl@school.example"
		p.mutate = func(c map[string]any) { c["tid"] = tenant }
	})
	if got := e2.browser().signIn(); got != "/#/" {
		t.Errorf("right tid: %q", got)
	}
	idp2.set(func(p *testIdP) {
		p.mutate = func(c map[string]any) { c["tid"] = "00000000-0000-0000-0000-000000000000" }
	})
	if got := e2.browser().signIn(); got != "/#/login?error=domain" {
		t.Errorf("other tid: %q", got)
	}
}

func TestOIDCOffAndUnavailable(t *testing.T) {
	e := newEnv(t)
	var info map[string]any
	if code := e.anon().getJSON("/api/v1/oidc", &info); code != 200 || info["enabled"] != false {
		t.Errorf("off: %d %v", code, info)
	}
	for _, p := range []string{"/api/v1/oidc/login", "/api/v1/oidc/callback?code=x&state=y"} {
		if code, _ := e.anon().do("GET", p, nil); code != 404 {
			t.Errorf("off: %s %d", p, code)
		}
	}

	// The provider is down at start: the console starts, the button sends
	// the user back with a reason, and sign-in works once it is up.
	idp := newTestIdP(t)
	issuer := idp.issuer()
	idp.srv.Close()
	if _, err := New(Config{Store: e.st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
		OIDC: &OIDCConfig{Issuer: issuer, ClientID: "x", ClientSecret: "y", RedirectURL: "http://127.0.0.1:1/api/v1/oidc/callback"}}); err != nil {
		t.Fatalf("New with an unreachable provider: %v", err)
	}
	e2, _ := newOIDCEnv(t, func(c *OIDCConfig) { c.Issuer = issuer })
	b := e2.browser()
	if got := b.signIn(); got != "/#/login?error=unavailable" {
		t.Errorf("unreachable provider: %q", got)
	}

	for _, bad := range []OIDCConfig{
		{Issuer: "http://idp.example", ClientID: "x", RedirectURL: "https://vigil.example/api/v1/oidc/callback"},
		{Issuer: "https://idp.example", RedirectURL: "https://vigil.example/api/v1/oidc/callback"},
		{Issuer: "https://idp.example", ClientID: "x", RedirectURL: "https://vigil.example/elsewhere"},
	} {
		if _, err := auth.NewOIDC(bad, time.Now); err == nil {
			t.Errorf("config %+v accepted", bad)
		}
	}
	o, err := auth.NewOIDC(OIDCConfig{Issuer: "https://accounts.google.com", ClientID: "x", RedirectURL: "https://vigil.example/api/v1/oidc/callback"}, time.Now)
	if err != nil || o.Name() != "Google" || !o.Secure() {
		t.Errorf("google defaults: %v %+v", err, o)
	}
}
