package store

// Health: free space on the data dir's filesystem (ingest stops before the
// disk is full, and resumes by itself), checksum verification of every table
// (at open and on a schedule) with damaged tables copied to a quarantine dir,
// and refused evidence. Health() is what /healthz and /metrics read.

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Health is a snapshot of the store's condition.
type Health struct {
	// DiskFull: findings are refused (agents keep them and retry) because
	// free space fell below the reserve or a write failed for want of space.
	DiskFull bool `json:"disk_full"`
	// WritesRefused: every write is refused (half the reserve or less is
	// left); reads still work, so the console is read-only.
	WritesRefused bool      `json:"writes_refused"`
	FreeBytes     int64     `json:"free_bytes"`
	TotalBytes    int64     `json:"total_bytes"`
	ReserveBytes  int64     `json:"reserve_bytes"`
	DiskCheckedAt time.Time `json:"disk_checked_at,omitzero"`
	// Reason says in words why the store is not healthy ("" when it is).
	Reason string `json:"reason,omitempty"`
	// LastChecksumCheck is when every table's checksums were last verified
	// (zero until the check at open has finished).
	LastChecksumCheck time.Time      `json:"last_checksum_check,omitzero"`
	Damaged           []DamagedTable `json:"damaged,omitempty"`
	// EvidenceConflicts counts evidence blobs refused because another blob
	// was already stored under the same (device, id).
	EvidenceConflicts uint64 `json:"evidence_conflicts"`
}

// OK reports whether nothing is wrong.
func (h Health) OK() bool { return !h.DiskFull && !h.WritesRefused && len(h.Damaged) == 0 }

// DamagedTable is one table file that failed checksum verification.
type DamagedTable struct {
	File    string    `json:"file"`
	Level   int       `json:"level"`
	Keys    uint32    `json:"keys"`
	First   string    `json:"first_key"` // printable
	Last    string    `json:"last_key"`
	Error   string    `json:"error"`
	FoundAt time.Time `json:"found_at"`
	// Quarantined is the copy kept for support ("" if the copy failed).
	Quarantined string `json:"quarantined,omitempty"`
	// BadBlocks counts blocks that failed; Salvaged the entries of the
	// intact ones rewritten into sound tables. Removed: the table could not
	// be opened at all (damaged index) and was taken out of the store.
	BadBlocks int  `json:"bad_blocks"`
	Salvaged  int  `json:"rewritten"`
	Removed   bool `json:"taken_out,omitempty"`
}

// diskState is the free-space guard. The flags are atomics because every
// write checks them; the rest changes under mu.
type diskState struct {
	dir       string
	ingestOff atomic.Bool
	writesOff atomic.Bool

	mu        sync.Mutex
	free      int64
	total     int64
	checkedAt time.Time
	since     time.Time // start of the current episode
	reason    string
	noSpace   bool // a write failed with ENOSPC during this episode
	statErr   bool // statfs failing was logged
}

type healthState struct {
	mu        sync.Mutex
	verified  time.Time
	damaged   map[string]DamagedTable
	conflicts atomic.Uint64
}

func (h *healthState) addConflicts(n int) {
	if n > 0 {
		h.conflicts.Add(uint64(n))
	}
}

// Health returns the store's condition now.
func (s *Store) Health() Health {
	d := &s.disk
	d.mu.Lock()
	h := Health{DiskFull: d.ingestOff.Load(), WritesRefused: d.writesOff.Load(), FreeBytes: d.free, TotalBytes: d.total,
		ReserveBytes: s.opts.DiskReserve, DiskCheckedAt: d.checkedAt, Reason: d.reason}
	d.mu.Unlock()
	s.health.mu.Lock()
	h.LastChecksumCheck = s.health.verified
	for _, t := range s.health.damaged {
		h.Damaged = append(h.Damaged, t)
	}
	s.health.mu.Unlock()
	sort.Slice(h.Damaged, func(i, j int) bool { return h.Damaged[i].File < h.Damaged[j].File })
	if len(h.Damaged) > 0 {
		r := fmt.Sprintf("%d damaged table file(s) in the store (copies in %s)", len(h.Damaged), s.opts.QuarantineDir)
		if h.Reason != "" {
			r = h.Reason + "; " + r
		}
		h.Reason = r
	}
	h.EvidenceConflicts = s.health.conflicts.Load()
	return h
}

