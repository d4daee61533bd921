package session

import (
	"errors"
	"fmt"
	"net"
	"strconv"
	"unsafe"

	"golang.org/x/sys/windows"
)

// peerOf identifies the process at the other end of a named pipe: its
// process id (GetNamedPipeClientProcessId, read by the listener as it
// accepted the connection), and from its process token the
// user SID, account name and terminal session id. The session id is one a
// process cannot change, so it is what the helper is admitted for.
func peerOf(c net.Conn) (Peer, error) {
	p := Peer{UID: -1, LoginUID: -1}
	pc, ok := c.(interface{ ClientProcessID() uint32 })
	if !ok {
		return p, errors.New("not a named pipe connection")
	}
	pid := pc.ClientProcessID()
	if pid == 0 {
		return p, errors.New("named pipe connection without a client process id")
	}
	p.PID = int(pid)
	sid, name, sess, err := processIdentity(pid)
	if err != nil {
		return p, err
	}
	p.SID, p.Username, p.OSSession = sid, name, strconv.FormatUint(uint64(sess), 10)
	return p, nil
}

// processIdentity reads pid's token: user SID, DOMAIN\account, session id.
func processIdentity(pid uint32) (sid, name string, session uint32, err error) {
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION, false, pid)
	if err != nil {
		return "", "", 0, fmt.Errorf("open client process %d: %w", pid, err)
	}
	defer windows.CloseHandle(h)
	var tok windows.Token
	if err := windows.OpenProcessToken(h, windows.TOKEN_QUERY, &tok); err != nil {
		return "", "", 0, fmt.Errorf("open client process token: %w", err)
	}
	defer tok.Close()
	return tokenIdentity(tok)
}

func tokenIdentity(tok windows.Token) (sid, name string, session uint32, err error) {
	tu, err := tok.GetTokenUser()
	if err != nil {
		return "", "", 0, fmt.Errorf("token user: %w", err)
	}
	sid = tu.User.Sid.String()
	if acct, dom, _, err := tu.User.Sid.LookupAccount(""); err == nil {
		name = acct
		if dom != "" {
			name = dom + `\` + acct
		}
	}
	var n uint32
	if err := windows.GetTokenInformation(tok, windows.TokenSessionId, (*byte)(unsafe.Pointer(&session)), uint32(unsafe.Sizeof(session)), &n); err != nil {
		return sid, name, 0, fmt.Errorf("token session id: %w", err)
	}
	return sid, name, session, nil
}
