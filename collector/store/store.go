// Package store owns the collector's Badger database: findings (append-only,
// by device and by time), device state and enrollment tokens. The key layout
// is documented in docs/storage.md; keep the two in step.
//
// Findings are written by one committer goroutine that gathers the batches of
// every connected agent into one synced Badger transaction (group commit), so
// an fsync is shared by many agents and an acknowledgement is only ever sent
// after the data is on disk.
package store

import (
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Key prefixes. Device IDs have a fixed length, so no separators are needed.
const (
	pfxFindingByDevice = "f/d/" // f/d/<device:26><seq:8>            -> Finding (protobuf)
	pfxFindingByTime   = "f/t/" // f/t/<observed unix ns:8><device:26><seq:8> -> empty
	pfxDevice          = "d/"   // d/<device>                         -> Device (JSON)
	pfxToken           = "t/"   // t/<token id>                       -> Token (JSON)
)

// ErrOverloaded means the commit queue is full; callers should ask the agent
// to retry later instead of queueing without bound.
var ErrOverloaded = errors.New("store: commit queue full")

// ErrClosed is returned for work submitted after Close.
var ErrClosed = errors.New("store: closed")

// Options configure Open.
type Options struct {
	// EncryptionKey enables Badger's AES encryption at rest (16, 24 or 32 bytes).
	EncryptionKey []byte
	// Retention per finding category; DefaultRetention for the rest.
	// Zero means keep forever.
	Retention        map[string]time.Duration
	DefaultRetention time.Duration
	// QueueLen bounds the batches waiting for the committer; beyond it
	// CommitFindings returns ErrOverloaded at once.
	QueueLen int
	// MaxGroup bounds how many findings share one transaction.
	MaxGroup int
	Logger   *slog.Logger
	// InMemory is for fuzzing only: no durability.
	InMemory bool
}

// Store is safe for concurrent use.
type Store struct {
	db   *badger.DB
	opts Options
	log  *slog.Logger

	queue     chan *commitReq
	closeOnce sync.Once
	closing   chan struct{}
	done      chan struct{}
	mu        sync.RWMutex // guards closed against sends on queue
	closed    bool

	devMu   sync.Mutex
	devices map[string]*Device // cache of all device records
	dirty   map[string]bool

	accessSeq atomic.Uint32
}

func (s *Store) nextAccessSeq() uint32 { return s.accessSeq.Add(1) }

type commitReq struct {
	findings []*vigilv1.Finding
	done     chan commitResult
}

type commitResult struct {
	stored, dups int
	err          error
}

// Open opens (creating if needed) the store in dir.
func Open(dir string, opts Options) (*Store, error) {
	if opts.QueueLen <= 0 {
		opts.QueueLen = 1024
	}
	if opts.MaxGroup <= 0 {
		opts.MaxGroup = 20000
	}
	if opts.Logger == nil {
		opts.Logger = slog.Default()
	}
	bopts := badger.DefaultOptions(dir).
		WithSyncWrites(true).
		WithLogger(badgerLogger{opts.Logger}).
		WithNumVersionsToKeep(1).
		// Findings are small; keep them in the LSM tree with the keys.
		WithValueThreshold(4 << 10)
	if opts.InMemory {
		bopts = badger.DefaultOptions("").WithInMemory(true).WithLogger(nil)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	if len(opts.EncryptionKey) > 0 {
		bopts = bopts.WithEncryptionKey(opts.EncryptionKey).
			WithEncryptionKeyRotationDuration(30 * 24 * time.Hour).
			// Badger requires a block index cache when encryption is on.
			WithIndexCacheSize(32 << 20)
	}
	db, err := badger.Open(bopts)
	if err != nil {
		return nil, fmt.Errorf("store: open badger in %s: %w", dir, err)
	}
	if !opts.InMemory {
		chmodTree(dir)
	}
	s := &Store{
		db: db, opts: opts, log: opts.Logger,
		queue:   make(chan *commitReq, opts.QueueLen),
		closing: make(chan struct{}),
		done:    make(chan struct{}),
		devices: map[string]*Device{},
		dirty:   map[string]bool{},
	}
	if err := s.loadDevices(); err != nil {
		db.Close()
		return nil, err
	}
	go s.committer()
	return s, nil
}

// chmodTree makes Badger's files owner-only; Badger creates them 0666&umask.
func chmodTree(dir string) {
	os.Chmod(dir, 0o700)
	entries, _ := os.ReadDir(dir)
	for _, e := range entries {
		if !e.IsDir() {
			os.Chmod(filepath.Join(dir, e.Name()), 0o600)
		}
	}
}

// DB exposes Badger for benchmarks that compare against raw writes.
func (s *Store) DB() *badger.DB { return s.db }

// CommitFindings durably stores findings, skipping any (device_id, seq) that
// is already stored. It returns once the transaction holding them is synced.
func (s *Store) CommitFindings(ctx context.Context, findings []*vigilv1.Finding) (stored, dups int, err error) {
	if len(findings) == 0 {
		return 0, 0, nil
	}
	req := &commitReq{findings: findings, done: make(chan commitResult, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return 0, 0, ErrClosed
	}
	select {
	case s.queue <- req:
	default:
		s.mu.RUnlock()
		return 0, 0, ErrOverloaded
	}
	s.mu.RUnlock()
	// Once queued the commit happens even if ctx ends: the caller just stops
	// waiting, and the agent will resend and hit the dedupe path.
	select {
	case r := <-req.done:
		return r.stored, r.dups, r.err
	case <-ctx.Done():
		return 0, 0, ctx.Err()
	}
}

func (s *Store) committer() {
	defer close(s.done)
	for req := range s.queue {
		group := []*commitReq{req}
		n := len(req.findings)
	gather:
		for n < s.opts.MaxGroup {
			select {
			case r, ok := <-s.queue:
				if !ok {
					break gather
				}
				group = append(group, r)
				n += len(r.findings)
			default:
				break gather
			}
		}
		s.commitGroup(group)
	}
}

func (s *Store) commitGroup(group []*commitReq) {
	results := make([]commitResult, len(group))
	// Encode first, per request: a finding that cannot be encoded fails
	// only its own request, not the other agents' batches in the group.
	vals := make([][][]byte, len(group))
	blobs := make([][][]*vigilv1.EvidenceBlob, len(group))
	for i, req := range group {
		vals[i] = make([][]byte, len(req.findings))
		blobs[i] = make([][]*vigilv1.EvidenceBlob, len(req.findings))
		for j, f := range req.findings {
			// Evidence is stored apart from the finding, under its own key.
			blobs[i][j], f.EvidenceData = f.EvidenceData, nil
			v, err := proto.Marshal(f)
			if err != nil {
				results[i].err = fmt.Errorf("store: encode finding seq %d: %w", f.Seq, err)
				break
			}
			vals[i][j] = v
		}
	}
	seen := make(map[string]bool, 64)
	txn := s.db.NewTransaction(true)
	var err error
	for i, req := range group {
		if results[i].err != nil {
			continue
		}
		for j, f := range req.findings {
			key := findingKey(f.DeviceId, f.Seq)
			if seen[string(key)] {
				results[i].dups++
				continue
			}
			if _, gerr := txn.Get(key); gerr == nil {
				results[i].dups++
				seen[string(key)] = true
				continue
			} else if !errors.Is(gerr, badger.ErrKeyNotFound) {
				err = fmt.Errorf("check existing finding: %w", gerr)
				break
			}
			ttl := s.retention(f.Category)
			e1 := badger.NewEntry(key, vals[i][j])
			e2 := badger.NewEntry(timeKey(f), nil)
			if ttl > 0 {
				e1, e2 = e1.WithTTL(ttl), e2.WithTTL(ttl)
			}
			entries := []*badger.Entry{e1, e2}
			if IsAlert(f) {
				// Alert index (console.go): listing alerts never scans all findings.
				e3 := badger.NewEntry(AlertIndexKey(f), nil)
				if ttl > 0 {
					e3 = e3.WithTTL(ttl)
				}
				entries = append(entries, e3)
			}
			for _, b := range blobs[i][j] {
				e := badger.NewEntry(evidenceKey(f.DeviceId, b.Id), b.Data)
				if ttl > 0 {
					e = e.WithTTL(ttl)
				}
				entries = append(entries, e)
			}
			if err = setEntries(&txn, s.db, entries...); err != nil {
				break
			}
			seen[string(key)] = true
			results[i].stored++
		}
		if err != nil {
			break
		}
	}
	if err == nil {
		err = txn.Commit()
	} else {
		txn.Discard()
	}
	for i, req := range group {
		if err != nil && results[i].err == nil {
			results[i] = commitResult{err: fmt.Errorf("store: commit findings: %w", err)}
		}
		req.done <- results[i]
	}
}

// setEntries adds entries to *txn, committing and starting a new transaction
// when Badger says the current one is full. Entries already committed that
// way are durable; a later failure makes the caller report an error and the
// agent resend, which the dedupe check then absorbs.
func setEntries(txn **badger.Txn, db *badger.DB, entries ...*badger.Entry) error {
	for _, e := range entries {
		err := (*txn).SetEntry(e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			if err := (*txn).Commit(); err != nil {
				return err
			}
			*txn = db.NewTransaction(true)
			err = (*txn).SetEntry(e)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

func (s *Store) retention(category string) time.Duration {
	if d, ok := s.opts.Retention[category]; ok {
		return d
	}
	return s.opts.DefaultRetention
}

func findingKey(device string, seq uint64) []byte {
	k := make([]byte, 0, len(pfxFindingByDevice)+len(device)+8)
	k = append(k, pfxFindingByDevice...)
	k = append(k, device...)
	return binary.BigEndian.AppendUint64(k, seq)
}

func timeKey(f *vigilv1.Finding) []byte {
	k := make([]byte, 0, len(pfxFindingByTime)+8+len(f.DeviceId)+8)
	k = append(k, pfxFindingByTime...)
	k = binary.BigEndian.AppendUint64(k, uint64(f.GetObservedAt().AsTime().UnixNano()))
	k = append(k, f.DeviceId...)
	return binary.BigEndian.AppendUint64(k, f.Seq)
}

// Query selects findings for ListFindings.
type Query struct {
	Device string    // only this device (ordered by seq)
	Since  time.Time // observed at or after (ordered by time when Device is empty)
	Limit  int       // 0 = no limit
}

// ListFindings calls fn for each finding matching q until fn returns false.
func (s *Store) ListFindings(ctx context.Context, q Query, fn func(*vigilv1.Finding) bool) error {
	return s.db.View(func(txn *badger.Txn) error {
		n := 0
		emit := func(val []byte) (bool, error) {
			f := &vigilv1.Finding{}
			if err := proto.Unmarshal(val, f); err != nil {
				return false, fmt.Errorf("decode stored finding: %w", err)
			}
			if !q.Since.IsZero() && f.GetObservedAt().AsTime().Before(q.Since) {
				return true, nil
			}
			n++
			return fn(f) && (q.Limit == 0 || n < q.Limit), nil
		}
		if q.Device != "" {
			it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte(pfxFindingByDevice + q.Device)})
			defer it.Close()
			for it.Rewind(); it.Valid(); it.Next() {
				if ctx.Err() != nil {
					return ctx.Err()
				}
				val, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				if more, err := emit(val); err != nil || !more {
					return err
				}
			}
			return nil
		}
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(pfxFindingByTime)})
		defer it.Close()
		start := []byte(pfxFindingByTime)
		if !q.Since.IsZero() {
			start = binary.BigEndian.AppendUint64(start, uint64(q.Since.UnixNano()))
		}
		for it.Seek(start); it.Valid(); it.Next() {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			k := it.Item().Key()
			rest := k[len(pfxFindingByTime)+8:]
			if len(rest) < 8 {
				continue
			}
			dev, seq := string(rest[:len(rest)-8]), binary.BigEndian.Uint64(rest[len(rest)-8:])
			item, err := txn.Get(findingKey(dev, seq))
			if errors.Is(err, badger.ErrKeyNotFound) {
				continue // expired between the two keys
			}
			if err != nil {
				return err
			}
			val, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if more, err := emit(val); err != nil || !more {
				return err
			}
		}
		return nil
	})
}

// Close stops accepting work, commits what is queued, flushes device state
// and closes Badger cleanly.
func (s *Store) Close() error {
	var err error
	s.closeOnce.Do(func() {
		s.mu.Lock()
		s.closed = true
		close(s.queue)
		s.mu.Unlock()
		<-s.done
		if ferr := s.FlushDevices(); ferr != nil {
			s.log.Error("flush device state at close", "err", ferr)
		}
		err = s.db.Close()
	})
	return err
}

type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) Errorf(f string, a ...any) {
	b.l.Error(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Warningf(f string, a ...any) {
	b.l.Warn(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Infof(f string, a ...any) {
	b.l.Debug(fmt.Sprintf(f, a...), "component", "badger")
}
func (b badgerLogger) Debugf(f string, a ...any) {}
