// Package spool is the agent's durable, byte-bounded on-disk queue of
// findings.
//
// A Spool is a single bbolt file. Every Append and Delete is one bbolt
// read-write transaction that is fsynced on commit, so an Append that has
// returned survives kill -9 and power loss, and an Append that was interrupted
// left nothing behind.
//
// Payloads are opaque bytes (a serialized Finding without its sequence
// number); the spool assigns the sequence number. Sequence numbers start at 1
// and are strictly increasing over the life of the file, including across
// Close/Open and crashes: the next sequence number is persisted in the same
// transaction as the records that used it.
//
// The sum of stored payload bytes plus RecordOverhead per record is bounded by
// Options.MaxBytes. When an Append would exceed the bound, records are evicted
// lowest severity first and, within a severity, oldest (lowest seq) first. The
// items being appended are candidates too. Evictions are counted and can be
// reported in the same transaction through Options.DropReport.
//
// On-disk layout (all integers big-endian so cursors iterate in order):
//
//	records      seq(8)            -> severity(1) | nonce(12) | AES-GCM(payload) (crypt.go)
//	by_severity  severity(1)|seq(8) -> (empty)          eviction index
//	meta         "state"           -> version(8) | nextSeq(8) | count(8) | bytes(8) | droppedTotal(8)
//	meta         "cipher"          -> "aes-256-gcm/1" (all records sealed)
//	meta         "write_failures"  -> total(8)          (writeloss.go)
//
// Open verifies the file first and never panics on a damaged one: it is
// moved aside, what can be read is kept, and the loss reported (recover.go).
// A write that fails (disk full, I/O error) loses its items, but they are
// counted and reported once writes succeed again (writeloss.go).
package spool

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"os"
	"path/filepath"
	"sync"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

const (
	// RecordOverhead is the fixed number of bytes charged against MaxBytes
	// for every stored record in addition to its payload length. It roughly
	// covers the seq key, the severity byte, the index entry and bbolt's
	// per-element headers.
	RecordOverhead = 32

	// DefaultMaxBytes is used when Options.MaxBytes is 0.
	DefaultMaxBytes int64 = 64 << 20

	// MinSeverity and MaxSeverity bound Item.Severity. Severity 0 is stored
	// as MinSeverity and anything above MaxSeverity as MaxSeverity.
	MinSeverity uint8 = 1
	MaxSeverity uint8 = 5

	// lockTimeout is how long Open waits for the file lock held by another
	// process (or another Spool in this process) before giving up.
	lockTimeout = 500 * time.Millisecond

	schemaVersion uint64 = 1
)

var (
	// ErrTooLarge is returned by Append when an item's own size (payload
	// plus RecordOverhead) exceeds MaxBytes. Nothing from that Append is
	// stored.
	ErrTooLarge = errors.New("item larger than spool MaxBytes")

	// ErrLocked is returned by Open when another process (or another open
	// Spool) holds the file.
	ErrLocked = errors.New("spool is locked by another process")

	// ErrClosed is returned by operations on a closed Spool.
	ErrClosed = errors.New("spool is closed")
)

var (
	bucketRecords = []byte("records")
	bucketBySev   = []byte("by_severity")
	bucketMeta    = []byte("meta")
	keyState      = []byte("state")
)

// Options configures a Spool.
type Options struct {
	// MaxBytes bounds the sum over stored records of len(Payload) +
	// RecordOverhead. DefaultMaxBytes if 0.
	MaxBytes int64

	// DropReport, if set, is called inside the Append transaction when that
	// Append had to evict records, with the number evicted per severity. The
	// returned item is appended (with the next seq, after the Append's own
	// items) in the same transaction and counts toward the bound. If its
	// Payload is nil, or it alone is larger than MaxBytes, nothing is
	// appended. Evictions caused by the report item itself are counted in
	// DroppedTotal but not reported again. DropReport must not call back into
	// the Spool.
	DropReport func(dropped map[uint8]uint64) Item

	// Logger receives warnings about evictions. Discarded if nil.
	Logger *slog.Logger

	// KeyPath is the file holding the key records are sealed with, created
	// (0600) at first use. Default: spool.key in the spool's directory.
	KeyPath string

	// WriteFailReport, if set, builds the item appended (in the first
	// transaction that commits again) after Appends failed to write, naming
	// what was lost. Same rules as DropReport.
	WriteFailReport func(WriteLoss) Item

	// DamageReport, if set, builds the item stored in the fresh spool that
	// replaces a damaged one. Same rules as DropReport.
	DamageReport func(Damage) Item

	// RetryInterval is how often, after a failed write, the spool tries to
	// store the write-failure report on its own. Default 10 s.
	RetryInterval time.Duration
}

