//go:build linux

package store

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"

	"golang.org/x/sys/unix"
)

// preallocSparse allocates the blocks of every sparse file Badger keeps in
// dir (memtable logs, value log, discard stats are created by truncate and
// written through mmap). Allocating blocks already in use is a no-op.
func preallocSparse(dir string) error {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return err
	}
	for _, e := range entries {
		n := e.Name()
		if !e.Type().IsRegular() || !(strings.HasSuffix(n, ".mem") || strings.HasSuffix(n, ".vlog") || n == "DISCARD") {
			continue
		}
		info, err := e.Info()
		if err != nil {
			continue // removed meanwhile
		}
		st, ok := info.Sys().(*syscall.Stat_t)
		if !ok || st.Blocks*512 >= info.Size() {
			continue
		}
		f, err := os.OpenFile(filepath.Join(dir, n), os.O_RDWR, 0)
		if err != nil {
			continue
		}
		err = unix.Fallocate(int(f.Fd()), 0, 0, info.Size())
		f.Close()
		if err != nil && err != unix.EOPNOTSUPP {
			return err
		}
	}
	return nil
}
