package console

// OpenID Connect sign-in (Google Workspace, Microsoft Entra ID or any
// OIDC provider): the authorization-code flow with PKCE (S256), state and
// nonce. The state, nonce and PKCE verifier travel in a short-lived cookie
// sealed with AES-GCM under a key that lives only in this process, so
// nothing about a sign-in in progress is stored server-side. The ID token is
// verified with go-oidc (signature from the provider's JWKS, issuer, audience
// = client ID, expiry) and then here (nonce, azp, email_verified, optional
// domain/tenant). The e-mail address is matched, case-insensitively, to an
// existing Vigil account: nothing is provisioned, the account's role decides
// what the person may see. The session created is the one password sign-in
// creates. TOTP is not asked for: the provider does the second factor.
// docs/console.md describes the set-up; docs/api.md the endpoints.

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"crypto/subtle"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// OIDCConfig turns on sign-in with an OpenID Connect provider.
type OIDCConfig struct {
	// Issuer is the provider's issuer URL, exactly as its discovery document
	// names it: https://accounts.google.com, or
	// https://login.microsoftonline.com/<tenant id>/v2.0 for Entra ID.
	Issuer       string
	ClientID     string
	ClientSecret string
	// RedirectURL is this console's callback as registered with the
	// provider: <console URL>/api/v1/oidc/callback.
	RedirectURL string
	// Name is shown on the button: "Sign in with <Name>". Default: Google or
	// Microsoft from the issuer, else "single sign-on".
	Name string
	// AllowedDomain, if set, must equal the token's hd claim (the Google
	// Workspace domain) or tid claim (the Entra ID tenant ID).
	AllowedDomain string
	// HTTPClient reaches the provider (discovery, keys, token); default a
	// client with a 15 s timeout.
	HTTPClient *http.Client
}

const (
	oidcCookie     = "vigil_oidc"
	oidcCookiePath = "/api/v1/oidc/"
	oidcFlowTTL    = 10 * time.Minute
	// Where the browser lands after the callback. The app sends a signed-in
	// user at #/ to the start page of their role.
	oidcHome = "/#/"
)

type oidcAuth struct {
	cfg    OIDCConfig
	now    func() time.Time
	aead   cipher.AEAD
	secure bool // the state cookie is Secure (the callback is https)

	mu       sync.Mutex
	provider *oidc.Provider
	verifier *oidc.IDTokenVerifier
	oauth    *oauth2.Config
}

func newOIDC(cfg OIDCConfig, now func() time.Time) (*oidcAuth, error) {
	cfg.Issuer = strings.TrimSpace(cfg.Issuer)
	if cfg.Issuer == "" || cfg.ClientID == "" {
		return nil, errors.New("oidc: the issuer and the client ID are required")
	}
	iss, err := url.Parse(cfg.Issuer)
	if err != nil || iss.Host == "" || !(iss.Scheme == "https" || iss.Scheme == "http" && isLoopback(iss.Hostname())) {
		return nil, fmt.Errorf("oidc: issuer %q: want an https:// URL", cfg.Issuer)
	}
	red, err := url.Parse(cfg.RedirectURL)
	if err != nil || red.Host == "" || (red.Scheme != "https" && red.Scheme != "http") || !strings.HasSuffix(red.Path, "/api/v1/oidc/callback") {
		return nil, fmt.Errorf("oidc: redirect URL %q: want <console URL>/api/v1/oidc/callback", cfg.RedirectURL)
	}
	if cfg.Name == "" {
		switch {
		case iss.Host == "accounts.google.com":
			cfg.Name = "Google"
		case iss.Host == "login.microsoftonline.com":
			cfg.Name = "Microsoft"
		default:
			cfg.Name = "single sign-on"
		}
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 15 * time.Second}
	}
	key := make([]byte, 32)
	if _, err := rand.Read(key); err != nil {
		return nil, err
	}
	block, _ := aes.NewCipher(key)
	aead, _ := cipher.NewGCM(block)
	return &oidcAuth{cfg: cfg, now: now, aead: aead, secure: red.Scheme == "https"}, nil
}

func isLoopback(host string) bool {
	if host == "localhost" {
		return true
	}
	ip := net.ParseIP(host)
	return ip != nil && ip.IsLoopback()
}