// writeAllowed says whether a write may start: findings stop at the
// reserve, other (small) writes at half of it, so a DSL can still sign in
// and the access log can still record views while ingest is paused.
func (s *Store) writeAllowed(ingest bool) error {
	off := s.disk.writesOff.Load()
	if ingest {
		off = off || s.disk.ingestOff.Load()
	}
	if !off {
		return nil
	}
	s.disk.mu.Lock()
	r := s.disk.reason
	s.disk.mu.Unlock()
	return fmt.Errorf("%w (%s)", ErrDiskFull, r)
}

// update is db.Update behind the free-space guard.
func (s *Store) update(fn func(*badger.Txn) error) error {
	if err := s.writeAllowed(false); err != nil {
		return err
	}
	return s.mapWriteErr(s.db.Update(fn))
}

// mapWriteErr turns a write that failed for want of space into ErrDiskFull
// and pauses writes until a check finds the reserve free again.
func (s *Store) mapWriteErr(err error) error {
	if err == nil || errors.Is(err, ErrDiskFull) || !isNoSpace(err) {
		return err
	}
	d := &s.disk
	d.mu.Lock()
	d.noSpace = true
	s.enterEpisodeLocked(fmt.Sprintf("a write to %s failed: no space left on the device", d.dir), true)
	d.mu.Unlock()
	return fmt.Errorf("%w: %v", ErrDiskFull, err)
}

func isNoSpace(err error) bool {
	if errors.Is(err, syscall.ENOSPC) {
		return true
	}
	m := strings.ToLower(err.Error())
	// Badger formats some errors with %v, losing the chain.
	return strings.Contains(m, "no space left on device") || strings.Contains(m, "not enough space on the disk")
}

// enterEpisodeLocked switches writes off and logs once per episode.
func (s *Store) enterEpisodeLocked(reason string, all bool) {
	d := &s.disk
	wasOff := d.ingestOff.Load()
	d.ingestOff.Store(true)
	if all {
		d.writesOff.Store(true)
	}
	d.reason = reason
	if !wasOff {
		d.since = time.Now()
		s.log.Error("collector store: disk full, refusing findings until space is freed (agents keep them in their spools and retry); the console stays readable",
			"dir", d.dir, "reason", reason, "free_bytes", d.free, "reserve_bytes", s.opts.DiskReserve)
	}
}

// checkDisk measures free space and switches writes off or back on. It is
// called before every commit and on a timer, so writes resume by themselves.
func (s *Store) checkDisk() {
	if s.opts.InMemory {
		return
	}
	free, total, err := diskFree(s.disk.dir)
	d := &s.disk
	d.mu.Lock()
	defer d.mu.Unlock()
	d.checkedAt = time.Now()
	if err != nil {
		if !d.statErr {
			d.statErr = true
			s.log.Warn("collector store: cannot measure free space; relying on write errors", "dir", d.dir, "err", err)
		}
		return
	}
	d.free, d.total = free, total
	reserve := s.opts.DiskReserve
	// Some slack before resuming, so a disk hovering at the line does not
	// flap (and log) on every commit.
	slack := reserve / 8
	switch {
	case free < reserve/2:
		s.enterEpisodeLocked(fmt.Sprintf("%s free on the data dir's filesystem, below half the %s reserve: all writes refused",
			byteSize(free), byteSize(reserve)), true)
		return
	case free < reserve:
		s.enterEpisodeLocked(fmt.Sprintf("%s free on the data dir's filesystem, below the %s reserve: findings refused",
			byteSize(free), byteSize(reserve)), false)
		if d.writesOff.Load() && free >= reserve/2+slack && !d.noSpace {
			d.writesOff.Store(false)
		}
		return
	}
	if !d.ingestOff.Load() {
		return
	}
	if free < reserve+slack {
		return
	}
	d.ingestOff.Store(false)
	d.writesOff.Store(false)
	d.noSpace = false
	d.reason = ""
	s.log.Info("collector store: disk space is back, accepting findings again", "dir", d.dir,
		"free_bytes", free, "paused_for", time.Since(d.since).Round(time.Second).String())
}

// prealloc backs Badger's sparse memory-mapped files (memtable logs, value
// log) with real blocks while there is room, so a later write through the
// mapping cannot fault for want of space.
func (s *Store) prealloc() {
	if s.opts.InMemory || s.disk.writesOff.Load() {
		return
	}
	if err := preallocSparse(s.disk.dir); err != nil {
		if isNoSpace(err) {
			s.mapWriteErr(err)
			return
		}
		s.log.Debug("collector store: preallocate Badger files", "err", err)
	}
}

func byteSize(n int64) string {
	switch {
	case n >= 1<<30:
		return fmt.Sprintf("%.1f GiB", float64(n)/(1<<30))
	case n >= 1<<20:
		return fmt.Sprintf("%.1f MiB", float64(n)/(1<<20))
	default:
		return fmt.Sprintf("%d bytes", n)
	}
}

