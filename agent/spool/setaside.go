package spool

import (
	"encoding/binary"
	"fmt"

	bolt "go.etcd.io/bbolt"
)

// keyRejected in the meta bucket holds RejectedTotal (8 bytes). It is kept
// apart from the state record so that the two evolve independently.
var keyRejected = []byte("rejected")

// SetAside removes the records with the given seqs, like Delete, and counts
// each one removed in Stats().RejectedTotal, in the same durable
// transaction: a finding the collector refused as permanently invalid (or
// that this binary cannot decode) leaves the queue for good, is never sent
// again, and is not forgotten. Seqs not stored are ignored. It returns how
// many were removed.
func (s *Spool) SetAside(seqs []uint64) (int, error) {
	if len(seqs) == 0 {
		return 0, nil
	}
	n := 0
	var total uint64
	_, err := s.update(func(w *writer) error {
		var err error
		if n, err = w.removeSeqs(seqs); err != nil {
			return err
		}
		total = readRejected(w.meta) + uint64(n)
		v := make([]byte, 8)
		binary.BigEndian.PutUint64(v, total)
		return w.meta.Put(keyRejected, v)
	})
	if err != nil {
		return 0, fmt.Errorf("spool: set aside: %w", err)
	}
	if n > 0 {
		s.mu.Lock()
		s.rejected = total
		s.mu.Unlock()
	}
	return n, nil
}

func readRejected(meta *bolt.Bucket) uint64 {
	if v := meta.Get(keyRejected); len(v) == 8 {
		return binary.BigEndian.Uint64(v)
	}
	return 0
}

// loadRejected reads RejectedTotal at open.
func (s *Spool) loadRejected() error {
	return s.db.View(func(tx *bolt.Tx) error {
		if meta := tx.Bucket(bucketMeta); meta != nil {
			s.rejected = readRejected(meta)
		}
		return nil
	})
}