// setup discovers the provider on first use (and again after a failure), so
// the collector starts even when the provider cannot be reached.
func (o *oidcAuth) setup(ctx context.Context) (*oauth2.Config, *oidc.IDTokenVerifier, error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.provider != nil {
		return o.oauth, o.verifier, nil
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(ctx, o.cfg.HTTPClient), 15*time.Second)
	defer cancel()
	p, err := oidc.NewProvider(ctx, o.cfg.Issuer)
	if err != nil {
		return nil, nil, fmt.Errorf("discover %s: %w", o.cfg.Issuer, err)
	}
	// Client authentication as the provider says it takes it (the default is
	// client_secret_basic), rather than oauth2's probe, which would spend the
	// one-time code on a refused first attempt.
	var meta struct {
		AuthMethods []string `json:"token_endpoint_auth_methods_supported"`
	}
	p.Claims(&meta)
	ep := p.Endpoint()
	ep.AuthStyle = oauth2.AuthStyleInHeader
	if len(meta.AuthMethods) > 0 && !slices.Contains(meta.AuthMethods, "client_secret_basic") &&
		slices.Contains(meta.AuthMethods, "client_secret_post") {
		ep.AuthStyle = oauth2.AuthStyleInParams
	}
	o.provider = p
	o.oauth = &oauth2.Config{ClientID: o.cfg.ClientID, ClientSecret: o.cfg.ClientSecret, Endpoint: ep,
		RedirectURL: o.cfg.RedirectURL, Scopes: []string{oidc.ScopeOpenID, "email", "profile"}}
	// One verifier, so the provider's keys are fetched once and cached
	// (re-fetched when a token names a key not seen yet).
	o.verifier = p.VerifierContext(oidc.ClientContext(context.Background(), o.cfg.HTTPClient),
		&oidc.Config{ClientID: o.cfg.ClientID, Now: o.now})
	return o.oauth, o.verifier, nil
}

// oidcFlow is what the state cookie carries between login and callback.
type oidcFlow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Expires  int64  `json:"e"`
}

func (o *oidcAuth) seal(f oidcFlow) string {
	plain, _ := json.Marshal(f)
	nonce := make([]byte, o.aead.NonceSize())
	rand.Read(nonce)
	return base64.RawURLEncoding.EncodeToString(o.aead.Seal(nonce, nonce, plain, []byte(oidcCookie)))
}

func (o *oidcAuth) open(v string, now time.Time) (oidcFlow, error) {
	var f oidcFlow
	b, err := base64.RawURLEncoding.DecodeString(v)
	if err != nil || len(b) < o.aead.NonceSize() {
		return f, errors.New("malformed state cookie")
	}
	plain, err := o.aead.Open(nil, b[:o.aead.NonceSize()], b[o.aead.NonceSize():], []byte(oidcCookie))
	if err != nil {
		return f, errors.New("state cookie not sealed by this collector (restarted, or forged)")
	}
	if err := json.Unmarshal(plain, &f); err != nil {
		return f, err
	}
	if now.Unix() > f.Expires {
		return f, errors.New("sign-in took longer than 10 minutes")
	}
	return f, nil
}

func (s *Server) oidcRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /api/v1/oidc", s.oidcInfo)
	mux.HandleFunc("GET /api/v1/oidc/login", s.oidcLogin)
	mux.HandleFunc("GET /api/v1/oidc/callback", s.oidcCallback)
}

// oidcInfo tells the login page whether to offer the button.
func (s *Server) oidcInfo(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		writeJSON(w, http.StatusOK, map[string]any{"enabled": false})
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"enabled": true, "name": s.oidc.cfg.Name})
}

// oidcFail sends the browser back to the login page with a reason code.
func (s *Server) oidcFail(w http.ResponseWriter, r *http.Request, code string, msg string, args ...any) {
	s.log.Warn("console: OIDC sign-in refused: "+msg, append(args, "reason", code, "ip", s.clientIP(r))...)
	http.Redirect(w, r, "/#/login?error="+code, http.StatusFound)
}

func (s *Server) oidcLogin(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		jsonError(w, http.StatusNotFound, "OIDC sign-in is not configured")
		return
	}
	oc, _, err := s.oidc.setup(r.Context())
	if err != nil {
		s.oidcFail(w, r, "unavailable", "provider unavailable", "err", err)
		return
	}
	f := oidcFlow{State: randomToken(), Nonce: randomToken(), Verifier: oauth2.GenerateVerifier(),
		Expires: s.now().Add(oidcFlowTTL).Unix()}
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: s.oidc.seal(f), Path: oidcCookiePath,
		MaxAge: int(oidcFlowTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: s.secure(r) || s.oidc.secure})
	opts := []oauth2.AuthCodeOption{oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)}
	if d := s.oidc.cfg.AllowedDomain; strings.Contains(d, ".") {
		opts = append(opts, oauth2.SetAuthURLParam("hd", d)) // Google: offer only that domain's accounts
	}
	http.Redirect(w, r, oc.AuthCodeURL(f.State, opts...), http.StatusFound)
}

// oidcClaims are the ID token claims used beyond those go-oidc checks.
type oidcClaims struct {
	Email         string          `json:"email"`
	EmailVerified json.RawMessage `json:"email_verified"`
	// Entra ID has no email_verified; its optional claim xms_edov says the
	// e-mail domain's owner is verified.
	EmailDomainVerified json.RawMessage `json:"xms_edov"`
	AZP                 string          `json:"azp"`
	HD                  string          `json:"hd"`  // Google Workspace domain
	TID                 string          `json:"tid"` // Entra ID tenant
}

// isTrue accepts a JSON true or "true" (some providers send strings).
func isTrue(v json.RawMessage) bool {
	s := strings.TrimSpace(string(v))
	return s == "true" || s == `"true"` || s == `"True"`
}

