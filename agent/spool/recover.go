package spool

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"io/fs"
	"math"
	"os"
	"runtime/debug"
	"time"

	bolt "go.etcd.io/bbolt"
	berrors "go.etcd.io/bbolt/errors"
)

// Damage. bbolt trusts its file: a flipped byte in a page header or an
// element offset makes it index out of range, or read outside its mapping,
// and a page walk it runs in a goroutine of its own at the first write would
// take the whole agent down at every start. So Open looks at an existing
// file before bbolt writes to it:
//
//   - both meta pages are checked raw (bbolt silently falls back to the older
//     one, which would roll the spool back and reuse seqs the collector may
//     already hold);
//   - the file is opened read-only and every bucket, key and value is read
//     from our own goroutine with SetPanicOnFault, so a panic or a fault in
//     bbolt becomes an error; every record must authenticate under the key;
//   - the page tree is walked from the raw bytes under the rules bbolt's
//     free-list rebuild enforces (pagewalk.go), since that rebuild cannot
//     be made safe from outside.
//
// A damaged file is renamed to <path>.damaged-<UTC time> for support, the
// records that authenticate are put into a fresh spool under their own
// seqs, the next seq jumps past anything the old file can have used, and
// DamageReport's item says what was saved and what was lost.

// errDamaged marks an error as the file's content being wrong.
var errDamaged = errors.New("spool file damaged")

// Damage is what DamageReport is told.
type Damage struct {
	Quarantine  string // where the damaged file now is
	Reason      string
	Salvaged    int   // records read back and kept
	Lost        int64 // records known lost; -1 if the count cannot be known
	KeyReplaced bool  // the key file itself was damaged and replaced
}

type inspection struct {
	damage   string // empty: intact
	locked   bool
	err      error // could not even look (permissions, I/O): not damage
	salvaged []Record
	keep     bool   // keep the records read (else only verify)
	complete bool   // every record was visited
	bad      int64  // records that did not authenticate
	st       *state // decoded state, when readable
	wlTotal  uint64
	sealed   bool // the file's records are sealed (raw salvage possible)
	// rawSalvaged: records found by scanning pages beyond the tree;
	// metaDamaged: a meta page was bad, so the state read may be older
	// than the file's last transaction.
	rawSalvaged int
	metaDamaged bool
}

// freshStart is what a recovered spool starts from.
type freshStart struct {
	records []Record
	nextSeq uint64
	dropped uint64
	wlTotal uint64
	damage  Damage
}

func openVerified(path string, opts Options) (*Spool, error) {
	now := time.Now()
	key, err := loadKey(opts.KeyPath)
	keyReplaced := ""
	if errors.Is(err, ErrBadKey) {
		q := quarantineName(opts.KeyPath, now)
		if rerr := os.Rename(opts.KeyPath, q); rerr != nil {
			return nil, fmt.Errorf("spool: open %s: %w; moving it aside: %w", path, err, rerr)
		}
		opts.Logger.Error("spool: key file damaged; moved aside and replaced", "key", opts.KeyPath, "moved_to", q, "err", err)
		keyReplaced = q
		key, err = createKey(opts.KeyPath)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	sl, err := newSealer(key)
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}

	fi, err := os.Stat(path)
	if errors.Is(err, fs.ErrNotExist) {
		return openFile(path, opts, key, nil)
	}
	if err != nil {
		return nil, fmt.Errorf("spool: open %s: %w", path, err)
	}
	var ins inspection
	if fi.Size() == 0 {
		// bbolt initialises an empty file; nothing to verify.
		ins.complete = true
	} else {
		ins = inspect(path, sl)
	}
	switch {
	case ins.locked:
		return nil, fmt.Errorf("spool: open %s: %w", path, ErrLocked)
	case ins.err != nil:
		return nil, fmt.Errorf("spool: open %s: %w", path, ins.err)
	}
	if ins.damage == "" {
		s, err := openGuarded(path, opts, key, nil)
		if err == nil {
			if keyReplaced != "" {
				s.setNotice(fmt.Sprintf("spool key file was damaged (moved to %s); the spool was empty, nothing lost", keyReplaced))
			}
			return s, nil
		}
		if !isDamage(err) {
			return nil, err
		}
		ins.damage = err.Error()
	}
	return recoverSpool(path, opts, key, ins, keyReplaced != "", now)
}

