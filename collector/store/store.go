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
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
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

// ErrDiskFull means the data dir's filesystem has less free space than the
// store keeps in reserve, or a write failed for want of space. Nothing was
// written; callers answer like ErrOverloaded (retry later) so agents keep
// their spools, and the store resumes by itself once space returns.
var ErrDiskFull = errors.New("store: disk full: not accepting writes until space is freed")

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

	// DiskReserve is the free space (bytes) below which findings are no
	// longer accepted; other writes (console sessions, access log, device
	// state) go on until half of it is left. It must cover what Badger may
	// write unasked (a memtable flush, a compaction): default 256 MiB.
	DiskReserve int64
	// DiskCheckInterval is how often free space is re-checked while idle
	// (every commit checks too), so the store resumes by itself when space
	// returns. Default 2 s.
	DiskCheckInterval time.Duration
	// VerifyInterval is how often every table's checksums are verified
	// after the check at open. Default 24 h; negative turns the schedule off.
	VerifyInterval time.Duration
	// QuarantineDir receives copies of damaged table files for support.
	// Default: <dir>-quarantine.
	QuarantineDir string
	// SelfDeviceID is the collector's own device ID: damage and evidence
	// conflicts are recorded as findings under it. Empty: log and health only.
	SelfDeviceID string
	// Memory holds Badger's memory settings; zero fields take the school
	// server defaults (DefaultMemory).
	Memory Memory
	// DataKeys seals each school's findings and triage records under the
	// school's own key (sealing.go). Nil: nothing is sealed, and a sealed
	// record does not open.
	DataKeys *DataKeys
}

// Store is safe for concurrent use.
type Store struct {
	db    *badger.DB
	bopts badger.Options
	opts  Options
	log   *slog.Logger

	queue     chan *commitReq
	closeOnce sync.Once
	closing   chan struct{}
	done      chan struct{}
	mu        sync.RWMutex // guards closed against sends on queue
	closed    bool

	devMu   sync.Mutex
	devices map[string]*Device // cache of all device records
	dirty   map[string]uint64  // device -> generation of its last change

	// schoolRet is each school's own retention (School.Retention), read on
	// every finding written; guarded by retMu (schoolretention.go).
	retMu     sync.RWMutex
	schoolRet map[string]Retention

	accessSeq atomic.Uint32
	auditMu   sync.Mutex // one audit chain append at a time (audit.go)

	disk       diskState
	health     healthState
	tokenReqs  chan *tokenReq
	bgDone     chan struct{}
	tokDone    chan struct{}
	flushMu    sync.Mutex // one device flush at a time, ordered with PutDevice
	dirtyGen   uint64
	selfSeq    atomic.Uint64
	openDamage []DamagedTable // found by the verification at open, raised once serving

	feedMu sync.Mutex
	feeds  []*AlertFeed // SubscribeAlerts

	txnUse txnUse // the committer's current transaction (setEntries)

	// beforeCommit, when set (tests only), runs before each group commit.
	beforeCommit func(group []*commitReq)
}

func (s *Store) nextAccessSeq() uint32 { return s.accessSeq.Add(1) }

type commitReq struct {
	findings []*vigilv1.Finding
	done     chan commitResult
}

type commitResult struct {
	stored, dups int
	conflicts    []EvidenceConflict
	err          error
}

// CommitResult reports what Commit did with a batch.
type CommitResult struct {
	Stored, Dups int
	// EvidenceConflicts lists evidence blobs that were not stored because
	// another blob with other content is already stored under the same
	// (device, evidence id): evidence is write-once. Their findings are
	// stored; a reveal of the refused blob fails its hash check.
	EvidenceConflicts []EvidenceConflict
}