func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		jsonError(w, http.StatusNotFound, "OIDC sign-in is not configured")
		return
	}
	// The flow cookie is used once, whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: oidcCookiePath, MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: s.secure(r) || s.oidc.secure})
	q := r.URL.Query()
	c, err := r.Cookie(oidcCookie)
	if err != nil {
		s.oidcFail(w, r, "expired", "no sign-in in progress in this browser")
		return
	}
	flow, err := s.oidc.open(c.Value, s.now())
	if err != nil {
		s.oidcFail(w, r, "expired", "state cookie", "err", err)
		return
	}
	if st := q.Get("state"); st == "" || subtle.ConstantTimeCompare([]byte(st), []byte(flow.State)) != 1 {
		s.oidcFail(w, r, "failed", "state does not match this browser's sign-in")
		return
	}
	if e := q.Get("error"); e != "" {
		code := "failed"
		if e == "access_denied" {
			code = "denied"
		}
		s.oidcFail(w, r, code, "provider returned an error", "error", e, "description", q.Get("error_description"))
		return
	}
	oc, verifier, err := s.oidc.setup(r.Context())
	if err != nil {
		s.oidcFail(w, r, "unavailable", "provider unavailable", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), s.oidc.cfg.HTTPClient), 20*time.Second)
	defer cancel()
	tok, err := oc.Exchange(ctx, q.Get("code"), oauth2.VerifierOption(flow.Verifier))
	if err != nil {
		// Never log the error's body verbatim beyond what oauth2 reports:
		// it holds the provider's error code, not tokens.
		var re *oauth2.RetrieveError
		if errors.As(err, &re) {
			err = fmt.Errorf("token endpoint: %s %s", re.ErrorCode, re.ErrorDescription)
		}
		s.oidcFail(w, r, "failed", "code exchange", "err", err)
		return
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		s.oidcFail(w, r, "failed", "token response has no id_token")
		return
	}
	idt, err := verifier.Verify(ctx, raw)
	if err != nil {
		s.oidcFail(w, r, "failed", "ID token", "err", err)
		return
	}
	if subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(flow.Nonce)) != 1 {
		s.oidcFail(w, r, "failed", "ID token nonce does not match", "sub", idt.Subject)
		return
	}
	var cl oidcClaims
	if err := idt.Claims(&cl); err != nil {
		s.oidcFail(w, r, "failed", "ID token claims", "err", err)
		return
	}
	if len(idt.Audience) > 1 && cl.AZP != s.oidc.cfg.ClientID {
		s.oidcFail(w, r, "failed", "ID token for several audiences without our azp", "sub", idt.Subject)
		return
	}
	if d := s.oidc.cfg.AllowedDomain; d != "" && !strings.EqualFold(cl.HD, d) && !strings.EqualFold(cl.TID, d) {
		s.oidcFail(w, r, "domain", "account outside the allowed domain", "sub", idt.Subject, "hd", cl.HD, "tid", cl.TID)
		return
	}
	email := strings.TrimSpace(cl.Email)
	if email == "" || !(isTrue(cl.EmailVerified) || isTrue(cl.EmailDomainVerified)) {
		s.oidcFail(w, r, "unverified", "no verified e-mail address in the ID token", "sub", idt.Subject)
		return
	}
	u, err := s.userByEmail(email)
	if err != nil {
		code := "not-registered"
		if errors.Is(err, errAmbiguousEmail) {
			code = "failed"
		}
		s.oidcFail(w, r, code, err.Error(), "email", email, "sub", idt.Subject)
		return
	}
	if u.Disabled {
		s.oidcFail(w, r, "disabled", "account disabled", "username", u.Username)
		return
	}
	if err := s.startSession(w, r, u); err != nil {
		s.log.Error("console: create session", "err", err)
		http.Redirect(w, r, "/#/login?error=failed", http.StatusFound)
		return
	}
	s.log.Info("console: signed in", "username", u.Username, "role", u.Role, "method", "oidc",
		"issuer", idt.Issuer, "sub", idt.Subject)
	http.Redirect(w, r, oidcHome, http.StatusFound)
}

var errAmbiguousEmail = errors.New("several accounts have this e-mail address")

// userByEmail finds the one account whose e-mail address is email, ignoring
// case. Accounts are few (staff with console access), so a scan is enough.
func (s *Server) userByEmail(email string) (store.User, error) {
	users, err := s.st.Users()
	if err != nil {
		return store.User{}, err
	}
	var found []store.User
	for _, u := range users {
		if u.Email != "" && strings.EqualFold(strings.TrimSpace(u.Email), email) {
			found = append(found, u)
		}
	}
	switch len(found) {
	case 0:
		return store.User{}, errors.New("no account has this e-mail address")
	case 1:
		return found[0], nil
	}
	return store.User{}, errAmbiguousEmail
}

// startSession creates the session password sign-in creates: a random
// token in an HttpOnly, SameSite=Strict cookie and a CSRF token that
// GET /api/v1/me returns.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, u store.User) error {
	now := s.now()
	tok := randomToken()
	sess := store.Session{Username: u.Username, CSRF: randomToken(), Created: now.UTC(), Touched: now.UTC()}
	if err := s.st.PutSession(tokenHash(tok), sess, s.idle); err != nil {
		return err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: tok, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r) || s.oidc != nil && s.oidc.secure})
	return nil
}
