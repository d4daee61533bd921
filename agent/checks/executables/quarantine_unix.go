//go:build unix

package executables

import (
	"io/fs"
	"os"
	"syscall"
)

func fileOwner(fi fs.FileInfo) (uid, gid int) {
	if st, ok := fi.Sys().(*syscall.Stat_t); ok {
		return int(st.Uid), int(st.Gid)
	}
	return -1, -1
}

// chownBest restores ownership when the agent may (it runs as root).
func chownBest(path string, uid, gid int) {
	if os.Geteuid() == 0 {
		os.Lchown(path, uid, gid)
	}
}
