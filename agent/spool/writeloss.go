package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"time"

	bolt "go.etcd.io/bbolt"
)

// Write failures. An Append whose transaction cannot be written (disk full,
// I/O error, read-only remount) loses its items: there is nowhere durable to
// put them. They must not be lost silently, so the spool counts them in
// memory at once (Stats.DroppedTotal and Stats.WriteFailures include them,
// Stats.LastError names the failure while it lasts) and, in the first
// transaction that commits again, persists the counts and appends the
// WriteFailReport item naming how many were lost, of which severities and
// when. Any later commit does that (an Append, a Delete after an ack); a
// timer also retries every RetryInterval so the report is stored even if
// nothing else writes. Counts not yet persisted die with the process.

var keyWriteFailures = []byte("write_failures")

// WriteLoss is what WriteFailReport is told.
type WriteLoss struct {
	Lost       uint64           // items whose Append failed
	BySeverity map[uint8]uint64 // Lost per severity
	First      time.Time        // first and last failed Append of the episode
	Last       time.Time
	Err        string // the last write error
	Total      uint64 // write failures over the file's life, this episode included
}

type writeLossState struct {
	persisted uint64 // write-failure total stored in meta
	pending   uint64 // lost since the last stored report
	bySev     [MaxSeverity + 1]uint64
	first     time.Time
	last      time.Time
	lastErr   string
	failing   bool   // the last write failed; cleared by the next commit
	notice    string // what Open recovered from, if anything
	timer     *time.Timer
}

// addTo fills the write-failure parts of st.
func (wl *writeLossState) addTo(st *Stats) {
	st.DroppedTotal += wl.pending
	st.WriteFailures = wl.persisted + wl.pending
	switch {
	case wl.failing && wl.pending > 0:
		st.LastError = fmt.Sprintf("spool write failed: %s (%d findings lost since %s)", wl.lastErr, wl.pending, wl.first.UTC().Format(time.RFC3339))
	case wl.failing:
		st.LastError = "spool write failed: " + wl.lastErr
	default:
		st.LastError = wl.notice
	}
}

// noteWriteFailure counts items lost to a failed write and makes sure a
// retry is scheduled.
func (s *Spool) noteWriteFailure(items []Item, err error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	now := time.Now()
	s.mu.Lock()
	wl := &s.wl
	was := wl.failing
	if len(items) > 0 {
		if wl.pending == 0 {
			wl.first = now
		}
		wl.last = now
		wl.pending += uint64(len(items))
		for _, it := range items {
			wl.bySev[normSeverity(it.Severity)]++
		}
	}
	wl.failing, wl.lastErr = true, err.Error()
	pending := wl.pending
	s.mu.Unlock()
	if !was {
		s.log.Error("spool: write failed; findings are counted as lost until writes succeed", "err", err, "lost", pending)
	}
	if !s.closed && wl.timer == nil && pending > 0 {
		wl.timer = time.AfterFunc(s.opts.RetryInterval, s.retryWrite)
	}
}

// retryWrite tries to store the pending report with nothing else.
func (s *Spool) retryWrite() {
	_, err := s.update(func(*writer) error { return errNothingToDo })
	s.wmu.Lock()
	defer s.wmu.Unlock()
	s.wl.timer = nil
	if s.closed || errors.Is(err, ErrClosed) {
		return
	}
	s.mu.Lock()
	pending := s.wl.pending
	if err != nil {
		s.wl.failing, s.wl.lastErr = true, err.Error()
	}
	s.mu.Unlock()
	if pending > 0 {
		s.wl.timer = time.AfterFunc(s.opts.RetryInterval, s.retryWrite)
	}
}

// stopRetry is called with wmu held by Close.
func (s *Spool) stopRetry() {
	if s.wl.timer != nil {
		s.wl.timer.Stop()
		s.wl.timer = nil
	}
}

// flushWriteLoss, inside a read-write transaction (wmu held), persists the
// pending loss and appends its report. It reports whether there was one;
// the in-memory counts are cleared by writeSucceeded once the commit did.
func (s *Spool) flushWriteLoss(w *writer) (bool, error) {
	wl := &s.wl
	if wl.pending == 0 {
		return false, nil
	}
	w.st.dropped += wl.pending
	w.wlTotal = wl.persisted + wl.pending
	if err := w.meta.Put(keyWriteFailures, binary.BigEndian.AppendUint64(nil, w.wlTotal)); err != nil {
		return false, fmt.Errorf("store write-failure count: %w", err)
	}
	if s.opts.WriteFailReport == nil {
		return true, nil
	}
	loss := WriteLoss{Lost: wl.pending, BySeverity: map[uint8]uint64{}, First: wl.first, Last: wl.last, Err: wl.lastErr, Total: w.wlTotal}
	for sev, n := range wl.bySev {
		if n > 0 {
			loss.BySeverity[uint8(sev)] = n
		}
	}
	rep := s.opts.WriteFailReport(loss)
	if rep.Payload == nil {
		return true, nil
	}
	if sz := recordSize(len(rep.Payload)); sz > s.maxBytes {
		s.log.Error("spool: write-failure report larger than MaxBytes; not stored", "size", sz, "max_bytes", s.maxBytes)
		return true, nil
	}
	if err := w.put(rep); err != nil {
		return false, err
	}
	if _, err := s.enforce(w); err != nil {
		return false, err
	}
	return true, nil
}

// writeSucceeded runs with wmu and mu held after a commit.
func (s *Spool) writeSucceeded(w *writer, flushed bool) {
	wl := &s.wl
	if wl.failing {
		s.log.Info("spool: writes succeed again", "lost", wl.pending)
	}
	wl.failing = false
	if !flushed {
		return
	}
	wl.persisted = w.wlTotal
	wl.pending, wl.bySev, wl.first, wl.last, wl.lastErr = 0, [MaxSeverity + 1]uint64{}, time.Time{}, time.Time{}, ""
	select {
	case s.notify <- struct{}{}:
	default:
	}
}

// initWriteLoss loads the persisted write-failure total.
func (s *Spool) initWriteLoss(w *writer) error {
	v := w.meta.Get(keyWriteFailures)
	if v == nil {
		return nil
	}
	if len(v) != 8 {
		return fmt.Errorf("corrupt write-failure count (%d bytes): %w", len(v), errDamaged)
	}
	w.wlTotal = binary.BigEndian.Uint64(v)
	return nil
}

// loadReadOnly loads the state without writing, for an Open on a disk that
// cannot take the usual state write. Appends then fail and are counted.
func (s *Spool) loadReadOnly() error {
	return s.db.View(func(tx *bolt.Tx) error {
		rec, meta := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta)
		if rec == nil || meta == nil || tx.Bucket(bucketBySev) == nil {
			return errors.New("buckets missing")
		}
		if k, _ := rec.Cursor().First(); k != nil && meta.Get(keyCipher) == nil {
			return errors.New("records not sealed yet")
		}
		v := meta.Get(keyState)
		if v == nil {
			return errors.New("state missing")
		}
		st, err := decodeState(v)
		if err != nil {
			return err
		}
		w := &writer{meta: meta}
		if err := s.initWriteLoss(w); err != nil {
			return err
		}
		s.st, s.wl.persisted = st, w.wlTotal
		return nil
	})
}