func isDamage(err error) bool {
	return errors.Is(err, errDamaged) || errors.Is(err, berrors.ErrInvalid) || errors.Is(err, berrors.ErrChecksum) ||
		errors.Is(err, berrors.ErrVersionMismatch) || errors.Is(err, berrors.ErrInvalidMapping)
}

// guard runs fn on a goroutine of its own with SetPanicOnFault, so that a
// read outside bbolt's mapping or an index out of range in bbolt returns as
// an error instead of killing the process.
func guard(what string, fn func() error) (err error) {
	done := make(chan struct{})
	go func() {
		defer close(done)
		debug.SetPanicOnFault(true)
		defer func() {
			if p := recover(); p != nil {
				err = fmt.Errorf("%w: %s: bbolt panicked: %v", errDamaged, what, p)
			}
		}()
		err = fn()
	}()
	<-done
	return err
}

func openGuarded(path string, opts Options, key []byte, fresh *freshStart) (*Spool, error) {
	var s *Spool
	err := guard("open", func() error {
		var err error
		s, err = openFile(path, opts, key, fresh)
		return err
	})
	return s, err
}

// closeQuietly closes a db that may be damaged.
func closeQuietly(db *bolt.DB) {
	_ = guard("close", func() error { return db.Close() })
}

// inspect never panics and never writes.
func inspect(path string, sl *sealer) (ins inspection) {
	metaErr := checkMetas(path)
	if metaErr != nil && !errors.Is(metaErr, errDamaged) {
		ins.err = metaErr
		return ins
	}
	var db *bolt.DB
	err := guard("open read-only", func() error {
		var err error
		db, err = bolt.Open(path, 0o600, &bolt.Options{ReadOnly: true, Timeout: lockTimeout})
		return err
	})
	if errors.Is(err, berrors.ErrTimeout) {
		ins.locked = true
		return ins
	}
	if err != nil {
		if isDamage(err) {
			// bbolt cannot read it at all: what authenticates in its
			// pages is all that can be saved (some may be acknowledged
			// ones; the collector drops those as duplicates).
			ins.damage, ins.metaDamaged = err.Error(), true
			ins.salvaged = rawSalvage(path, sl, 0)
			ins.rawSalvaged = len(ins.salvaged)
		} else {
			ins.err = err
		}
		return ins
	}
	defer closeQuietly(db)

	var problems []string
	if metaErr != nil {
		problems = append(problems, metaErr.Error())
	}
	// The first pass only verifies: an intact spool of up to 64 MiB is not
	// held in memory. The records are kept in a second pass, when needed.
	read := func(keep bool) error {
		ins.keep, ins.salvaged, ins.bad, ins.complete = keep, nil, 0, false
		err := guard("read", func() error { return db.View(func(tx *bolt.Tx) error { return ins.read(tx, sl) }) })
		if !ins.complete && keep {
			// Something stopped the forward walk: read what lies beyond
			// it from the end.
			_ = guard("read backwards", func() error { return db.View(func(tx *bolt.Tx) error { return ins.readBack(tx, sl) }) })
		}
		return err
	}
	if err := read(false); err != nil {
		problems = append(problems, err.Error())
	}
	if metaErr == nil {
		// bbolt's Tx.Check is not used: it rebuilds the free list with the
		// same unrecoverable walk (see pagewalk.go).
		if err := walkPages(path); err != nil {
			problems = append(problems, err.Error())
		}
	}
	if len(problems) > 0 {
		ins.damage = problems[0]
		if len(problems) > 1 {
			ins.damage += fmt.Sprintf(" (and %d more)", len(problems)-1)
		}
		_ = read(true)
		if sealed := ins.sealed; sealed {
			var top uint64
			if n := len(ins.salvaged); n > 0 {
				top = ins.salvaged[n-1].Seq
			}
			more := rawSalvage(path, sl, top)
			ins.salvaged = append(ins.salvaged, more...)
			ins.rawSalvaged = len(more)
		}
		ins.metaDamaged = metaErr != nil
	}
	return ins
}