// EvidenceConflict names one refused evidence blob.
type EvidenceConflict struct {
	DeviceID   string
	Seq        uint64
	EvidenceID string
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
	if opts.DiskReserve <= 0 {
		opts.DiskReserve = 256 << 20
	}
	if opts.DiskCheckInterval <= 0 {
		opts.DiskCheckInterval = 2 * time.Second
	}
	if opts.VerifyInterval == 0 {
		opts.VerifyInterval = 24 * time.Hour
	}
	if opts.QuarantineDir == "" {
		opts.QuarantineDir = filepath.Clean(dir) + "-quarantine"
	}
	opts.Memory = opts.Memory.withDefaults()
	bopts := opts.Memory.apply(badger.DefaultOptions(dir)).
		WithSyncWrites(true).
		WithLogger(badgerLogger{opts.Logger}).
		WithNumVersionsToKeep(1).
		// Findings are small; keep them in the LSM tree with the keys.
		WithValueThreshold(4 << 10).
		// Every block read is checked, so a damaged block is an error,
		// never garbage decoded as a finding. Whole tables are checked by
		// verify (at open, then on a schedule) rather than at Badger's
		// open, which would refuse to start over one bad table.
		WithChecksumVerificationMode(options.OnBlockRead)
	if opts.InMemory {
		bopts = badger.DefaultOptions("").WithInMemory(true).WithLogger(nil)
	} else if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: create %s: %w", dir, err)
	}
	if len(opts.EncryptionKey) > 0 {
		bopts = bopts.WithEncryptionKey(opts.EncryptionKey).
			WithEncryptionKeyRotationDuration(30 * 24 * time.Hour)
	}
	s := &Store{
		opts: opts, log: opts.Logger,
		queue:     make(chan *commitReq, opts.QueueLen),
		closing:   make(chan struct{}),
		done:      make(chan struct{}),
		bgDone:    make(chan struct{}),
		tokDone:   make(chan struct{}),
		devices:   map[string]*Device{},
		dirty:     map[string]uint64{},
		tokenReqs: make(chan *tokenReq, 4096),
	}
	s.disk.dir = dir
	if !opts.InMemory {
		// Refuse to start Badger on a full disk: its first memtable write
		// would fault (SIGBUS) rather than fail.
		s.checkDisk()
	}
	s.bopts = bopts
	var damage []tableDamage
	if !opts.InMemory {
		// Verify on open, before Badger: it refuses to start over a table
		// with a damaged index, which would stop monitoring altogether.
		damage = s.verifyBeforeOpen()
	}
	db, err := badger.Open(bopts)
	if err != nil {
		return nil, fmt.Errorf("store: open badger in %s: %w", dir, s.mapWriteErr(err))
	}
	s.db = db
	if !opts.InMemory {
		chmodTree(dir)
		s.checkDisk()
	}
	if err := s.loadDevices(); err != nil {
		db.Close()
		return nil, err
	}
	if err := s.loadSchoolRetention(); err != nil {
		db.Close()
		return nil, err
	}
	if _, err := s.assignExclusionSchools(); err != nil {
		db.Close()
		return nil, err
	}
	if !opts.InMemory {
		s.openDamage = s.recordDamage(damage, time.Now(), true)
		var ids []uint64
		var files []string
		for _, d := range damage {
			if d.salvaged {
				ids, files = append(ids, d.id), append(files, d.file)
			}
		}
		if len(ids) > 0 {
			// Their intact entries now live in sound tables: take the
			// damaged tables out (Badger must be closed for that), so no
			// read or compaction meets their bad blocks again.
			if err := db.Close(); err != nil {
				return nil, fmt.Errorf("store: close badger to take damaged tables out: %w", err)
			}
			if err := removeTables(dir, ids); err != nil {
				s.log.Error("collector store: could not take damaged tables out of the store", "err", err)
			} else {
				s.health.markRemoved(files)
			}
			if db, err = badger.Open(bopts); err != nil {
				return nil, fmt.Errorf("store: reopen badger in %s: %w", dir, err)
			}
			s.db = db
		}
	}
	if err := s.ensureAlertIndex(); err != nil {
		s.db.Close()
		return nil, err
	}
	go s.committer()
	go s.tokenWriter()
	go s.background()
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

// CommitFindings durably stores findings, skipping any (device_id, seq) that
// is already stored. It returns once the transaction holding them is synced.
func (s *Store) CommitFindings(ctx context.Context, findings []*vigilv1.Finding) (stored, dups int, err error) {
	r, err := s.Commit(ctx, findings)
	return r.Stored, r.Dups, err
}

// Commit is CommitFindings with the full report (refused evidence).
func (s *Store) Commit(ctx context.Context, findings []*vigilv1.Finding) (CommitResult, error) {
	if len(findings) == 0 {
		return CommitResult{}, nil
	}
	if err := s.writeAllowed(true); err != nil {
		return CommitResult{}, err
	}
	req := &commitReq{findings: findings, done: make(chan commitResult, 1)}
	s.mu.RLock()
	if s.closed {
		s.mu.RUnlock()
		return CommitResult{}, ErrClosed
	}
	select {
	case s.queue <- req:
	default:
		s.mu.RUnlock()
		return CommitResult{}, ErrOverloaded
	}
	s.mu.RUnlock()
	// Once queued the commit happens even if ctx ends: the caller just stops
	// waiting, and the agent will resend and hit the dedupe path.
	select {
	case r := <-req.done:
		return CommitResult{Stored: r.stored, Dups: r.dups, EvidenceConflicts: r.conflicts}, r.err
	case <-ctx.Done():
		return CommitResult{}, ctx.Err()
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
		s.commitGroupSafe(group)
	}
}