// Item is one finding to append.
type Item struct {
	Severity uint8 // 1..5 (info..critical); 0 is treated as 1, >5 as 5
	Payload  []byte
}

// Record is a stored item with its assigned sequence number.
type Record struct {
	Seq      uint64
	Severity uint8
	Payload  []byte
}

// Stats describes the spool's contents. It is kept in memory and persisted in
// the meta bucket with every write.
type Stats struct {
	Count   int    // records stored
	Bytes   int64  // sum of len(Payload)+RecordOverhead over stored records
	NextSeq uint64 // seq the next appended item will get
	// RejectedTotal: records set aside (SetAside), over the file's life.
	RejectedTotal uint64
	DroppedTotal  uint64 // records evicted to honour MaxBytes, or lost to write failures, over the file's life

	// WriteFailures counts items lost because their Append could not be
	// written (disk full, I/O error); they are included in DroppedTotal.
	WriteFailures uint64
	// LastError describes an ongoing write failure or, after Open recovered
	// from a damaged file, that recovery; empty when none.
	LastError string
}

// Spool is a durable, byte-bounded queue. It is safe for concurrent use.
type Spool struct {
	db       *bolt.DB
	maxBytes int64
	report   func(map[uint8]uint64) Item
	log      *slog.Logger
	notify   chan struct{}
	seal     *sealer
	opts     Options

	// wmu serialises writers (bbolt does too) so that the in-memory state
	// can be updated in commit order; st is only modified with both wmu and
	// mu held, so writers may read it holding wmu alone.
	wmu    sync.Mutex
	closed bool

	mu sync.Mutex
	st state
	// rejected is RejectedTotal (setaside.go), guarded by mu.
	rejected uint64
	wl       writeLossState // like st: changed with wmu and mu held
}

type state struct {
	nextSeq uint64
	count   int64
	bytes   int64
	dropped uint64
	// unreported counts, per severity, evictions no drop report has named
	// yet: those caused by storing the previous report itself. The next
	// report includes them, so reports add up to DroppedTotal.
	unreported [MaxSeverity + 1]uint64
}

func (st state) stats() Stats {
	return Stats{Count: int(st.count), Bytes: st.bytes, NextSeq: st.nextSeq, DroppedTotal: st.dropped}
}

// Open opens or creates the spool file at path (mode 0600; the parent
// directory must exist). Reopening continues the sequence numbering. If
// another process has the file open, Open fails within about half a second
// with an error wrapping ErrLocked.
//
// An existing file is verified first (structure, and every record
// authenticated under the key). A damaged file, or one the key cannot read,
// never makes Open panic or fail: it is moved to path.damaged-<time>, a
// fresh spool is created holding every record that could be read (under
// their original seqs) and, if opts.DamageReport is set, a report of the
// loss; Stats.LastError then says so.
//
// If the stored data exceeds opts.MaxBytes (for example because MaxBytes was
// lowered), Open evicts down to the bound under the usual rules.
func Open(path string, opts Options) (*Spool, error) {
	if opts.MaxBytes == 0 {
		opts.MaxBytes = DefaultMaxBytes
	}
	if opts.MaxBytes < RecordOverhead {
		return nil, fmt.Errorf("spool: open %s: MaxBytes %d is smaller than the per-record overhead %d", path, opts.MaxBytes, RecordOverhead)
	}
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.DiscardHandler)
	}
	if opts.KeyPath == "" {
		opts.KeyPath = filepath.Join(filepath.Dir(path), "spool.key")
	}
	if opts.RetryInterval <= 0 {
		opts.RetryInterval = 10 * time.Second
	}
	return openVerified(path, opts)
}

