package spool

import (
	"bytes"
	"cmp"
	"encoding/binary"
	"fmt"
	"io"
	"os"
	"slices"
)

// walkPages checks the b+tree of a bbolt file from its raw bytes (read with
// ReadAt, not through bbolt's mapping), under the same rules bbolt's own
// page walk enforces when it rebuilds the free list at the first write:
// every page in bounds, of a tree type, referenced once, its elements
// inside it, keys in order within the ranges their parents give. That walk
// runs on a goroutine of bbolt's own and, on its first complaint, panics
// while the walk goes on reading the mapping that is then unmapped: a
// crash no recover can stop. Only a file that passes here is given to
// bbolt for writing.
//
// Layout (bbolt's internal/common, native byte order): page header id(8)
// flags(2) count(2) overflow(4); branch element pos(4) ksize(4) pgid(8);
// leaf element flags(4) pos(4) ksize(4) vsize(4); a bucket value is root(8)
// sequence(8), followed by an inline page when root is 0.
func walkPages(path string) error {
	f, err := os.Open(path)
	if err != nil {
		return fmt.Errorf("read spool file: %w", err)
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return fmt.Errorf("read spool file: %w", err)
	}
	pw := &pageWalker{f: f, size: fi.Size(), seen: map[uint64]bool{}}
	if err := pw.readMeta(); err != nil {
		return err
	}
	return pw.bucket(pw.root, nil, 0)
}

const (
	pageHeaderSize   = 16
	elemSize         = 16
	branchPageFlag   = 0x01
	leafPageFlag     = 0x02
	freelistPageFlag = 0x10
	bucketLeafFlag   = 0x01
	noFreelist       = ^uint64(0)
	maxPageDepth     = 64
)

type pageWalker struct {
	f    *os.File
	size int64
	ps   int64
	hwm  uint64 // meta pgid: pages at or above it are not in use
	root uint64
	seen map[uint64]bool
}

var ne = binary.NativeEndian

func (pw *pageWalker) readMeta() error {
	// checkMetas has validated both; bbolt uses the one with the higher txid.
	buf := make([]byte, pageHeaderSize+64)
	var best []byte
	var bestTx uint64
	for i := int64(0); i < 2; i++ {
		off := int64(0)
		if i == 1 {
			off = pw.ps
		}
		if _, err := pw.f.ReadAt(buf, off); err != nil {
			return fmt.Errorf("%w: meta page %d unreadable: %v", errDamaged, i, err)
		}
		m := buf[pageHeaderSize:]
		if i == 0 {
			pw.ps = int64(ne.Uint32(m[8:]))
		}
		if tx := ne.Uint64(m[48:]); best == nil || tx > bestTx {
			best, bestTx = append([]byte(nil), m...), tx
		}
	}
	pw.root, pw.hwm = ne.Uint64(best[16:]), ne.Uint64(best[40:])
	if pw.hwm < 2 || int64(pw.hwm)*pw.ps > pw.size {
		return fmt.Errorf("%w: meta says %d pages, file holds %d", errDamaged, pw.hwm, pw.size/pw.ps)
	}
	if fl := ne.Uint64(best[32:]); fl != noFreelist {
		p, err := pw.page(fl)
		if err != nil {
			return err
		}
		if ne.Uint16(p[8:])&freelistPageFlag == 0 {
			return fmt.Errorf("%w: free list page %d has flags %#x", errDamaged, fl, ne.Uint16(p[8:]))
		}
	}
	return nil
}