// read walks the whole file forward, salvaging records.
func (ins *inspection) read(tx *bolt.Tx, sl *sealer) error {
	rec, idx, meta := tx.Bucket(bucketRecords), tx.Bucket(bucketBySev), tx.Bucket(bucketMeta)
	if rec == nil && idx == nil && meta == nil {
		// Created, never initialised: only the root must be empty.
		if k, _ := tx.Cursor().First(); k != nil {
			return fmt.Errorf("unexpected bucket %q", k)
		}
		ins.complete = true
		return nil
	}
	if rec == nil || idx == nil || meta == nil {
		return errors.New("a bucket is missing")
	}
	var problems []error
	sv := meta.Get(keyState)
	if sv != nil {
		if st, err := decodeState(sv); err != nil {
			problems = append(problems, err)
		} else {
			ins.st = &st
		}
	}
	if v := meta.Get(keyWriteFailures); len(v) == 8 {
		ins.wlTotal = binary.BigEndian.Uint64(v)
	}
	sealed := meta.Get(keyCipher) != nil
	ins.sealed = sealed
	if sealed && string(meta.Get(keyCipher)) != cipherName {
		problems = append(problems, fmt.Errorf("unknown record cipher %q", meta.Get(keyCipher)))
	}
	// Read every bucket in full, including any this code does not know,
	// so that bbolt's page walk at the first write meets no page we have
	// not read safely.
	if err := tx.ForEach(func(_ []byte, b *bolt.Bucket) error {
		return b.ForEach(func(_, _ []byte) error { return nil })
	}); err != nil {
		return err
	}

	var count, size int64
	c := rec.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		r, err := salvage(k, v, sealed, sl)
		if err != nil {
			ins.bad++
			problems = append(problems, err)
			continue
		}
		if ins.keep {
			ins.salvaged = append(ins.salvaged, r)
		}
		count++
		size += recordSize(len(r.Payload))
	}
	ins.complete = true

	var indexed int64
	ic := idx.Cursor()
	for k, v := ic.First(); k != nil; k, v = ic.Next() {
		indexed++
		if len(k) != 9 || len(v) != 0 {
			problems = append(problems, fmt.Errorf("corrupt index entry %x", k))
			continue
		}
		if v := rec.Get(k[1:]); len(v) > 0 && v[0] != k[0] {
			problems = append(problems, fmt.Errorf("index entry %x names severity %d, record has %d", k, k[0], v[0]))
		}
	}
	switch {
	case ins.st == nil && (count > 0 || ins.bad > 0):
		problems = append(problems, errors.New("records present but state missing"))
	case ins.st != nil && (ins.st.count != count+ins.bad || (ins.bad == 0 && ins.st.bytes != size)):
		problems = append(problems, fmt.Errorf("state says %d records / %d bytes, file holds %d / %d", ins.st.count, ins.st.bytes, count+ins.bad, size))
	}
	if indexed != count+ins.bad {
		problems = append(problems, fmt.Errorf("index has %d entries for %d records", indexed, count+ins.bad))
	}
	if len(problems) > 0 {
		err := problems[0]
		if len(problems) > 1 {
			err = fmt.Errorf("%w (and %d more)", err, len(problems)-1)
		}
		return err
	}
	return nil
}

// readBack salvages, from the last record down, records above those the
// forward walk got.
func (ins *inspection) readBack(tx *bolt.Tx, sl *sealer) error {
	rec, meta := tx.Bucket(bucketRecords), tx.Bucket(bucketMeta)
	if rec == nil {
		return nil
	}
	sealed := meta != nil && meta.Get(keyCipher) != nil
	var floor uint64
	if n := len(ins.salvaged); n > 0 {
		floor = ins.salvaged[n-1].Seq
	}
	var tail []Record
	defer func() {
		// Even if the walk panics part way, keep what it read.
		for i := len(tail) - 1; i >= 0; i-- {
			ins.salvaged = append(ins.salvaged, tail[i])
		}
	}()
	c := rec.Cursor()
	for k, v := c.Last(); k != nil; k, v = c.Prev() {
		if len(k) == 8 && binary.BigEndian.Uint64(k) <= floor {
			break
		}
		r, err := salvage(k, v, sealed, sl)
		if err != nil {
			ins.bad++
			continue
		}
		tail = append(tail, r)
	}
	return nil
}

