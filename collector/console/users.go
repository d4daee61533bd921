package console

// Accounts: the admin's users page (GET/POST /api/v1/users and the
// lifecycle actions) and the same operations on the admin socket for
// `vigil-collector user ...`. Both go through collector/auth, so the rules
// (no disabling yourself or the last admin, a reset forces a change and
// ends sessions) hold for every entry point.

import (
	"net/http"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// UserJSON is an account as the API shows it (never the hash or secret).
type UserJSON struct {
	Username           string `json:"username"`
	DisplayName        string `json:"display_name"`
	Role               string `json:"role"`
	Email              string `json:"email"`
	Chair              bool   `json:"chair"`
	TOTP               bool   `json:"totp"`
	Created            string `json:"created"`
	Disabled           bool   `json:"disabled"`
	DisabledBy         string `json:"disabled_by,omitempty"`
	DisabledAt         string `json:"disabled_at,omitempty"`
	LastSignIn         string `json:"last_sign_in"` // empty: never signed in
	MustChangePassword bool   `json:"must_change_password"`
	PasswordChanged    string `json:"password_changed,omitempty"`
	// School is the account's school; "" for admin accounts, which are
	// installation-wide.
	School string `json:"school"`
	// Granted: further schools a trust safeguarding lead (dsl) sees.
	Granted []string `json:"granted_schools,omitempty"`
}

func userJSON(u store.User) UserJSON {
	return UserJSON{Username: u.Username, DisplayName: u.DisplayName, Role: u.Role, Email: u.Email, Chair: u.Chair,
		TOTP: u.TOTPSecret != "", Created: ts(u.Created), Disabled: u.Disabled, DisabledBy: u.DisabledBy,
		DisabledAt: ts(u.DisabledAt), LastSignIn: ts(u.LastSignIn), MustChangePassword: u.MustChangePassword,
		PasswordChanged: ts(u.PasswordChanged), School: accountSchoolName(u), Granted: u.Granted}
}

// accountSchoolName: admin accounts belong to no school.
func accountSchoolName(u store.User) string {
	if u.Role == RoleAdmin {
		return ""
	}
	return store.SchoolOf(u.School)
}

// UserAddRequest is the body of POST /api/v1/users and POST /v1/users on
// the admin socket.
type UserAddRequest struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Role        string `json:"role"`
	Password    string `json:"password"`
	Email       string `json:"email"`
	Chair       bool   `json:"chair"`
	TOTP        bool   `json:"totp"`
	// School (ID or name) whose data the account sees; "" is the default
	// school. Admin accounts administer the whole installation and name none.
	School string `json:"school,omitempty"`
	// MustChangePassword: the person chooses their own password at the
	// first sign-in (the admin typed this one for them).
	MustChangePassword bool `json:"must_change_password"`
}

// UserAddResponse answers it on the admin socket.
type UserAddResponse struct {
	Username string `json:"username"`
	Role     string `json:"role"`
	School   string `json:"school"`
	TOTPURI  string `json:"totp_uri,omitempty"`
}

// UserResetRequest is the body of a password reset; an empty password
// asks for a generated one.
type UserResetRequest struct {
	Password string `json:"password"`
}

// UserResetResponse answers a reset: the generated password, shown once.
type UserResetResponse struct {
	User              UserJSON `json:"user"`
	TemporaryPassword string   `json:"temporary_password,omitempty"`
}

// addUser creates the account a UserAddRequest describes, answering the
// error itself; by names who asked (the log line). TOTP enrolment is only
// offered where its secret can be shown safely (the admin socket's CLI).
func (s *Server) addUser(w http.ResponseWriter, r *http.Request, by string, allowTOTP bool) (store.User, bool) {
	var req UserAddRequest
	if err := decodeBody(r, &req); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return store.User{}, false
	}
	u, err := auth.NewUserUnhashed(req.Username, req.DisplayName, req.Role, req.Password, req.Email, req.Chair, s.now())
	if err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return store.User{}, false
	}
	if req.TOTP && allowTOTP {
		u.TOTPSecret = auth.NewTOTPSecret()
	}
	u.MustChangePassword = req.MustChangePassword
	if u.School, err = s.accountSchool(req.Role, req.School); err != nil {
		jsonError(w, http.StatusBadRequest, "%v", err)
		return store.User{}, false
	}
	u, err = s.auth.Create(r.Context(), by, u, req.Password)
	if err != nil {
		s.authError(w, "create user", err)
		return store.User{}, false
	}
	return u, true
}

func (s *Server) listUsers(w http.ResponseWriter, r *http.Request, v *viewer) {
	s.writeUsers(w)
}

