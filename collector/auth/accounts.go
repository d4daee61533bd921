package auth

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/fsutil"
)

// Create stores a new account (u from NewUserUnhashed) with password,
// hashed in the pool; by names who asked (the log line).
func (s *Service) Create(ctx context.Context, by string, u store.User, password string) (store.User, error) {
	var err error
	if herr := s.Hash(ctx, func() { u.PasswordHash, err = s.Hasher.Hash(password) }); herr != nil {
		return store.User{}, herr
	}
	if err != nil {
		return store.User{}, fmt.Errorf("hash password: %w", err)
	}
	if err := s.st.CreateUser(u); errors.Is(err, store.ErrExists) {
		return store.User{}, &ConflictError{Msg: fmt.Sprintf("user %s already exists", u.Username)}
	} else if err != nil {
		return store.User{}, fmt.Errorf("create user: %w", err)
	}
	s.log.Info("console: user created", "username", u.Username, "role", u.Role, "by", by)
	return u, nil
}

// Users lists every account, ordered by username.
func (s *Service) Users() ([]store.User, error) { return s.st.Users() }

// ChangePassword sets a signed-in account's own password after checking
// the current one, clears a forced change, ends the account's other
// sessions (keep is the caller's session hash) and, for the first admin,
// removes DATA/initial-admin-password.
func (s *Service) ChangePassword(ctx context.Context, username, current, next, keep string) error {
	u, err := s.st.GetUser(username)
	if err != nil || u.Disabled {
		return ErrNoAccount
	}
	if err := CheckPassword(username, next); err != nil {
		return &InvalidError{Msg: err.Error()}
	}
	if next == current {
		return &InvalidError{Msg: "choose a new password, not the current one"}
	}
	// A stolen session must not be able to guess the password either.
	key := username + "|change-password"
	res, wait := s.limiter.Reserve(key, s.now())
	if wait > 0 {
		return &LimitedError{Wait: wait}
	}
	var wrong bool
	var hash []byte
	if err := s.Hash(ctx, func() {
		if wrong = s.Hasher.Compare(u.PasswordHash, []byte(current)) != nil; !wrong {
			hash, err = s.Hasher.Hash(next)
		}
	}); err != nil {
		res.Release()
		return err
	}
	if wrong {
		s.log.Warn("console: password change with a wrong current password", "username", username)
		return &InvalidError{Msg: "the current password is not right"}
	}
	if err != nil {
		return fmt.Errorf("hash password: %w", err)
	}
	s.limiter.Reset(key)
	now := s.now().UTC()
	var initial bool
	if _, err := s.st.UpdateUser(username, func(x *store.User) error {
		initial = x.InitialAdmin
		x.PasswordHash, x.MustChangePassword, x.InitialAdmin, x.PasswordChanged = hash, false, false, now
		return nil
	}); err != nil {
		return fmt.Errorf("save password: %w", err)
	}
	if n, err := s.st.DeleteUserSessions(username, keep); err != nil {
		s.log.Warn("console: end other sessions after a password change", "username", username, "err", err)
	} else if n > 0 {
		s.log.Info("console: other sessions ended after a password change", "username", username, "sessions", n)
	}
	s.log.Info("console: password changed", "username", username)
	if initial {
		s.removeInitialFile()
	}
	return nil
}

func (s *Service) removeInitialFile() {
	if s.initialFile == "" {
		return
	}
	if err := os.Remove(s.initialFile); err == nil {
		s.log.Info("console: the first admin set their own password; removed " + s.initialFile)
	} else if !errors.Is(err, os.ErrNotExist) {
		s.log.Error("console: remove the initial admin password file", "path", s.initialFile, "err", err)
	}
}

// Reset sets an account's password for an admin (by), forces a change at
// its next sign-in and ends its sessions. With password empty a random
// one is made and returned, to be handed to the person.
func (s *Service) Reset(ctx context.Context, by, username, password string) (generated string, err error) {
	u, err := s.st.GetUser(username)
	if errors.Is(err, store.ErrNotFound) {
		return "", ErrNoAccount
	} else if err != nil {
		return "", err
	}
	if password == "" {
		password = RandomPassword(16)
		generated = password
	}
	if err := CheckPassword(u.Username, password); err != nil {
		return "", &InvalidError{Msg: err.Error()}
	}
	var hash []byte
	if herr := s.Hash(ctx, func() { hash, err = s.Hasher.Hash(password) }); herr != nil {
		return "", herr
	}
	if err != nil {
		return "", fmt.Errorf("hash password: %w", err)
	}
	now := s.now().UTC()
	if _, err := s.st.UpdateUser(username, func(x *store.User) error {
		x.PasswordHash, x.MustChangePassword, x.PasswordChanged = hash, true, now
		return nil
	}); err != nil {
		return "", fmt.Errorf("save password: %w", err)
	}
	n, err := s.st.DeleteUserSessions(username, "")
	if err != nil {
		// Still safe: the next request of such a session meets the forced
		// change, but say so.
		return "", fmt.Errorf("password reset, but ending the account's sessions failed: %w", err)
	}
	s.log.Info("console: password reset; a new one is required at next sign-in", "username", username, "by", by, "sessions_ended", n)
	return generated, nil
}