// openFile opens path read-write with key and loads it (init). It is the
// whole of Open for a file already verified or new; fresh, when set, is the
// state a recovered spool starts from.
func openFile(path string, opts Options, key []byte, fresh *freshStart) (*Spool, error) {
	lg := opts.Logger
	db, err := bolt.Open(path, 0o600, &bolt.Options{
		Timeout:        lockTimeout,
		NoFreelistSync: true,
		FreelistType:   bolt.FreelistMapType,
	})
	if err != nil {
		if errors.Is(err, berrors.ErrTimeout) {
			return nil, fmt.Errorf("spool: open %s: %w", path, ErrLocked)
		}
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	defer func() {
		// bbolt panics on some damage; release the file before the
		// caller's guard turns the panic into an error.
		if p := recover(); p != nil {
			closeQuietly(db)
			panic(p)
		}
	}()
	// The file may predate us with looser permissions; findings are
	// sensitive, so tighten them.
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		if err := os.Chmod(path, 0o600); err != nil {
			lg.Warn("spool: cannot restrict file permissions", "path", path, "err", err)
		}
	}

	sl, err := newSealer(key)
	if err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("spool: open %s: key: %w", path, err)
	}
	s := &Spool{
		db:       db,
		maxBytes: opts.MaxBytes,
		report:   opts.DropReport,
		log:      lg.With("component", "spool"),
		notify:   make(chan struct{}, 1),
		seal:     sl,
		opts:     opts,
	}
	if err := s.init(fresh); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	if err := s.loadRejected(); err != nil {
		_ = db.Close()
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	return s, nil
}

// init creates the buckets, loads the persisted state and enforces the bound.
func (s *Spool) init(fresh *freshStart) error {
	var dropped map[uint8]uint64
	body := func(tx *bolt.Tx) error {
		rec, err := tx.CreateBucketIfNotExists(bucketRecords)
		if err != nil {
			return err
		}
		idx, err := tx.CreateBucketIfNotExists(bucketBySev)
		if err != nil {
			return err
		}
		meta, err := tx.CreateBucketIfNotExists(bucketMeta)
		if err != nil {
			return err
		}
		st := state{nextSeq: 1}
		if v := meta.Get(keyState); v != nil {
			if st, err = decodeState(v); err != nil {
				return err
			}
		} else if k, _ := rec.Cursor().First(); k != nil {
			return errors.New("records present but state missing")
		}
		// Defensive: never reuse a seq that is still stored.
		if k, _ := rec.Cursor().Last(); k != nil {
			if last := binary.BigEndian.Uint64(k); last >= st.nextSeq {
				s.log.Error("spool: next seq behind stored records; repairing", "next_seq", st.nextSeq, "last_stored", last)
				st.nextSeq = last + 1
			}
		}
		w := &writer{rec: rec, idx: idx, meta: meta, st: st, seal: s.seal}
		if err := s.initSealed(w); err != nil {
			return err
		}
		if err := s.initWriteLoss(w); err != nil {
			return err
		}
		if fresh != nil {
			if err := s.restore(w, fresh); err != nil {
				return err
			}
		}
		if dropped, err = s.enforce(w); err != nil {
			return err
		}
		if err := w.writeState(); err != nil {
			return err
		}
		s.st = w.st
		s.wl.persisted = w.wlTotal
		return nil
	}
	// An error from body means the content is not what we wrote (Open
	// verified the structure already); an error from the commit is the
	// disk refusing the write.
	var bodyErr error
	err := s.db.Update(func(tx *bolt.Tx) error { bodyErr = body(tx); return bodyErr })
	if bodyErr != nil {
		return fmt.Errorf("%w: %w", errDamaged, bodyErr)
	}
	if err != nil && fresh == nil {
		// A full disk must not stop the agent: load read-only and let
		// Appends fail, counted, until space returns.
		if lerr := s.loadReadOnly(); lerr == nil {
			s.log.Error("spool: cannot write at open; findings will be counted as lost until writes succeed", "err", err)
			s.noteWriteFailure(nil, err)
			return nil
		}
	}
	if err != nil {
		return err
	}
	if len(dropped) > 0 {
		s.log.Warn("spool: over MaxBytes at open; evicted findings", "dropped", dropped, "dropped_total", s.st.dropped)
	}
	return nil
}