func (s *Server) writeUsers(w http.ResponseWriter) {
	users, err := s.auth.Users()
	if err != nil {
		s.internal(w, "list users", err)
		return
	}
	out := make([]UserJSON, 0, len(users))
	for _, u := range users {
		out = append(out, userJSON(u))
	}
	writeJSON(w, http.StatusOK, out)
}

func (s *Server) createUser(w http.ResponseWriter, r *http.Request, v *viewer) {
	if u, ok := s.addUser(w, r, v.Username, false); ok {
		writeJSON(w, http.StatusCreated, userJSON(u))
	}
}

// setDisabled disables or enables the account named in the path for by.
func (s *Server) setDisabled(w http.ResponseWriter, r *http.Request, by string, disabled bool) {
	u, err := s.auth.SetDisabled(by, r.PathValue("username"), disabled)
	if err != nil {
		s.authError(w, "change account", err)
		return
	}
	writeJSON(w, http.StatusOK, userJSON(u))
}

// resetPassword sets a new password (given, or generated and returned
// once) that must be changed at the next sign-in, and ends every session.
func (s *Server) resetPassword(w http.ResponseWriter, r *http.Request, by string) {
	var req UserResetRequest
	if r.ContentLength != 0 {
		if err := decodeBody(r, &req); err != nil {
			jsonError(w, http.StatusBadRequest, "%v", err)
			return
		}
	}
	name := r.PathValue("username")
	gen, err := s.auth.Reset(r.Context(), by, name, req.Password)
	if err != nil {
		s.authError(w, "reset password", err)
		return
	}
	u, err := s.st.GetUser(name)
	if err != nil {
		s.internal(w, "reset password", err)
		return
	}
	writeJSON(w, http.StatusOK, UserResetResponse{User: userJSON(u), TemporaryPassword: gen})
}

func (s *Server) userRoutes(mux *routeMux) {
	admins := roles(RoleAdmin)
	mux.Handle("GET /api/v1/users", s.api(admins, s.listUsers))
	mux.Handle("POST /api/v1/users", s.api(admins, s.createUser))
	mux.Handle("POST /api/v1/users/{username}/disable", s.api(admins, func(w http.ResponseWriter, r *http.Request, v *viewer) {
		s.setDisabled(w, r, v.Username, true)
	}))
	mux.Handle("POST /api/v1/users/{username}/enable", s.api(admins, func(w http.ResponseWriter, r *http.Request, v *viewer) {
		s.setDisabled(w, r, v.Username, false)
	}))
	mux.Handle("POST /api/v1/users/{username}/reset", s.api(admins, func(w http.ResponseWriter, r *http.Request, v *viewer) {
		s.resetPassword(w, r, v.Username)
	}))
	mux.Handle("POST /api/v1/me/password", s.api(anyone, s.changePassword))
}

// adminActor names who used the admin socket (the CLI sends the OS user).
func adminActor(r *http.Request) string {
	if who := r.Header.Get("X-Vigil-User"); who != "" {
		return who
	}
	return "admin socket"
}

// adminUserRoutes are the same operations on the admin socket.
func (s *Server) adminUserRoutes(mux *http.ServeMux) {
	mux.HandleFunc("GET /v1/users", func(w http.ResponseWriter, r *http.Request) { s.writeUsers(w) })
	mux.HandleFunc("POST /v1/users", func(w http.ResponseWriter, r *http.Request) {
		u, ok := s.addUser(w, r, adminActor(r), true)
		if !ok {
			return
		}
		resp := UserAddResponse{Username: u.Username, Role: u.Role, School: accountSchoolName(u)}
		if u.TOTPSecret != "" {
			resp.TOTPURI = auth.TOTPURI(u.TOTPSecret, u.Username)
		}
		writeJSON(w, http.StatusOK, resp)
	})
	mux.HandleFunc("POST /v1/users/{username}/disable", func(w http.ResponseWriter, r *http.Request) {
		s.setDisabled(w, r, adminActor(r), true)
	})
	mux.HandleFunc("POST /v1/users/{username}/enable", func(w http.ResponseWriter, r *http.Request) {
		s.setDisabled(w, r, adminActor(r), false)
	})
	mux.HandleFunc("POST /v1/users/{username}/reset", func(w http.ResponseWriter, r *http.Request) {
		s.resetPassword(w, r, adminActor(r))
	})
	mux.HandleFunc("POST /v1/users/{username}/grant", func(w http.ResponseWriter, r *http.Request) {
		s.grantSchool(w, r, adminActor(r), true)
	})
	mux.HandleFunc("POST /v1/users/{username}/ungrant", func(w http.ResponseWriter, r *http.Request) {
		s.grantSchool(w, r, adminActor(r), false)
	})
}
