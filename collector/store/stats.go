package store

import "fmt"

// Stats are the store's figures for monitoring.
type Stats struct {
	LSMBytes, VlogBytes int64 // Badger's on-disk size, as Badger last measured it
	QueueDepth          int   // batches waiting for the committer
	QueueCapacity       int
	DiskFreeBytes       uint64 // free to an unprivileged writer on the store's filesystem
	DiskSizeBytes       uint64
	Devices             int
}

// Stats reads the store's figures. Disk figures are zero (with an error)
// when the filesystem cannot be read or the store is in memory.
func (s *Store) Stats() (Stats, error) {
	lsm, vlog := s.db.Size()
	st := Stats{LSMBytes: lsm, VlogBytes: vlog, QueueDepth: len(s.queue), QueueCapacity: cap(s.queue)}
	s.devMu.Lock()
	st.Devices = len(s.devices)
	s.devMu.Unlock()
	dir := s.db.Opts().Dir
	if s.opts.InMemory || dir == "" {
		return st, nil
	}
	free, size, err := diskSpace(dir)
	if err != nil {
		return st, fmt.Errorf("store: free space of %s: %w", dir, err)
	}
	st.DiskFreeBytes, st.DiskSizeBytes = free, size
	return st, nil
}