// Append stores items in one durable transaction and returns the first and
// last seq assigned (consecutive). An empty Append is a no-op returning
// (0, 0, nil). If any item is larger than MaxBytes the whole Append fails with
// ErrTooLarge and nothing is stored.
//
// After adding the items, records are evicted while the bound is exceeded
// (lowest severity first, oldest first within a severity); the new items are
// candidates too, so a returned seq may already have been evicted.
func (s *Spool) Append(items []Item) (first, last uint64, err error) {
	if len(items) == 0 {
		return 0, 0, nil
	}
	for i, it := range items {
		if sz := recordSize(len(it.Payload)); sz > s.maxBytes {
			return 0, 0, fmt.Errorf("spool: append: item %d is %d bytes with overhead, MaxBytes %d: %w", i, sz, s.maxBytes, ErrTooLarge)
		}
	}

	var dropped map[uint8]uint64
	st, err := s.update(func(w *writer) error {
		first = w.st.nextSeq
		for _, it := range items {
			if err := w.put(it); err != nil {
				return err
			}
		}
		last = w.st.nextSeq - 1
		var err error
		dropped, err = s.enforce(w)
		return err
	})
	if err != nil {
		if !errors.Is(err, ErrClosed) {
			s.noteWriteFailure(items, err)
		}
		return 0, 0, fmt.Errorf("spool: append: %w", err)
	}

	select {
	case s.notify <- struct{}{}:
	default:
	}
	if len(dropped) > 0 {
		s.log.Warn("spool: full; evicted findings", "dropped", dropped, "dropped_total", st.dropped, "bytes", st.bytes, "max_bytes", s.maxBytes)
	}
	return first, last, nil
}

