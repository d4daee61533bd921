//go:build unix

package store

import "golang.org/x/sys/unix"

// diskFree returns the bytes available to the collector and the size of
// the filesystem holding dir.
func diskFree(dir string) (free, total int64, err error) {
	var st unix.Statfs_t
	if err := unix.Statfs(dir, &st); err != nil {
		return 0, 0, err
	}
	bs := uint64(st.Bsize)
	return int64(uint64(st.Bavail) * bs), int64(uint64(st.Blocks) * bs), nil
}
