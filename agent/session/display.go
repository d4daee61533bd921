package session

import (
	"os"
	"strings"
)

// SocketEnv names the environment variable that overrides the default
// session endpoint for both the service and the helper (tests, unusual
// layouts); the --session-socket flag overrides both.
const SocketEnv = "VIGIL_SESSION_SOCKET"

// ResolveSocket is the session endpoint to use: flag if set, else
// $VIGIL_SESSION_SOCKET, else the platform default (DefaultSocket).
func ResolveSocket(flag string) string {
	if flag != "" {
		return flag
	}
	if e := os.Getenv(SocketEnv); e != "" {
		return e
	}
	return DefaultSocket()
}

// NormalizeDisplay turns a display name into the form sessions are
// listed under: X11 ":N" (host "unix" or none, screen number dropped),
// "console" (macOS), or a bare session number (Windows). A display on
// another host ("localhost:10.0", ssh X forwarding) is not a local
// graphical session and gives "".
func NormalizeDisplay(d string) string {
	d = strings.TrimSpace(d)
	if d == "console" || (d != "" && allDigits(d)) {
		return d
	}
	i := strings.LastIndexByte(d, ':')
	if i < 0 {
		return ""
	}
	if host := d[:i]; host != "" && host != "unix" {
		return ""
	}
	num := d[i+1:]
	if j := strings.IndexByte(num, '.'); j >= 0 {
		num = num[:j]
	}
	if num == "" || !allDigits(num) {
		return ""
	}
	return ":" + num
}

func allDigits(s string) bool {
	for _, c := range s {
		if c < '0' || c > '9' {
			return false
		}
	}
	return len(s) > 0
}
