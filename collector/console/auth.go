package console

// The console's HTTP side of signing in: the session cookie, CSRF, the
// forced password change, and the sign-in and sign-out endpoints. Who an
// account is, passwords, TOTP, sessions and their lifecycle are
// collector/auth's.

import (
	"context"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// CookieName is the session cookie.
const CookieName = "vigil_session"

// randomToken is 256 random bits, URL-safe (exclusion and message IDs).
func randomToken() string { return auth.RandomToken() }

// authError answers an error of collector/auth.
func (s *Server) authError(w http.ResponseWriter, what string, err error) {
	var lim *auth.LimitedError
	var inv *auth.InvalidError
	var con *auth.ConflictError
	switch {
	case errors.Is(err, auth.ErrHashBusy):
		w.Header().Set("Retry-After", "1")
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": err.Error() + "; try again in a moment", "busy": true})
	case errors.Is(err, context.Canceled), errors.Is(err, context.DeadlineExceeded):
		// The client went away while queued: nobody reads an answer.
		jsonError(w, http.StatusServiceUnavailable, "request cancelled")
	case errors.As(err, &lim):
		w.Header().Set("Retry-After", strconv.Itoa(int(lim.Wait.Seconds()+0.999)))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{"error": lim.Error(), "retry_after_text": auth.HumanWait(lim.Wait)})
	case errors.As(err, &inv):
		jsonError(w, http.StatusBadRequest, "%s", inv.Msg)
	case errors.As(err, &con):
		jsonError(w, http.StatusConflict, "%s", con.Msg)
	case errors.Is(err, auth.ErrNoAccount):
		jsonError(w, http.StatusNotFound, "no such account")
	default:
		s.internal(w, what, err)
	}
}

// viewer is the signed-in user of a request.
type viewer struct {
	store.User
	csrf string
	hash string
}

type ctxKey struct{}

type apiHandler func(w http.ResponseWriter, r *http.Request, v *viewer)

// duringPasswordChange are the endpoints an account that must change its
// password may still use: enough to see who it is, change the password
// and sign out.
var duringPasswordChange = map[string]bool{
	"GET /api/v1/me": true, "POST /api/v1/me/password": true, "DELETE /api/v1/session": true,
}

// api wraps an endpoint: a live session (else 401), the CSRF token on
// state-changing requests (else 403), a password that need not be changed
// first (else 403), the role (else 403).
func (s *Server) api(ok allow, h apiHandler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		v, err := s.viewerOf(r)
		if err != nil {
			jsonError(w, http.StatusUnauthorized, "sign in first")
			return
		}
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			if !sameOrigin(r) {
				jsonError(w, http.StatusForbidden, "cross-origin request refused")
				return
			}
			got := r.Header.Get("X-CSRF-Token")
			if got == "" || subtle.ConstantTimeCompare([]byte(got), []byte(v.csrf)) != 1 {
				jsonError(w, http.StatusForbidden, "missing or wrong X-CSRF-Token")
				return
			}
		}
		if v.MustChangePassword && !duringPasswordChange[r.Method+" "+r.URL.Path] {
			writeJSON(w, http.StatusForbidden, map[string]any{
				"error":                    "choose a new password before using the console (yours was set by someone else)",
				"password_change_required": true,
			})
			return
		}
		if !ok(&v.User) {
			jsonError(w, http.StatusForbidden, "your role (%s) may not do this", v.Role)
			return
		}
		if open, err := s.tenancyPolicy().RouteOpen(r.Pattern, &v.User); err != nil {
			s.internal(w, "check the school policy", err)
			return
		} else if !open {
			jsonError(w, http.StatusForbidden, "this page is not available to school accounts in an installation of several schools yet")
			return
		}
		h(w, r.WithContext(context.WithValue(r.Context(), ctxKey{}, v)), v)
	})
}

// sameOrigin refuses a browser request whose Origin names another site.
func sameOrigin(r *http.Request) bool {
	o := r.Header.Get("Origin")
	if o == "" {
		return true
	}
	u, err := url.Parse(o)
	return err == nil && strings.EqualFold(u.Host, r.Host)
}

func (s *Server) viewerOf(r *http.Request) (*viewer, error) {
	c, err := r.Cookie(CookieName)
	if err != nil {
		return nil, auth.ErrNoSession
	}
	sess, err := s.auth.Lookup(c.Value)
	if err != nil {
		return nil, err
	}
	return &viewer{User: sess.User, csrf: sess.CSRF, hash: sess.Hash}, nil
}

