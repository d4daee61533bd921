package session

import (
	"context"
	"os"
	"os/user"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"syscall"

	"github.com/shirou/gopsutil/v3/host"
)

// NewProbe finds graphical sessions without systemd-logind (which not
// every school image runs), from two sources a desktop always leaves:
//
//   - utmp: display managers (LightDM, GDM, SDDM) record a login whose
//     line or host is the X display (":0"); this is the only source when
//     Xorg runs as root;
//   - the X server sockets in /tmp/.X11-unix: X<N> owned by a non-root
//     user is that user's display (rootless Xorg under GDM, Xwayland,
//     startx, Xvfb run by the user).
//
// utmp wins where both speak of one display; a root-owned socket with no
// utmp entry (the login screen before anyone logs in) is nobody's session.
// Native Wayland sessions without Xwayland are not listed: the helper
// cannot watch them (agent/screen) and saying "helper missing" for them
// would be noise on every such desktop.
func NewProbe() SessionProbe { return linuxProbe{xdir: "/tmp/.X11-unix"} }

type linuxProbe struct{ xdir string }

func (lp linuxProbe) GraphicalSessions(ctx context.Context) ([]GraphicalSession, error) {
	byDisplay := map[string]GraphicalSession{}
	// utmp is often absent (containers, minimal images): not an error.
	if us, err := host.UsersWithContext(ctx); err == nil {
		for _, u := range us {
			d := NormalizeDisplay(u.Host)
			if d == "" {
				d = NormalizeDisplay(u.Terminal)
			}
			if d == "" || u.User == "" {
				continue
			}
			acct, err := user.Lookup(u.User)
			if err != nil {
				continue
			}
			uid, _ := strconv.Atoi(acct.Uid)
			byDisplay[d] = GraphicalSession{UID: uid, Username: acct.Username, Display: d}
		}
	}
	ents, err := os.ReadDir(lp.xdir)
	if err != nil && !os.IsNotExist(err) {
		return nil, err
	}
	for _, e := range ents {
		n, ok := strings.CutPrefix(e.Name(), "X")
		if !ok || !allDigits(n) || e.Type()&os.ModeSocket == 0 {
			continue
		}
		d := ":" + n
		if _, done := byDisplay[d]; done {
			continue
		}
		fi, err := os.Lstat(filepath.Join(lp.xdir, e.Name()))
		if err != nil {
			continue
		}
		st, ok := fi.Sys().(*syscall.Stat_t)
		if !ok || st.Uid == 0 {
			continue
		}
		gs := GraphicalSession{UID: int(st.Uid), Display: d}
		if u, err := user.LookupId(strconv.Itoa(int(st.Uid))); err == nil {
			gs.Username = u.Username
		} else {
			continue // a socket of a deleted account is nobody's session
		}
		byDisplay[d] = gs
	}
	out := make([]GraphicalSession, 0, len(byDisplay))
	for _, s := range byDisplay {
		out = append(out, s)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Display < out[j].Display })
	return out, nil
}

// helloDisplay is the display the helper claims: the one it watches.
func helloDisplay(display string) string {
	if display == "" {
		return os.Getenv("DISPLAY")
	}
	return display
}
