package session

import (
	"context"
	"fmt"
	"os"
	"os/user"
	"strconv"
	"syscall"
)

// NewProbe: on macOS the user at the login window's console owns
// /dev/console (root when nobody is logged in); fast user switching's
// background users have no screen the helper could watch anyway.
func NewProbe() SessionProbe { return darwinProbe{} }

type darwinProbe struct{}

func (darwinProbe) GraphicalSessions(context.Context) ([]GraphicalSession, error) {
	fi, err := os.Stat("/dev/console")
	if err != nil {
		return nil, fmt.Errorf("console owner: %w", err)
	}
	st, ok := fi.Sys().(*syscall.Stat_t)
	if !ok || st.Uid == 0 {
		return nil, nil
	}
	gs := GraphicalSession{UID: int(st.Uid), Display: "console"}
	if u, err := user.LookupId(strconv.Itoa(int(st.Uid))); err == nil {
		gs.Username = u.Username
	}
	return []GraphicalSession{gs}, nil
}

// helloDisplay: the console is the only session a helper can watch.
func helloDisplay(string) string { return "console" }