type loginRequest struct {
	Username string `json:"username"`
	Password string `json:"password"`
	TOTP     string `json:"totp"`
}

type meResponse struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Role        string `json:"role"`
	Chair       bool   `json:"chair"`
	CSRFToken   string `json:"csrf_token"`
	// MustChangePassword: the console offers nothing but the password
	// change until it is done.
	MustChangePassword bool `json:"must_change_password"`
	// School names the account's school once the installation has more
	// than one (a trust), with the schools granted to it; empty for a
	// single school and for admin accounts, so nothing changes there.
	School  string   `json:"school,omitempty"`
	Granted []string `json:"granted_schools,omitempty"`
}

func (s *Server) meOf(u store.User, csrf string) meResponse {
	me := meResponse{Username: u.Username, DisplayName: u.DisplayName, Role: u.Role, Chair: u.Chair, CSRFToken: csrf,
		MustChangePassword: u.MustChangePassword}
	if all, err := s.st.Schools(); err == nil && len(all) > 1 && u.Role != RoleAdmin {
		name := func(id string) string {
			if sc, err := s.st.FindSchool(store.SchoolOf(id)); err == nil {
				return sc.Name
			}
			return id
		}
		me.School = name(u.School)
		for _, g := range u.Granted {
			me.Granted = append(me.Granted, name(g))
		}
	}
	return me
}

// clientIP is the address a request is attributed to; every use goes
// through here so the trusted-proxy rule (proxy.go) holds for all of them.
func (s *Server) clientIP(r *http.Request) string { return s.proxies.ClientIP(r) }

// secure: the browser reached the console over HTTPS, so cookies are Secure.
func (s *Server) secure(r *http.Request) bool { return s.proxies.Secure(r) }

func (s *Server) login(w http.ResponseWriter, r *http.Request) {
	if !sameOrigin(r) {
		jsonError(w, http.StatusForbidden, "cross-origin request refused")
		return
	}
	var req loginRequest
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	u, err := s.auth.SignIn(r.Context(), req.Username, req.Password, req.TOTP, s.clientIP(r))
	var lim *auth.LimitedError
	switch {
	case err == nil:
	case errors.As(err, &lim):
		w.Header().Set("Retry-After", strconv.Itoa(int(lim.Wait.Seconds()+0.999)))
		writeJSON(w, http.StatusTooManyRequests, map[string]any{
			"error":            "too many failed sign-ins; try again in " + auth.HumanWait(lim.Wait),
			"retry_after_text": auth.HumanWait(lim.Wait),
		})
		return
	case errors.Is(err, auth.ErrWrongPassword):
		jsonError(w, http.StatusUnauthorized, "%v", err)
		return
	case errors.Is(err, auth.ErrTOTPRequired), errors.Is(err, auth.ErrTOTPWrong):
		writeJSON(w, http.StatusUnauthorized, map[string]any{"error": err.Error(), "totp_required": true})
		return
	default:
		s.authError(w, "sign in", err)
		return
	}
	csrf, err := s.startSession(w, r, u)
	if err != nil {
		s.internal(w, "create session", err)
		return
	}
	s.log.Info("console: signed in", "username", u.Username, "role", u.Role)
	writeJSON(w, http.StatusOK, s.meOf(u, csrf))
}

func (s *Server) logout(w http.ResponseWriter, r *http.Request, v *viewer) {
	if err := s.auth.EndSession(v.hash); err != nil {
		s.internal(w, "end session", err)
		return
	}
	http.SetCookie(w, &http.Cookie{Name: CookieName, Value: "", Path: "/", MaxAge: -1, HttpOnly: true,
		SameSite: http.SameSiteStrictMode, Secure: s.secure(r)})
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) me(w http.ResponseWriter, r *http.Request, v *viewer) {
	writeJSON(w, http.StatusOK, s.meOf(v.User, v.csrf))
}

// PasswordChangeRequest is the body of POST /api/v1/me/password.
type PasswordChangeRequest struct {
	Current string `json:"current_password"`
	New     string `json:"new_password"`
}

// changePassword: anyone signed in sets their own password, giving the
// current one; the account's other sessions end.
func (s *Server) changePassword(w http.ResponseWriter, r *http.Request, v *viewer) {
	var req PasswordChangeRequest
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return
	}
	if err := s.auth.ChangePassword(r.Context(), v.Username, req.Current, req.New, v.hash); err != nil {
		s.authError(w, "change password", err)
		return
	}
	v.MustChangePassword = false
	writeJSON(w, http.StatusOK, s.meOf(v.User, v.csrf))
}