// SetDisabled disables (every session ends at once) or enables an account
// for by. Nobody disables their own account, nor the last enabled admin:
// either would lock the school out of account management.
func (s *Service) SetDisabled(by, username string, disabled bool) (store.User, error) {
	if disabled && by == username {
		return store.User{}, &ConflictError{Msg: "you cannot disable your own account"}
	}
	target, err := s.st.GetUser(username)
	if errors.Is(err, store.ErrNotFound) {
		return store.User{}, ErrNoAccount
	} else if err != nil {
		return store.User{}, err
	}
	if disabled && target.Role == RoleAdmin && !target.Disabled {
		users, err := s.st.Users()
		if err != nil {
			return store.User{}, err
		}
		admins := 0
		for _, u := range users {
			if u.Role == RoleAdmin && !u.Disabled {
				admins++
			}
		}
		if admins <= 1 {
			return store.User{}, &ConflictError{Msg: "this is the last enabled admin account; add or enable another admin first"}
		}
	}
	now := s.now().UTC()
	u, err := s.st.UpdateUser(username, func(x *store.User) error {
		x.Disabled = disabled
		if disabled {
			x.DisabledBy, x.DisabledAt = by, now
		} else {
			x.DisabledBy, x.DisabledAt = "", time.Time{}
		}
		return nil
	})
	if err != nil {
		return store.User{}, fmt.Errorf("save account: %w", err)
	}
	if !disabled {
		s.log.Info("console: account enabled", "username", username, "by", by)
		return u, nil
	}
	// Lookup refuses a disabled account's sessions already; deleting them
	// as well leaves nothing to come back if it is enabled again.
	n, err := s.st.DeleteUserSessions(username, "")
	if err != nil {
		s.log.Warn("console: delete a disabled account's sessions", "username", username, "err", err)
	}
	s.log.Info("console: account disabled; its sessions ended", "username", username, "by", by, "sessions", n)
	return u, nil
}

// InitialPasswordFile is written (owner-only) in the data dir on first
// start, and removed when the first admin sets their own password.
const InitialPasswordFile = "initial-admin-password"

// EnsureAdmin creates the first admin on first start: if no admin account
// exists, `admin` with a random 20-character password written to
// DATA/initial-admin-password (0600), which must be changed at the first
// sign-in. A collector upgraded from before forced changes still has the
// file: if it still holds the admin's password the change is forced now,
// and if not (the password was changed) the stale file is removed.
func EnsureAdmin(st Store, dataDir string, log *slog.Logger) error {
	path := filepath.Join(dataDir, InitialPasswordFile)
	users, err := st.Users()
	if err != nil {
		return err
	}
	for _, u := range users {
		if u.Role == RoleAdmin && !u.Disabled {
			return adoptInitialFile(st, path, log)
		}
	}
	pw := RandomPassword(20)
	u, err := NewUser("admin", "Administrator", RoleAdmin, pw, "", false, time.Now())
	if err != nil {
		return err
	}
	u.MustChangePassword, u.InitialAdmin = true, true
	if err := fsutil.WriteFileAtomic(path, []byte(pw+"\n"), 0o600); err != nil {
		return fmt.Errorf("console: write %s: %w", path, err)
	}
	if err := st.CreateUser(u); errors.Is(err, store.ErrExists) {
		// An account named admin exists without the admin role: leave it.
		os.Remove(path)
		return errors.New("console: no admin account, and the name admin is taken by another role; add one with `vigil-collector user add --role admin`")
	} else if err != nil {
		os.Remove(path)
		return err
	}
	log.Info("console: first admin created; password in " + path + " (to be changed at the first sign-in, which removes the file)")
	return nil
}

func adoptInitialFile(st Store, path string, log *slog.Logger) error {
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return nil
	} else if err != nil {
		return fmt.Errorf("console: read %s: %w", path, err)
	}
	u, err := st.GetUser("admin")
	if err == nil && u.InitialAdmin {
		return nil // first start already marked it
	}
	pw := string(b)
	for len(pw) > 0 && (pw[len(pw)-1] == '\n' || pw[len(pw)-1] == '\r') {
		pw = pw[:len(pw)-1]
	}
	if err == nil && !u.Disabled && (Bcrypt{}).Compare(u.PasswordHash, []byte(pw)) == nil {
		_, err := st.UpdateUser("admin", func(x *store.User) error {
			x.MustChangePassword, x.InitialAdmin = true, true
			return nil
		})
		if err == nil {
			log.Info("console: " + path + " still holds the admin password: it must be changed at the next sign-in, which removes the file")
		}
		return err
	}
	if err := os.Remove(path); err != nil {
		return fmt.Errorf("console: remove stale %s: %w", path, err)
	}
	log.Info("console: removed " + path + ": it no longer holds a working password")
	return nil
}