func salvage(k, v []byte, sealed bool, sl *sealer) (Record, error) {
	if len(k) != 8 || len(v) < 1 {
		return Record{}, fmt.Errorf("corrupt record %x", k)
	}
	seq := binary.BigEndian.Uint64(k)
	if !sealed {
		return Record{Seq: seq, Severity: v[0], Payload: bytes.Clone(v[1:])}, nil
	}
	sev, p, err := sl.open(seq, v)
	if err != nil {
		return Record{}, err
	}
	return Record{Seq: seq, Severity: sev, Payload: p}, nil
}

// checkMetas validates both of bbolt's meta pages. bbolt itself accepts a
// file with one bad meta page and silently uses the other, older one.
// Layout (bbolt's common.Meta after the 16-byte page header, native byte
// order): magic, version, pageSize, flags (4 each), root bucket (root pgid,
// sequence), freelist pgid, high-water pgid, txid, checksum (8 each); the
// checksum is FNV-64a of the 56 bytes before it.
func checkMetas(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read spool file: %w", err)
	}
	defer f.Close()
	const hdr, metaLen = 16, 64
	buf := make([]byte, hdr+metaLen)
	if _, err := io.ReadFull(f, buf); err != nil {
		return fmt.Errorf("%w: first meta page unreadable: %v", errDamaged, err)
	}
	ps := binary.NativeEndian.Uint32(buf[hdr+8:])
	if ps < 512 || ps > 1<<20 || ps&(ps-1) != 0 {
		return fmt.Errorf("%w: meta page 0: page size %d", errDamaged, ps)
	}
	for i := int64(0); i < 2; i++ {
		if i == 1 {
			if _, err := f.ReadAt(buf, int64(ps)); err != nil {
				return fmt.Errorf("%w: meta page 1 unreadable: %v", errDamaged, err)
			}
		}
		m := buf[hdr:]
		h := fnv.New64a()
		h.Write(m[:56])
		switch {
		case binary.NativeEndian.Uint32(m[0:]) != 0xED0CDAED:
			return fmt.Errorf("%w: meta page %d: bad magic", errDamaged, i)
		case binary.NativeEndian.Uint64(m[56:]) != h.Sum64():
			return fmt.Errorf("%w: meta page %d: checksum mismatch", errDamaged, i)
		case binary.NativeEndian.Uint32(m[8:]) != ps:
			return fmt.Errorf("%w: meta page %d: page size differs", errDamaged, i)
		}
	}
	return nil
}