// background re-checks free space and verifies checksums (once at open,
// then every VerifyInterval).
func (s *Store) background() {
	defer close(s.bgDone)
	if s.opts.InMemory {
		<-s.closing
		return
	}
	s.prealloc()
	for _, t := range s.openDamage {
		s.raiseDamage(context.Background(), t)
	}
	disk := time.NewTicker(s.opts.DiskCheckInterval)
	defer disk.Stop()
	var verify <-chan time.Time
	if s.opts.VerifyInterval > 0 {
		t := time.NewTicker(s.opts.VerifyInterval)
		defer t.Stop()
		verify = t.C
	}
	for {
		select {
		case <-s.closing:
			return
		case <-disk.C:
			s.checkDisk()
			s.prealloc()
		case <-verify:
			s.VerifyChecksums(context.Background())
		}
	}
}

// VerifyChecksums checks every table's checksums (verifyTables). A damaged
// table is logged, reported in Health, copied to the quarantine dir and
// recorded as a finding under the collector's own device ID, once per table.
// The entries of its intact blocks are rewritten, so they outlive it; the
// store keeps serving (a read of a damaged block is an error, never
// garbage). It returns the tables damaged now.
func (s *Store) VerifyChecksums(ctx context.Context) []DamagedTable {
	damages, err := verifyTables(s.disk.dir, s.bopts)
	if err != nil {
		s.log.Error("collector store: checksum verification could not run", "err", err)
		return nil
	}
	fresh := s.recordDamage(damages, time.Now(), false)
	for _, t := range fresh {
		s.raiseDamage(ctx, t)
	}
	return s.Health().Damaged
}

// verifyBeforeOpen runs the verification before Badger opens the store:
// Badger refuses to start over a table whose index is damaged, so such
// tables are quarantined and taken out; the rest are handled once open.
func (s *Store) verifyBeforeOpen() []tableDamage {
	if _, err := os.Stat(filepath.Join(s.disk.dir, badger.ManifestFilename)); err != nil {
		return nil // a new store
	}
	damages, err := verifyTables(s.disk.dir, s.bopts)
	if err != nil {
		s.log.Error("collector store: checksum verification at open could not run", "err", err)
		return nil
	}
	var remove []uint64
	now := time.Now()
	unopenable := 0
	for _, d := range damages {
		if d.unopenable {
			unopenable++
		}
	}
	if n := countTables(s.disk.dir); unopenable > 1 && unopenable*2 > n {
		// Most tables unreadable is a wrong key or a wrong directory, not
		// damage: take nothing out, and let Badger's open say what is wrong.
		s.log.Error("collector store: most tables fail verification; not taking any out", "unreadable", unopenable, "tables", n)
		return damages
	}
	for i, d := range damages {
		damages[i].reported = s.quarantined(d.file) != ""
		if !d.unopenable {
			continue
		}
		q, err := s.quarantineCopy(d.file, now)
		if err != nil {
			s.log.Error("collector store: could not copy an unreadable table to quarantine; it stays in place", "file", d.file, "err", err)
			continue
		}
		damages[i].quarantined = q
		remove = append(remove, d.id)
	}
	if err := removeTables(s.disk.dir, remove); err != nil {
		s.log.Error("collector store: could not take unreadable tables out of the store", "err", err)
	}
	return damages
}