// ErrCommitFailed means a group commit failed inside the database; nothing
// of it was acknowledged, so agents resend.
var ErrCommitFailed = errors.New("store: commit failed")

// commitGroupSafe runs commitGroup so that a panic inside Badger fails only
// this group's requests, which are then not acknowledged and are resent by
// their agents, instead of ending the collector and every agent's stream.
// Seen at the file-descriptor limit: Badger could not open its next
// memtable and then dereferenced nil in Txn.Get under commitGroup.
func (s *Store) commitGroupSafe(group []*commitReq) {
	defer func() {
		r := recover()
		if r == nil {
			return
		}
		s.log.Error("collector store: commit failed inside the database; findings not acknowledged, agents will resend",
			"panic", fmt.Sprint(r), "stack", string(debug.Stack()))
		for _, req := range group {
			select { // done has room for one answer; skip those already answered
			case req.done <- commitResult{err: fmt.Errorf("%w: %v", ErrCommitFailed, r)}:
			default:
			}
		}
	}()
	if s.beforeCommit != nil {
		s.beforeCommit(group)
	}
	s.commitGroup(group)
}

func (s *Store) commitGroup(group []*commitReq) {
	results := make([]commitResult, len(group))
	// Re-check space before every commit: Badger's writes go through mmap,
	// and a write into a page the filesystem cannot back is a SIGBUS, not
	// an error.
	s.checkDisk()
	if err := s.writeAllowed(true); err != nil {
		for _, req := range group {
			req.done <- commitResult{err: err}
		}
		return
	}
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
	s.txnUse = txnUse{}
	var err error
	var conflicts []EvidenceConflict
	var alerts []AlertRef
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
			var refused []EvidenceConflict
			refused, err = s.writeFinding(&txn, f, vals[i][j], blobs[i][j])
			if err != nil {
				break
			}
			seen[string(key)] = true
			if IsAlert(f) {
				alerts = append(alerts, AlertRef{f.DeviceId, f.Seq})
			}
			results[i].stored++
			results[i].conflicts = append(results[i].conflicts, refused...)
			conflicts = append(conflicts, refused...)
		}
		if err != nil {
			break
		}
	}
	if err == nil && len(conflicts) > 0 {
		// The report shares the transaction: it is durable exactly when
		// the findings whose evidence was refused are.
		err = s.writeSelfFinding(&txn, evidenceConflictFinding(conflicts))
	}
	if err == nil {
		err = txn.Commit()
	} else {
		txn.Discard()
	}
	if err != nil {
		err = s.mapWriteErr(err)
	} else {
		for _, c := range conflicts {
			s.log.Warn("evidence refused: another blob with other content is already stored under this id (evidence is write-once)",
				"device", c.DeviceID, "seq", c.Seq, "evidence_id", c.EvidenceID)
		}
		s.health.addConflicts(len(conflicts))
		s.publishAlerts(alerts)
	}
	for i, req := range group {
		if err != nil && results[i].err == nil {
			if errors.Is(err, ErrDiskFull) {
				results[i] = commitResult{err: err}
			} else {
				results[i] = commitResult{err: fmt.Errorf("store: commit findings: %w", err)}
			}
		}
		req.done <- results[i]
	}
}