// recoverSpool moves the damaged file aside and opens a fresh spool with
// what could be read.
func recoverSpool(path string, opts Options, key []byte, ins inspection, keyReplaced bool, now time.Time) (*Spool, error) {
	q := quarantineName(path, now)
	if err := os.Rename(path, q); err != nil {
		return nil, fmt.Errorf("spool: open %s: damaged (%s) and cannot be moved aside: %w", path, ins.damage, err)
	}
	d := Damage{Quarantine: q, Reason: ins.damage, Salvaged: len(ins.salvaged), Lost: -1, KeyReplaced: keyReplaced}
	switch {
	case ins.metaDamaged:
		// The state read may predate the last transactions: how many
		// records those held cannot be known.
	case ins.st != nil:
		d.Lost = max(ins.st.count-int64(len(ins.salvaged)), ins.bad)
	case ins.complete:
		d.Lost = ins.bad
	}
	fresh := &freshStart{records: ins.salvaged, wlTotal: ins.wlTotal, damage: d}
	// The old state may be gone or rolled back: the collector may hold seqs
	// above anything readable here, and would drop a reused seq as a
	// duplicate. Jump to the clock (as the collector does for its own
	// findings), past anything known.
	fresh.nextSeq = uint64(now.UnixNano())
	if ins.st != nil {
		fresh.nextSeq = max(fresh.nextSeq, ins.st.nextSeq)
		fresh.dropped = ins.st.dropped
	}
	if n := len(ins.salvaged); n > 0 {
		fresh.nextSeq = max(fresh.nextSeq, ins.salvaged[n-1].Seq+1)
	}
	if d.Lost > 0 {
		fresh.dropped += uint64(d.Lost)
	}
	opts.Logger.Error("spool: file damaged; moved aside and replaced by a fresh spool",
		"path", path, "moved_to", q, "reason", ins.damage, "salvaged", d.Salvaged, "lost", d.Lost)
	s, err := openGuarded(path, opts, key, fresh)
	if err != nil {
		return nil, fmt.Errorf("spool: open fresh spool after moving the damaged one to %s: %w", q, err)
	}
	lost := "an unknown number"
	if d.Lost >= 0 {
		lost = fmt.Sprint(d.Lost)
	}
	s.setNotice(fmt.Sprintf("spool was damaged (%s): moved to %s; %d findings salvaged, %s lost", ins.damage, q, d.Salvaged, lost))
	return s, nil
}

func (s *Spool) setNotice(n string) {
	s.mu.Lock()
	s.wl.notice = n
	s.mu.Unlock()
}

// restore fills a fresh spool (inside init) with salvaged records under
// their own seqs and the damage report.
func (s *Spool) restore(w *writer, f *freshStart) error {
	if w.st.count != 0 {
		return errors.New("restore into a spool that is not empty")
	}
	for _, r := range f.records {
		sev := normSeverity(r.Severity)
		if err := w.rec.Put(seqKey(r.Seq), w.seal.seal(r.Seq, sev, r.Payload)); err != nil {
			return fmt.Errorf("restore record %d: %w", r.Seq, err)
		}
		if err := w.idx.Put(sevKey(sev, r.Seq), []byte{}); err != nil {
			return fmt.Errorf("restore index %d: %w", r.Seq, err)
		}
		w.st.count++
		w.st.bytes += recordSize(len(r.Payload))
	}
	w.st.nextSeq = max(w.st.nextSeq, f.nextSeq)
	if w.st.nextSeq == math.MaxUint64 {
		return errors.New("sequence numbers exhausted")
	}
	w.st.dropped += f.dropped
	w.wlTotal = f.wlTotal
	if err := w.meta.Put(keyWriteFailures, binary.BigEndian.AppendUint64(nil, w.wlTotal)); err != nil {
		return err
	}
	if s.opts.DamageReport == nil {
		return nil
	}
	rep := s.opts.DamageReport(f.damage)
	if rep.Payload == nil || recordSize(len(rep.Payload)) > s.maxBytes {
		return nil
	}
	return w.put(rep)
}

// initSealed marks a new file as sealed, and seals the records of a file
// written before records were sealed.
func (s *Spool) initSealed(w *writer) error {
	if v := w.meta.Get(keyCipher); v != nil {
		if string(v) != cipherName {
			return fmt.Errorf("unknown record cipher %q", v)
		}
		return nil
	}
	type kv struct {
		seq uint64
		v   []byte
	}
	var plain []kv
	c := w.rec.Cursor()
	for k, v := c.First(); k != nil; k, v = c.Next() {
		if len(k) != 8 || len(v) < 1 {
			return fmt.Errorf("corrupt record %x", k)
		}
		plain = append(plain, kv{binary.BigEndian.Uint64(k), bytes.Clone(v)})
	}
	for _, r := range plain {
		if err := w.rec.Put(seqKey(r.seq), w.seal.seal(r.seq, r.v[0], r.v[1:])); err != nil {
			return fmt.Errorf("seal record %d: %w", r.seq, err)
		}
	}
	if len(plain) > 0 {
		s.log.Info("spool: sealed records written before encryption", "records", len(plain))
	}
	return w.meta.Put(keyCipher, []byte(cipherName))
}