// recordDamage reports damaged tables (log, Health), copies new ones to
// quarantine and rewrites their intact entries. It returns the new ones.
func (s *Store) recordDamage(damages []tableDamage, now time.Time, atOpen bool) []DamagedTable {
	info := map[uint64]badger.TableInfo{}
	for _, ti := range s.db.Tables() {
		info[ti.ID] = ti
	}
	var fresh []DamagedTable
	reported := map[string]bool{}
	s.health.mu.Lock()
	s.health.verified = now
	prev := s.health.damaged
	s.health.damaged = map[string]DamagedTable{}
	for _, d := range damages {
		if t, known := prev[d.file]; known {
			s.health.damaged[d.file] = t
			continue
		}
		reported[d.file] = d.reported || !atOpen && s.quarantined(d.file) != ""
		t := DamagedTable{File: d.file, Error: d.err.Error(), FoundAt: now.UTC(), Level: -1, Quarantined: d.quarantined,
			BadBlocks: d.badBlocks, Removed: d.unopenable && atOpen && d.quarantined != ""}
		if ti, ok := info[d.id]; ok {
			t.Level, t.Keys = ti.Level, ti.KeyCount
			t.First, t.Last = printableKey(ti.Left), printableKey(ti.Right)
		}
		fresh = append(fresh, t)
		s.health.damaged[d.file] = t
	}
	s.health.mu.Unlock()
	for i, t := range fresh {
		var d *tableDamage
		for j := range damages {
			if damages[j].file == t.File {
				d = &damages[j]
			}
		}
		if t.Quarantined == "" {
			q, err := s.quarantineCopy(t.File, now)
			if err != nil {
				s.log.Error("collector store: could not copy damaged table to quarantine", "file", t.File, "err", err)
			}
			t.Quarantined = q
		}
		if !d.unopenable {
			n, err := s.salvage(d.keys, !atOpen)
			t.Salvaged, d.salvaged = n, err == nil
			if err != nil {
				s.log.Error("collector store: could not rewrite the intact entries of a damaged table", "file", t.File, "err", err)
			}
		}
		fresh[i] = t
		s.health.mu.Lock()
		s.health.damaged[t.File] = t
		s.health.mu.Unlock()
		s.log.Error("collector store: table failed checksum verification; its intact entries are kept, those in damaged blocks may be lost; the rest of the store is served",
			"file", t.File, "level", t.Level, "keys", t.Keys, "bad_blocks", t.BadBlocks, "rewritten", t.Salvaged,
			"taken_out", t.Removed, "first_key", t.First, "last_key", t.Last, "quarantined", t.Quarantined, "err", t.Error)
	}
	for _, t := range s.health.damagedList() {
		if _, was := prev[t.File]; was {
			s.log.Error("collector store: table still damaged", "file", t.File, "quarantined", t.Quarantined)
		}
	}
	// Raise each table once, ever: a copy in quarantine means an earlier
	// run reported it.
	raise := fresh[:0:0]
	for _, t := range fresh {
		if !reported[t.File] {
			raise = append(raise, t)
		}
	}
	return raise
}

// markRemoved records that damaged tables were taken out of the store.
func (h *healthState) markRemoved(files []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, f := range files {
		if t, ok := h.damaged[f]; ok {
			t.Removed = true
			h.damaged[f] = t
		}
	}
}

func (h *healthState) damagedList() []DamagedTable {
	h.mu.Lock()
	defer h.mu.Unlock()
	out := make([]DamagedTable, 0, len(h.damaged))
	for _, t := range h.damaged {
		out = append(out, t)
	}
	return out
}

// immutablePrefixes are the records that are written once and never
// changed (findings, their indexes, evidence, the access log, audit
// entries): rewriting them while serving cannot undo a concurrent change.
var immutablePrefixes = []string{pfxFindingByDevice, pfxFindingByTime, pfxAlertIndex, pfxEvidence, pfxEvidenceMeta, pfxAccessLog, pfxAuditEntry}

func immutableKey(k []byte) bool {
	for _, p := range immutablePrefixes {
		if strings.HasPrefix(string(k), p) {
			return true
		}
	}
	return false
}

// salvage rewrites the current value of each key (as read through Badger,
// so value-log pointers resolve) with its TTL, giving it a newer version
// in a sound table. Device records are left to the in-memory cache, which
// is marked for a full flush instead (it is newer than any table). While
// serving (live) only immutable records are rewritten: a triage state read
// here and written back after a DSL changed it would undo the change; the
// rest are rewritten at the next start, before anything is served.
func (s *Store) salvage(keys [][]byte, live bool) (int, error) {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		for _, k := range keys {
			if strings.HasPrefix(string(k), pfxDevice) || live && !immutableKey(k) {
				continue
			}
			item, err := txn.Get(k)
			if err != nil {
				continue // deleted, expired, or itself unreadable
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				continue
			}
			e := badger.NewEntry(append([]byte(nil), k...), v).WithMeta(item.UserMeta())
			e.ExpiresAt = item.ExpiresAt()
			if err := wb.SetEntry(e); err != nil {
				return err
			}
			n++
		}
		return nil
	})
	if err == nil {
		err = wb.Flush()
	}
	s.devMu.Lock()
	for id := range s.devices {
		s.dirtyGen++
		s.dirty[id] = s.dirtyGen
	}
	s.devMu.Unlock()
	return n, err
}

