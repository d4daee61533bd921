package console

// The console's side of OpenID Connect sign-in: the login redirect and the
// callback. The flow's cryptography, the provider and the ID-token claims
// are collector/auth's (auth.OIDC); docs/console.md describes the set-up;
// docs/api.md the endpoints.

import (
	"context"
	"crypto/subtle"
	"errors"
	"fmt"
	"net/http"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// OIDCConfig turns on sign-in with an OpenID Connect provider.
type OIDCConfig = auth.OIDCConfig

const (
	oidcCookie     = auth.OIDCCookie
	oidcCookiePath = "/api/v1/oidc/"
	// Where the browser lands after the callback. The app sends a signed-in
	// user at #/ to the start page of their role.
	oidcHome = "/#/"
)

func (s *Server) oidcRoutes(mux *routeMux) {
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
	writeJSON(w, http.StatusOK, map[string]any{"enabled": true, "name": s.oidc.Name()})
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
	oc, _, err := s.oidc.Setup(r.Context())
	if err != nil {
		s.oidcFail(w, r, "unavailable", "provider unavailable", "err", err)
		return
	}
	f := s.oidc.NewFlow()
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: s.oidc.Seal(f), Path: oidcCookiePath,
		MaxAge: int(auth.OIDCFlowTTL / time.Second), HttpOnly: true, SameSite: http.SameSiteLaxMode,
		Secure: s.secure(r) || s.oidc.Secure()})
	opts := []oauth2.AuthCodeOption{oidc.Nonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)}
	if d := s.oidc.AllowedDomain(); strings.Contains(d, ".") {
		opts = append(opts, oauth2.SetAuthURLParam("hd", d)) // Google: offer only that domain's accounts
	}
	http.Redirect(w, r, oc.AuthCodeURL(f.State, opts...), http.StatusFound)
}

func (s *Server) oidcCallback(w http.ResponseWriter, r *http.Request) {
	if s.oidc == nil {
		jsonError(w, http.StatusNotFound, "OIDC sign-in is not configured")
		return
	}
	// The flow cookie is used once, whatever happens next.
	http.SetCookie(w, &http.Cookie{Name: oidcCookie, Value: "", Path: oidcCookiePath, MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteLaxMode, Secure: s.secure(r) || s.oidc.Secure()})
	q := r.URL.Query()
	c, err := r.Cookie(oidcCookie)
	if err != nil {
		s.oidcFail(w, r, "expired", "no sign-in in progress in this browser")
		return
	}
	flow, err := s.oidc.Open(c.Value, s.now())
	if err != nil {
		s.oidcFail(w, r, "expired", "state cookie", "err", err)
		return
	}
	if !flow.CheckState(q.Get("state")) {
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
	oc, verifier, err := s.oidc.Setup(r.Context())
	if err != nil {
		s.oidcFail(w, r, "unavailable", "provider unavailable", "err", err)
		return
	}
	ctx, cancel := context.WithTimeout(oidc.ClientContext(r.Context(), s.oidc.HTTPClient()), 20*time.Second)
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
	var cl auth.OIDCClaims
	if err := idt.Claims(&cl); err != nil {
		s.oidcFail(w, r, "failed", "ID token claims", "err", err)
		return
	}
	if len(idt.Audience) > 1 && cl.AZP != s.oidc.ClientID() {
		s.oidcFail(w, r, "failed", "ID token for several audiences without our azp", "sub", idt.Subject)
		return
	}
	if d := s.oidc.AllowedDomain(); d != "" && !strings.EqualFold(cl.HD, d) && !strings.EqualFold(cl.TID, d) {
		s.oidcFail(w, r, "domain", "account outside the allowed domain", "sub", idt.Subject, "hd", cl.HD, "tid", cl.TID)
		return
	}
	email := strings.TrimSpace(cl.Email)
	if email == "" || !cl.Verified() {
		s.oidcFail(w, r, "unverified", "no verified e-mail address in the ID token", "sub", idt.Subject)
		return
	}
	u, err := s.auth.UserByEmail(email)
	if err != nil {
		code := "not-registered"
		if errors.Is(err, auth.ErrAmbiguousEmail) {
			code = "failed"
		}
		s.oidcFail(w, r, code, err.Error(), "email", email, "sub", idt.Subject)
		return
	}
	if u.Disabled {
		s.oidcFail(w, r, "disabled", "account disabled", "username", u.Username)
		return
	}
	if _, err := s.startSession(w, r, u); err != nil {
		s.log.Error("console: create session", "err", err)
		http.Redirect(w, r, "/#/login?error=failed", http.StatusFound)
		return
	}
	s.log.Info("console: signed in", "username", u.Username, "role", u.Role, "method", "oidc",
		"issuer", idt.Issuer, "sub", idt.Subject)
	http.Redirect(w, r, oidcHome, http.StatusFound)
}

// startSession creates the session password sign-in creates: a random
// token in an HttpOnly, SameSite=Strict cookie and a CSRF token that
// GET /api/v1/me returns.
func (s *Server) startSession(w http.ResponseWriter, r *http.Request, u store.User) (csrf string, err error) {
	tok, csrf, err := s.auth.StartSession(u)
	if err != nil {
		return "", err
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: tok, Path: "/", HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r) || s.oidc != nil && s.oidc.Secure()})
	return csrf, nil
}