// page reads page id with its overflow, checking bounds and references.
func (pw *pageWalker) page(id uint64) ([]byte, error) {
	if id < 2 || id >= pw.hwm {
		return nil, fmt.Errorf("%w: page %d out of bounds (%d pages in use)", errDamaged, id, pw.hwm)
	}
	hdr := make([]byte, pageHeaderSize)
	if _, err := pw.f.ReadAt(hdr, int64(id)*pw.ps); err != nil {
		return nil, fmt.Errorf("%w: page %d unreadable: %v", errDamaged, id, err)
	}
	if got := ne.Uint64(hdr); got != id {
		return nil, fmt.Errorf("%w: page %d says it is page %d", errDamaged, id, got)
	}
	ov := uint64(ne.Uint32(hdr[12:]))
	if id+ov >= pw.hwm {
		return nil, fmt.Errorf("%w: page %d overflows past the pages in use (%d more)", errDamaged, id, ov)
	}
	for i := id; i <= id+ov; i++ {
		if pw.seen[i] {
			return nil, fmt.Errorf("%w: page %d referenced twice", errDamaged, i)
		}
		pw.seen[i] = true
	}
	p := make([]byte, int64(ov+1)*pw.ps)
	if _, err := pw.f.ReadAt(p, int64(id)*pw.ps); err != nil && err != io.EOF {
		return nil, fmt.Errorf("%w: page %d unreadable: %v", errDamaged, id, err)
	}
	return p, nil
}

// bucket walks the tree rooted at page root (or the inline page when root
// is 0).
func (pw *pageWalker) bucket(root uint64, inline []byte, depth int) error {
	if root == 0 {
		_, err := pw.node(inline, 0, nil, nil, depth)
		return err
	}
	_, err := pw.tree(root, nil, nil, depth)
	return err
}

func (pw *pageWalker) tree(id uint64, minKey, maxKey []byte, depth int) ([]byte, error) {
	if depth > maxPageDepth {
		return nil, fmt.Errorf("%w: tree deeper than %d", errDamaged, maxPageDepth)
	}
	p, err := pw.page(id)
	if err != nil {
		return nil, err
	}
	return pw.node(p, id, minKey, maxKey, depth)
}

// node checks one page's elements; it returns the largest key under it.
func (pw *pageWalker) node(p []byte, id uint64, minKey, maxKey []byte, depth int) ([]byte, error) {
	if len(p) < pageHeaderSize {
		return nil, fmt.Errorf("%w: page %d truncated", errDamaged, id)
	}
	flags, count := ne.Uint16(p[8:]), int(ne.Uint16(p[10:]))
	if pageHeaderSize+count*elemSize > len(p) {
		return nil, fmt.Errorf("%w: page %d: %d elements do not fit", errDamaged, id, count)
	}
	bad := func(format string, a ...any) error {
		return fmt.Errorf("%w: page %d: %s", errDamaged, id, fmt.Sprintf(format, a...))
	}
	prev := minKey
	var last []byte
	for i := range count {
		eo := pageHeaderSize + i*elemSize
		e := p[eo : eo+elemSize]
		var key, val []byte
		var child uint64
		var eflags uint32
		switch flags {
		case branchPageFlag:
			pos, ks := uint64(ne.Uint32(e[0:])), uint64(ne.Uint32(e[4:]))
			child = ne.Uint64(e[8:])
			if uint64(eo)+pos+ks > uint64(len(p)) {
				return nil, bad("branch element %d outside the page", i)
			}
			key = p[uint64(eo)+pos : uint64(eo)+pos+ks]
		case leafPageFlag:
			eflags = ne.Uint32(e[0:])
			pos, ks, vs := uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
			if uint64(eo)+pos+ks+vs > uint64(len(p)) {
				return nil, bad("leaf element %d outside the page", i)
			}
			key = p[uint64(eo)+pos : uint64(eo)+pos+ks]
			val = p[uint64(eo)+pos+ks : uint64(eo)+pos+ks+vs]
		default:
			return nil, bad("not a branch or leaf page (flags %#x)", flags)
		}
		if prev != nil && (bytes.Compare(prev, key) > 0 || (i > 0 && bytes.Equal(prev, key))) {
			return nil, bad("key %d out of order", i)
		}
		if maxKey != nil && bytes.Compare(key, maxKey) >= 0 {
			return nil, bad("key %d beyond its parent's range", i)
		}
		switch {
		case flags == branchPageFlag:
			var next []byte = maxKey
			if i+1 < count {
				ne2 := pageHeaderSize + (i+1)*elemSize
				pos, ks := uint64(ne.Uint32(p[ne2:])), uint64(ne.Uint32(p[ne2+4:]))
				if uint64(ne2)+pos+ks > uint64(len(p)) {
					return nil, bad("branch element %d outside the page", i+1)
				}
				next = p[uint64(ne2)+pos : uint64(ne2)+pos+ks]
			}
			sub, err := pw.tree(child, key, next, depth+1)
			if err != nil {
				return nil, err
			}
			prev, last = sub, sub
			continue
		case eflags&bucketLeafFlag != 0:
			if len(val) < 16 {
				return nil, bad("bucket value %d too short", i)
			}
			if r := ne.Uint64(val); r == 0 {
				if err := pw.bucket(0, val[16:], depth+1); err != nil {
					return nil, err
				}
			} else if err := pw.bucket(r, nil, depth+1); err != nil {
				return nil, err
			}
		}
		prev, last = key, key
	}
	return last, nil
}