// quarantineCopy copies a table file for support; the original stays, as
// Badger still holds it and its intact blocks are still served.
func (s *Store) quarantineCopy(name string, now time.Time) (string, error) {
	if err := os.MkdirAll(s.opts.QuarantineDir, 0o700); err != nil {
		return "", err
	}
	src, err := os.Open(filepath.Join(s.disk.dir, name))
	if err != nil {
		return "", err
	}
	if q := s.quarantined(name); q != "" {
		src.Close()
		return q, nil // copied (and reported) by an earlier run
	}
	defer src.Close()
	dst := filepath.Join(s.opts.QuarantineDir, now.UTC().Format("20060102T150405Z")+"-"+name)
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return "", err
	}
	if _, err := io.Copy(out, src); err != nil {
		out.Close()
		os.Remove(dst)
		return "", err
	}
	if err := out.Close(); err != nil {
		return "", err
	}
	return dst, nil
}

// quarantined returns an earlier copy of table name in the quarantine dir,
// if any: Badger never reuses a table ID, so the name identifies it.
func (s *Store) quarantined(name string) string {
	m, _ := filepath.Glob(filepath.Join(s.opts.QuarantineDir, "*-"+name))
	if len(m) == 0 {
		return ""
	}
	return m[0]
}

// printableKey shows a key's prefix and device ID, not its binary tail.
func printableKey(k []byte) string {
	// Badger appends an 8-byte version to keys in table metadata.
	if len(k) > 8 {
		k = k[:len(k)-8]
	}
	var b strings.Builder
	for _, c := range k {
		if c >= 0x20 && c < 0x7f {
			b.WriteByte(c)
		} else {
			fmt.Fprintf(&b, "\\x%02x", c)
		}
	}
	return b.String()
}

// nextSelfSeq keeps the store's own findings' seq increasing across
// restarts without a stored counter: nanoseconds, bumped past the last.
func (s *Store) nextSelfSeq() uint64 {
	for {
		last := s.selfSeq.Load()
		n := uint64(time.Now().UnixNano())
		if n <= last {
			n = last + 1
		}
		if s.selfSeq.CompareAndSwap(last, n) {
			return n
		}
	}
}

func (s *Store) selfFinding(rule, msg string, sev vigilv1.Severity, details map[string]any) *vigilv1.Finding {
	st, _ := structpb.NewStruct(details)
	return &vigilv1.Finding{DeviceId: s.opts.SelfDeviceID, Seq: s.nextSelfSeq(), ObservedAt: timestamppb.Now(),
		Check: "store", RuleId: rule, RuleVersion: 1, Severity: sev, Category: "integrity", Message: msg, Details: st}
}

// raiseDamage records a damaged table as a finding of the collector itself.
func (s *Store) raiseDamage(ctx context.Context, t DamagedTable) {
	if s.opts.SelfDeviceID == "" {
		return
	}
	f := s.selfFinding("store-damaged",
		fmt.Sprintf("collector store: table %s failed its checksum (level %d, %d keys, %s .. %s); findings in that range may be unreadable; a copy is in %s",
			t.File, t.Level, t.Keys, t.First, t.Last, t.Quarantined),
		vigilv1.Severity_SEVERITY_HIGH,
		map[string]any{"file": t.File, "level": float64(t.Level), "keys": float64(t.Keys), "first_key": t.First, "last_key": t.Last,
			"error": t.Error, "quarantined": t.Quarantined})
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	if _, _, err := s.CommitFindings(ctx, []*vigilv1.Finding{f}); err != nil {
		s.log.Error("collector store: record damaged table as a finding", "err", err)
	}
}

func evidenceConflictFinding(cs []EvidenceConflict) func(s *Store) *vigilv1.Finding {
	return func(s *Store) *vigilv1.Finding {
		list := make([]any, 0, len(cs))
		for _, c := range cs {
			list = append(list, map[string]any{"device_id": c.DeviceID, "seq": float64(c.Seq), "evidence_id": c.EvidenceID})
		}
		c := cs[0]
		return s.selfFinding("evidence-conflict",
			fmt.Sprintf("device %s: finding %d reused evidence id %q with other content; refused (evidence is write-once), %d in all",
				c.DeviceID, c.Seq, c.EvidenceID, len(cs)),
			vigilv1.Severity_SEVERITY_HIGH, map[string]any{"conflicts": list})
	}
}

// writeSelfFinding adds the collector's own finding to *txn (no-op without
// a self device ID).
func (s *Store) writeSelfFinding(txn **badger.Txn, mk func(*Store) *vigilv1.Finding) error {
	if s.opts.SelfDeviceID == "" {
		return nil
	}
	f := mk(s)
	val, err := proto.Marshal(f)
	if err != nil {
		return err
	}
	_, err = s.writeFinding(txn, f, val, nil)
	return err
}

func countTables(dir string) int {
	m, _ := filepath.Glob(filepath.Join(dir, "*.sst"))
	return len(m)
}