// writeFinding adds one new finding with its index keys and evidence to
// *txn. Evidence is write-once per (device, id): a blob identical to the one
// stored is a no-op, one with other content is refused (returned), and the
// finding is stored without it.
func (s *Store) writeFinding(txn **badger.Txn, f *vigilv1.Finding, val []byte, blobs []*vigilv1.EvidenceBlob) ([]EvidenceConflict, error) {
	// One lookup of the device's school for its retention and its seal.
	school, known := s.DeviceSchool(f.DeviceId)
	ttl := s.retentionIn(school, known, f.Category)
	withTTL := func(e *badger.Entry) *badger.Entry {
		if ttl > 0 {
			return e.WithTTL(ttl)
		}
		return e
	}
	fk := findingKey(f.DeviceId, f.Seq)
	val, err := s.sealIn(school, known, fk, val)
	if err != nil {
		return nil, fmt.Errorf("store: seal finding seq %d: %w", f.Seq, err)
	}
	entries := []*badger.Entry{withTTL(badger.NewEntry(fk, val)), withTTL(badger.NewEntry(timeKey(f), nil))}
	if IsAlert(f) {
		// Alert indexes (alertindex.go): a filtered page of the queue never
		// scans or decodes findings it does not show.
		sum := summaryOf(f, AlertState{Status: "new"})
		entries = append(entries, alertEntries(&sum, expiryOf(ttl))...)
	}
	var refused []EvidenceConflict
	for _, b := range blobs {
		same, exists, err := sameEvidence(*txn, f.DeviceId, b)
		if err != nil {
			return nil, err
		}
		if exists {
			if !same {
				refused = append(refused, EvidenceConflict{DeviceID: f.DeviceId, Seq: f.Seq, EvidenceID: b.Id})
			}
			continue
		}
		// Record the hash the finding announced (the server checked the
		// blob against it), so a later reveal checks the same thing.
		sum := sha256.Sum256(b.Data)
		for _, r := range f.Evidence {
			if h, err := hex.DecodeString(r.GetSha256()); r.GetId() == b.Id && err == nil && len(h) == sha256.Size {
				copy(sum[:], h)
			}
		}
		entries = append(entries,
			withTTL(badger.NewEntry(evidenceKey(f.DeviceId, b.Id), b.Data)),
			withTTL(badger.NewEntry(evidenceMetaKey(f.DeviceId, b.Id), encodeEvidenceMeta(f.Seq, sum))))
	}
	return refused, s.setEntries(txn, entries...)
}

// setEntries adds one finding's entries to *txn. When they would not fit
// in it (Badger's count and size limits, estimated as Badger does), *txn is
// committed first and a new transaction takes them all, so a finding, its
// index entries and its evidence are always in one transaction: a crash
// between two never leaves a finding its dedupe check would keep from
// being indexed. Entries already committed that way are durable; a later
// failure makes the caller report an error and the agent resend, which the
// dedupe check then absorbs. Only the committer calls it (txnUse).
func (s *Store) setEntries(txn **badger.Txn, entries ...*badger.Entry) error {
	n, size := int64(len(entries)), int64(0)
	for _, e := range entries {
		size += s.entrySize(e)
	}
	renew := func() error {
		if err := (*txn).Commit(); err != nil {
			return err
		}
		*txn = s.db.NewTransaction(true)
		s.txnUse = txnUse{}
		return nil
	}
	if s.txnUse.count > 0 && (s.txnUse.count+n >= s.db.MaxBatchCount() || s.txnUse.size+size >= s.db.MaxBatchSize()) {
		if err := renew(); err != nil {
			return err
		}
	}
	for _, e := range entries {
		err := (*txn).SetEntry(e)
		if errors.Is(err, badger.ErrTxnTooBig) {
			// The estimate was short, or one finding alone is larger
			// than a transaction: split rather than refuse it.
			if err := renew(); err != nil {
				return err
			}
			err = (*txn).SetEntry(e)
		}
		if err != nil {
			return err
		}
	}
	s.txnUse.count += n
	s.txnUse.size += size
	return nil
}

// txnUse is what the committer has added to its current transaction.
type txnUse struct{ count, size int64 }

// entrySize is Badger's estimate of an entry in a transaction (key with
// its version, value or value pointer, meta), with a margin.
func (s *Store) entrySize(e *badger.Entry) int64 {
	k, v := int64(len(e.Key)), int64(len(e.Value))
	if v < s.bopts.ValueThreshold {
		return k + v + 2 + 10 + 8
	}
	return k + 12 + 2 + 10 + 8
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
		emit := func(key, val []byte) (bool, error) {
			f := &vigilv1.Finding{}
			if err := s.decodeFinding(key, val, f); errors.Is(err, ErrDataKeyDestroyed) {
				return true, nil // a deleted school's, not yet compacted away
			} else if err != nil {
				return false, err
			}
			UpgradeLegacyAlert(f)
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
				if more, err := emit(it.Item().Key(), val); err != nil || !more {
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
			if more, err := emit(item.Key(), val); err != nil || !more {
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
		close(s.closing)
		<-s.bgDone
		<-s.tokDone
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