// rawSalvage reads every page of the file as bytes and returns the records
// above seq `above` that authenticate under sl, wherever they lie: in a
// tree a damaged meta page no longer points to, or beside a broken branch.
// Authentication makes this safe: a record is only taken if its bytes are
// exactly what was sealed for its seq and severity. Limited to seqs above
// what the tree gave, so acknowledged records in freed pages are not sent
// again.
func rawSalvage(path string, sl *sealer, above uint64) []Record {
	f, err := os.Open(path)
	if err != nil {
		return nil
	}
	defer f.Close()
	fi, err := f.Stat()
	if err != nil {
		return nil
	}
	hdr := make([]byte, pageHeaderSize+64)
	if _, err := f.ReadAt(hdr, 0); err != nil {
		return nil
	}
	ps := int64(ne.Uint32(hdr[pageHeaderSize+8:]))
	if ps < 512 || ps > 1<<20 || ps&(ps-1) != 0 {
		ps = int64(os.Getpagesize())
	}
	found := map[uint64]Record{}
	buf := make([]byte, ps)
	for off := 2 * ps; off+ps <= fi.Size(); off += ps {
		if _, err := f.ReadAt(buf, off); err != nil {
			break
		}
		if ne.Uint16(buf[8:]) != leafPageFlag {
			continue
		}
		p := buf
		if ov := int64(ne.Uint32(buf[12:])); ov > 0 && off+(ov+1)*ps <= fi.Size() && ov < 4096 {
			p = make([]byte, (ov+1)*ps)
			if _, err := f.ReadAt(p, off); err != nil {
				continue
			}
		}
		count := int(ne.Uint16(p[10:]))
		for i := range count {
			eo := pageHeaderSize + i*elemSize
			if eo+elemSize > len(p) {
				break
			}
			e := p[eo : eo+elemSize]
			pos, ks, vs := uint64(ne.Uint32(e[4:])), uint64(ne.Uint32(e[8:])), uint64(ne.Uint32(e[12:]))
			if ne.Uint32(e[0:]) != 0 || ks != 8 || uint64(eo)+pos+ks+vs > uint64(len(p)) {
				continue
			}
			k := p[uint64(eo)+pos : uint64(eo)+pos+ks]
			v := p[uint64(eo)+pos+ks : uint64(eo)+pos+ks+vs]
			seq := binary.BigEndian.Uint64(k)
			if seq <= above {
				continue
			}
			if _, dup := found[seq]; dup {
				continue
			}
			if sev, pl, err := sl.open(seq, v); err == nil {
				found[seq] = Record{Seq: seq, Severity: sev, Payload: pl}
			}
		}
	}
	out := make([]Record, 0, len(found))
	for _, r := range found {
		out = append(out, r)
	}
	slices.SortFunc(out, func(a, b Record) int { return cmp.Compare(a.Seq, b.Seq) })
	return out
}
