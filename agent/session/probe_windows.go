package session

import (
	"context"
	"fmt"
	"strconv"
	"unsafe"

	"golang.org/x/sys/windows"
)

// NewProbe lists the active terminal sessions (console and Remote
// Desktop) with the user logged on to each (WTSEnumerateSessions,
// WTSQueryUserToken: the service runs as LocalSystem, which may). Session
// 0 is the services' session and never a graphical one.
func NewProbe() SessionProbe { return wtsProbe{} }

type wtsProbe struct{}

func (wtsProbe) GraphicalSessions(ctx context.Context) ([]GraphicalSession, error) {
	var infos *windows.WTS_SESSION_INFO
	var count uint32
	if err := windows.WTSEnumerateSessions(0, 0, 1, &infos, &count); err != nil {
		return nil, fmt.Errorf("WTSEnumerateSessions: %w", err)
	}
	defer windows.WTSFreeMemory(uintptr(unsafe.Pointer(infos)))
	var out []GraphicalSession
	for _, si := range unsafe.Slice(infos, count) {
		if si.SessionID == 0 || si.State != windows.WTSActive {
			continue
		}
		var tok windows.Token
		if err := windows.WTSQueryUserToken(si.SessionID, &tok); err != nil {
			continue // no user logged on to it (or not LocalSystem)
		}
		sid, name, _, err := tokenIdentity(tok)
		tok.Close()
		if err != nil {
			continue
		}
		out = append(out, GraphicalSession{UID: -1, SID: sid, Username: name, Display: strconv.FormatUint(uint64(si.SessionID), 10)})
	}
	return out, nil
}

// helloDisplay: the service takes the session from the process token.
func helloDisplay(string) string { return "" }
