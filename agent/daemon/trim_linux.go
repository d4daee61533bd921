package daemon

import (
	"bufio"
	"bytes"
	"log/slog"
	"os"
	"runtime/debug"
	"strconv"
	"strings"

	"golang.org/x/sys/unix"
)

// trimMemory hands back to the kernel what only start-up needed.
//
// The Go heap: start-up (rules, compiled keyword libraries, the first
// polls) leaves free spans the scavenger returns only slowly.
//
// The binary's own pages: the kernel maps file pages 64 KiB around every
// fault, and start-up (package init of gRPC, protobuf, the checks; rule
// parsing) faults all over the text and read-only data, so the whole
// image (~16 MB) stays mapped and counted in RSS although an idle agent
// runs a small part of it. For clean, read-only file mappings (text,
// rodata, libc) MADV_DONTNEED only drops the page table entries: the pages
// stay in the page cache and what the agent still runs faults back in
// cheaply. Mappings that were ever written (data, RELRO after relocation)
// are never touched (any anonymous page in them: for those DONTNEED would
// discard content).
func trimMemory(log *slog.Logger) {
	debug.FreeOSMemory()
	f, err := os.Open("/proc/self/smaps")
	if err != nil {
		log.Debug("trim memory: read smaps", "err", err)
		return
	}
	defer f.Close()
	type mapping struct {
		start, end uint64
		eligible   bool
		dirty      bool // holds anonymous (copied-on-write) pages
	}
	var cur *mapping
	var all []mapping
	flush := func() {
		if cur != nil && cur.eligible && !cur.dirty {
			all = append(all, *cur)
		}
		cur = nil
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := sc.Bytes()
		if i := bytes.IndexByte(line, ':'); i > 0 && !bytes.ContainsRune(line[:i], '-') {
			// "Anonymous:   12 kB": pages copied on write (relocations),
			// which DONTNEED would discard. Dirty file pages (a binary
			// just written, not yet flushed) are page cache: safe.
			k := string(line[:i])
			if cur != nil && (k == "Anonymous" || k == "Swap") {
				if v := strings.Fields(string(line[i+1:])); len(v) > 0 && v[0] != "0" {
					cur.dirty = true
				}
			}
			continue
		}
		// "start-end perms offset dev inode path"
		flush()
		fs := strings.Fields(string(line))
		if len(fs) < 6 {
			continue
		}
		se := strings.SplitN(fs[0], "-", 2)
		if len(se) != 2 {
			continue
		}
		start, err1 := strconv.ParseUint(se[0], 16, 64)
		end, err2 := strconv.ParseUint(se[1], 16, 64)
		if err1 != nil || err2 != nil {
			continue
		}
		perms, path := fs[1], fs[5]
		cur = &mapping{start: start, end: end,
			eligible: strings.HasPrefix(path, "/") && len(perms) == 4 && perms[1] == '-' && perms[3] == 'p'}
	}
	flush()
	var released uint64
	for _, m := range all {
		if _, _, e := unix.Syscall(unix.SYS_MADVISE, uintptr(m.start), uintptr(m.end-m.start), unix.MADV_DONTNEED); e == 0 {
			released += m.end - m.start
		}
	}
	log.Debug("trimmed memory left over from start-up", "image_bytes_unmapped", released)
}