// ReadAfter returns stored records with seq > after in ascending seq order,
// at most maxRecords of them and at most maxBytes of payload in total, but
// always at least one record if any exists, even if it alone is bigger than
// maxBytes. maxRecords <= 0 or maxBytes <= 0 means no limit of that kind.
// The returned payloads are copies owned by the caller.
func (s *Spool) ReadAfter(after uint64, maxRecords int, maxBytes int) ([]Record, error) {
	if after == math.MaxUint64 {
		return nil, nil
	}
	var out []Record
	err := s.db.View(func(tx *bolt.Tx) error {
		b := tx.Bucket(bucketRecords)
		if b == nil {
			return errors.New("records bucket missing")
		}
		total := 0
		c := b.Cursor()
		for k, v := c.Seek(seqKey(after + 1)); k != nil; k, v = c.Next() {
			if len(k) != 8 || len(v) < 1 {
				return fmt.Errorf("corrupt record %x", k)
			}
			if maxRecords > 0 && len(out) >= maxRecords {
				break
			}
			n := storedPayloadLen(v)
			if maxBytes > 0 && len(out) > 0 && total+n > maxBytes {
				break
			}
			seq := binary.BigEndian.Uint64(k)
			sev, p, err := s.seal.open(seq, v)
			if err != nil {
				// Damaged since Open verified it. Skip rather than
				// block every finding behind it; the next Open
				// quarantines the file and reports the loss.
				s.log.Error("spool: unreadable record skipped", "seq", seq, "err", err)
				continue
			}
			out = append(out, Record{Seq: seq, Severity: sev, Payload: p})
			total += n
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("spool: read: %w", mapClosed(err))
	}
	return out, nil
}

// Delete removes the records with the given seqs in one durable transaction.
// Seqs that are not stored (already deleted, evicted, or never assigned) are
// ignored. If none of the seqs is stored, nothing is written.
func (s *Spool) Delete(seqs []uint64) error {
	if len(seqs) == 0 {
		return nil
	}
	_, err := s.update(func(w *writer) error {
		_, err := w.removeSeqs(seqs)
		return err
	})
	if err != nil {
		return fmt.Errorf("spool: delete: %w", err)
	}
	return nil
}

// Stats returns the current counters without touching the disk.
func (s *Spool) Stats() Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.st.stats()
	st.RejectedTotal = s.rejected
	s.wl.addTo(&st)
	return st
}

// Notify returns a channel (capacity 1) that receives a coalesced,
// non-blocking signal after each successful Append. The same channel is
// returned every time.
func (s *Spool) Notify() <-chan struct{} { return s.notify }

// Close waits for in-flight writes and closes the file. Further calls return
// ErrClosed from operations; Close itself is idempotent.
func (s *Spool) Close() error {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	s.stopRetry()
	if err := s.db.Close(); err != nil {
		return fmt.Errorf("spool: close: %w", err)
	}
	return nil
}

// errNothingToDo makes update roll back instead of committing (and fsyncing)
// an unchanged database; update then reports success.
var errNothingToDo = errors.New("nothing to do")

// update runs fn in one read-write transaction, persists the resulting state
// in it, commits, and on success publishes the state in memory. It returns
// the new state.
func (s *Spool) update(fn func(w *writer) error) (state, error) {
	s.wmu.Lock()
	defer s.wmu.Unlock()
	if s.closed {
		return state{}, ErrClosed
	}
	tx, err := s.db.Begin(true)
	if err != nil {
		return state{}, mapClosed(err)
	}
	defer func() { _ = tx.Rollback() }() // no-op after a successful Commit; also covers panics in fn

	w := &writer{
		rec:     tx.Bucket(bucketRecords),
		idx:     tx.Bucket(bucketBySev),
		meta:    tx.Bucket(bucketMeta),
		st:      s.st,
		seal:    s.seal,
		wlTotal: s.wl.persisted,
	}
	if w.rec == nil || w.idx == nil || w.meta == nil {
		return state{}, errors.New("buckets missing")
	}
	// Records are keyed by an increasing seq, so inserts are appends: pack
	// leaf pages fully.
	w.rec.FillPercent = 1.0
	flushed, err := s.flushWriteLoss(w)
	if err != nil {
		return state{}, err
	}
	if err := fn(w); err != nil {
		if errors.Is(err, errNothingToDo) && !flushed {
			return s.st, nil
		}
		if !errors.Is(err, errNothingToDo) {
			return state{}, err
		}
	}
	if err := w.writeState(); err != nil {
		return state{}, err
	}
	if err := tx.Commit(); err != nil {
		return state{}, err
	}
	s.mu.Lock()
	s.st = w.st
	s.writeSucceeded(w, flushed)
	s.mu.Unlock()
	return w.st, nil
}

// enforce evicts until the bound holds and, if anything was evicted and a
// DropReport is configured, appends the report item and evicts again (the
// second round is counted but not reported). It returns all evictions.
func (s *Spool) enforce(w *writer) (map[uint8]uint64, error) {
	if w.st.bytes <= s.maxBytes {
		return nil, nil
	}
	dropped := make(map[uint8]uint64)
	if err := w.evict(s.maxBytes, dropped); err != nil {
		return nil, err
	}
	if len(dropped) == 0 || s.report == nil {
		return dropped, nil
	}
	toReport := maps.Clone(dropped)
	for sev, n := range w.st.unreported {
		if n > 0 {
			toReport[uint8(sev)] += n
		}
	}
	rep := s.report(toReport)
	if rep.Payload == nil {
		return dropped, nil
	}
	if sz := recordSize(len(rep.Payload)); sz > s.maxBytes {
		s.log.Error("spool: drop report item larger than MaxBytes; not stored", "size", sz, "max_bytes", s.maxBytes)
		return dropped, nil
	}
	if err := w.put(rep); err != nil {
		return nil, err
	}
	w.st.unreported = [MaxSeverity + 1]uint64{}
	again := make(map[uint8]uint64)
	if err := w.evict(s.maxBytes, again); err != nil {
		return nil, err
	}
	for sev, n := range again {
		dropped[sev] += n
		w.st.unreported[sev] += n
	}
	return dropped, nil
}

// writer holds the buckets of one read-write transaction and the state as it
// will be after the transaction commits.
type writer struct {
	rec, idx, meta *bolt.Bucket
	st             state
	seal           *sealer
	wlTotal        uint64 // persisted write-failure total after this transaction
}

func (w *writer) put(it Item) error {
	sev := normSeverity(it.Severity)
	seq := w.st.nextSeq
	if seq == math.MaxUint64 {
		return errors.New("sequence numbers exhausted")
	}
	v := w.seal.seal(seq, sev, it.Payload)
	if err := w.rec.Put(seqKey(seq), v); err != nil {
		return fmt.Errorf("put record %d: %w", seq, err)
	}
	if err := w.idx.Put(sevKey(sev, seq), []byte{}); err != nil {
		return fmt.Errorf("put index %d: %w", seq, err)
	}
	w.st.nextSeq++
	w.st.count++
	w.st.bytes += recordSize(len(it.Payload))
	return nil
}

// remove deletes seq if stored and reports whether it was.
// removeSeqs removes the stored records among seqs and returns how many;
// errNothingToDo (roll back, no fsync) when none was stored.
func (w *writer) removeSeqs(seqs []uint64) (int, error) {
	n := 0
	for _, seq := range seqs {
		ok, err := w.remove(seq)
		if err != nil {
			return n, err
		}
		if ok {
			n++
		}
	}
	if n == 0 {
		return 0, errNothingToDo
	}
	return n, nil
}

func (w *writer) remove(seq uint64) (bool, error) {
	k := seqKey(seq)
	v := w.rec.Get(k)
	if v == nil {
		return false, nil
	}
	if len(v) < 1 {
		return false, fmt.Errorf("corrupt record %d", seq)
	}
	sev, size := v[0], recordSize(storedPayloadLen(v)) // read before v is invalidated
	if err := w.rec.Delete(k); err != nil {
		return false, fmt.Errorf("delete record %d: %w", seq, err)
	}
	if err := w.idx.Delete(sevKey(sev, seq)); err != nil {
		return false, fmt.Errorf("delete index %d: %w", seq, err)
	}
	w.st.count--
	w.st.bytes -= size
	return true, nil
}

// evict removes records in (severity, seq) order until the bound holds,
// counting them per severity in dropped and in the persistent total. Each
// step is one index seek plus one record delete: O(log n).
func (w *writer) evict(maxBytes int64, dropped map[uint8]uint64) error {
	for w.st.bytes > maxBytes {
		c := w.idx.Cursor()
		k, _ := c.First()
		if k == nil {
			// Accounting says we are over the bound but nothing is
			// indexed. Should be impossible; repair rather than wedge
			// the spool forever.
			if rk, _ := w.rec.Cursor().First(); rk != nil {
				return errors.New("eviction index empty but records present")
			}
			w.st.count, w.st.bytes = 0, 0
			return nil
		}
		if len(k) != 9 {
			return fmt.Errorf("corrupt index key %x", k)
		}
		sev, seq := k[0], binary.BigEndian.Uint64(k[1:])
		if err := c.Delete(); err != nil {
			return fmt.Errorf("evict index %d: %w", seq, err)
		}
		rk := seqKey(seq)
		if v := w.rec.Get(rk); v != nil {
			size := recordSize(storedPayloadLen(v))
			if err := w.rec.Delete(rk); err != nil {
				return fmt.Errorf("evict record %d: %w", seq, err)
			}
			w.st.count--
			w.st.bytes -= size
			dropped[sev]++
			w.st.dropped++
		}
	}
	return nil
}

func (w *writer) writeState() error {
	return w.meta.Put(keyState, encodeState(w.st))
}

func encodeState(st state) []byte {
	b := make([]byte, 40+8*len(st.unreported))
	binary.BigEndian.PutUint64(b[0:], schemaVersion)
	binary.BigEndian.PutUint64(b[8:], st.nextSeq)
	binary.BigEndian.PutUint64(b[16:], uint64(st.count))
	binary.BigEndian.PutUint64(b[24:], uint64(st.bytes))
	binary.BigEndian.PutUint64(b[32:], st.dropped)
	for i, n := range st.unreported {
		binary.BigEndian.PutUint64(b[40+8*i:], n)
	}
	return b
}

func decodeState(b []byte) (state, error) {
	if len(b) < 40 {
		return state{}, fmt.Errorf("corrupt state (%d bytes)", len(b))
	}
	if v := binary.BigEndian.Uint64(b[0:]); v != schemaVersion {
		return state{}, fmt.Errorf("unsupported spool schema version %d", v)
	}
	st := state{
		nextSeq: binary.BigEndian.Uint64(b[8:]),
		count:   int64(binary.BigEndian.Uint64(b[16:])),
		bytes:   int64(binary.BigEndian.Uint64(b[24:])),
		dropped: binary.BigEndian.Uint64(b[32:]),
	}
	// Files written before unreported counts existed hold 40 bytes.
	for i := range st.unreported {
		if off := 40 + 8*i; len(b) >= off+8 {
			st.unreported[i] = binary.BigEndian.Uint64(b[off:])
		}
	}
	if st.nextSeq == 0 {
		st.nextSeq = 1
	}
	return st, nil
}

func recordSize(payloadLen int) int64 { return int64(payloadLen) + RecordOverhead }

func normSeverity(s uint8) uint8 {
	switch {
	case s < MinSeverity:
		return MinSeverity
	case s > MaxSeverity:
		return MaxSeverity
	}
	return s
}

func seqKey(seq uint64) []byte {
	k := make([]byte, 8)
	binary.BigEndian.PutUint64(k, seq)
	return k
}

func sevKey(sev uint8, seq uint64) []byte {
	k := make([]byte, 9)
	k[0] = sev
	binary.BigEndian.PutUint64(k[1:], seq)
	return k
}

func mapClosed(err error) error {
	if errors.Is(err, berrors.ErrDatabaseNotOpen) {
		return ErrClosed
	}
	return err
}
