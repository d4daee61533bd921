//go:build !windows

package session

import (
	"errors"
	"fmt"
	"net"
	"os/user"
	"strconv"
)

// peerOf asks the kernel who is at the other end of c (SO_PEERCRED,
// LOCAL_PEERCRED): the uid and pid at connect time, which the process
// cannot choose.
func peerOf(c net.Conn) (Peer, error) {
	p := Peer{UID: -1, LoginUID: -1}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return p, errors.New("not a Unix socket connection")
	}
	uid, pid, err := peerCredentials(uc)
	if err != nil {
		return p, fmt.Errorf("peer credentials: %w", err)
	}
	p.UID, p.PID = uid, pid
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		p.Username = u.Username
	}
	p.LoginUID = loginUID(pid)
	return p, nil
}
