package executables

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"github.com/fsnotify/fsnotify"

	"github.com/vigil-safeguarding/vigil/agent/checks"
)

// Bounds of the watcher. A storm of file events costs at most maxPending
// map entries and workers goroutines reading 4 KiB heads; when the pending
// set is full, further paths are not dropped: their folder is marked and
// rescanned once the set has drained.
var (
	workers       = 2
	maxPending    = 16384
	maxWatched    = 4096 // folders
	maxSeen       = 8192 // executables remembered to avoid reporting twice
	rescanEvery   = 30 * time.Second
	bundleRetries = 10
)

// testHookWatching is called once the initial folders are watched.
var testHookWatching func()

type dirRule struct {
	cfg   int // index into monitor.cfgs
	depth int // 0 for a root
}

// monitor watches the folders of one or more rules with one fsnotify
// watcher and a bounded worker pool.
type monitor struct {
	cfgs     []*config
	emit     checks.Emit
	debounce time.Duration
	log      *slog.Logger

	w *fsnotify.Watcher

	mu   sync.Mutex
	dirs map[string][]dirRule // watched folders and the rules that want them

	// Owned by the event loop.
	pending map[string]time.Time // path -> time of its last event
	queue   []queued             // pending paths in order of their events (may hold stale entries)
	qhead   int
	dirty   map[string]bool // folders to rescan (pending set was full, or events were lost)
	bundles map[string]int  // .app folders waiting for their Contents/MacOS: retries

	work       chan string
	retry      chan string
	kick       chan struct{} // a worker finished an item
	backlogged bool          // the last flush found the work queue full

	seenMu sync.Mutex
	seen   map[string]seenKey
}

type queued struct {
	path string
	t    time.Time
}

type seenKey struct {
	size  int64
	mtime time.Time
}

func newMonitor(cfgs []*config, emit checks.Emit) *monitor {
	m := &monitor{
		cfgs: cfgs, emit: emit, log: cfgs[0].log,
		dirs: map[string][]dirRule{}, pending: map[string]time.Time{}, dirty: map[string]bool{},
		bundles: map[string]int{}, seen: map[string]seenKey{},
		work: make(chan string, 256), retry: make(chan string, 64), kick: make(chan struct{}, 1),
	}
	for _, c := range cfgs {
		if m.debounce == 0 || c.debounce < m.debounce {
			m.debounce = c.debounce
		}
	}
	return m
}

func (m *monitor) run(ctx context.Context) error {
	w, err := fsnotify.NewBufferedWatcher(4096)
	if err != nil {
		return err
	}
	m.w = w
	defer w.Close()
	m.refreshRoots(false)
	if testHookWatching != nil {
		testHookWatching()
	}

	var wg sync.WaitGroup
	for i := 0; i < workers; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			m.worker(ctx)
		}()
	}
	defer wg.Wait()

	tickEvery := max(m.debounce/4, 5*time.Millisecond)
	var ticker *time.Ticker
	var tickC <-chan time.Time
	reglob := time.NewTicker(rescanEvery)
	defer reglob.Stop()
	for {
		select {
		case <-ctx.Done():
			if ticker != nil {
				ticker.Stop()
			}
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("fsnotify watcher closed")
			}
			m.handle(ev)
		case err, ok := <-w.Errors:
			if !ok {
				return errors.New("fsnotify watcher closed")
			}
			if errors.Is(err, fsnotify.ErrEventOverflow) {
				m.log.Warn("executables: file events lost, rescanning watched folders")
				m.mu.Lock()
				for d := range m.dirs {
					m.dirty[d] = true
				}
				m.mu.Unlock()
			} else {
				m.log.Warn("executables: watcher", "err", err)
			}
		case p := <-m.retry:
			if m.bundles[p]++; m.bundles[p] <= bundleRetries {
				m.pend(p)
			} else {
				delete(m.bundles, p)
			}
		case <-tickC:
			m.flush()
		case <-m.kick:
			if m.backlogged {
				m.flush()
			}
		case <-reglob.C:
			m.refreshRoots(true)
		}
		busy := len(m.pending) > 0 || len(m.dirty) > 0
		if busy && ticker == nil {
			ticker = time.NewTicker(tickEvery)
			tickC = ticker.C
		} else if !busy && ticker != nil {
			ticker.Stop()
			ticker, tickC = nil, nil
		}
	}
}

// pend records an event for path (coalescing repeated events), or marks
// its folder for a rescan when the pending set is full.
func (m *monitor) pend(path string) {
	if !m.setPending(path, time.Now()) {
		m.dirty[filepath.Dir(path)] = true
	}
}

// setPending records an event time for path; false if the set is full.
func (m *monitor) setPending(path string, t time.Time) bool {
	if _, ok := m.pending[path]; ok {
		m.pending[path] = t
		return true
	}
	if len(m.pending) >= maxPending || len(m.queue)-m.qhead >= 2*maxPending {
		return false
	}
	m.pending[path] = t
	m.queue = append(m.queue, queued{path, t})
	return true
}

func (m *monitor) handle(ev fsnotify.Event) {
	p := ev.Name
	switch {
	case ev.Has(fsnotify.Remove) || ev.Has(fsnotify.Rename):
		delete(m.pending, p)
		m.mu.Lock()
		_, watched := m.dirs[p]
		if watched {
			m.dropDirLocked(p)
		}
		m.mu.Unlock()
	case ev.Has(fsnotify.Create) || ev.Has(fsnotify.Write) || ev.Has(fsnotify.Chmod):
		if ev.Has(fsnotify.Create) {
			if st, err := os.Lstat(p); err == nil && st.IsDir() {
				if strings.EqualFold(filepath.Ext(p), ".app") {
					m.bundles[p] = 0
					m.pend(p)
				}
				m.addSubdir(p)
				return
			}
		}
		m.pend(p)
	}
}

// dropDirLocked forgets a folder and those below it.
func (m *monitor) dropDirLocked(dir string) {
	prefix := dir + string(filepath.Separator)
	for d := range m.dirs {
		if d == dir || strings.HasPrefix(d, prefix) {
			delete(m.dirs, d)
			m.w.Remove(d)
		}
	}
}

// addSubdir watches a new folder for the recursive rules whose depth
// allows it, and queues what it already holds.
func (m *monitor) addSubdir(dir string) {
	m.mu.Lock()
	var rs []dirRule
	for _, dr := range m.dirs[filepath.Dir(dir)] {
		if c := m.cfgs[dr.cfg]; c.recursive && dr.depth < c.maxDepth {
			rs = append(rs, dirRule{dr.cfg, dr.depth + 1})
		}
	}
	m.mu.Unlock()
	if len(rs) > 0 {
		m.addDir(dir, rs, true)
	}
}

// addDir starts watching dir for rules rs. With scan, its current files
// are queued and its sub-folders added (recursive rules); without, only
// sub-folders are added.
func (m *monitor) addDir(dir string, rs []dirRule, scan bool) {
	m.mu.Lock()
	if old, ok := m.dirs[dir]; ok {
		m.dirs[dir] = mergeRules(old, rs)
		m.mu.Unlock()
		return
	}
	if len(m.dirs) >= maxWatched {
		m.mu.Unlock()
		m.log.Warn("executables: too many watched folders, not watching", "dir", dir, "limit", maxWatched)
		return
	}
	m.mu.Unlock()
	if err := m.w.Add(dir); err != nil {
		m.log.Debug("executables: watch", "dir", dir, "err", err)
		return
	}
	m.mu.Lock()
	m.dirs[dir] = rs
	m.mu.Unlock()
	wantSub := false
	for _, dr := range rs {
		if c := m.cfgs[dr.cfg]; c.recursive && dr.depth < c.maxDepth {
			wantSub = true
		}
	}
	if !scan && !wantSub {
		return
	}
	d, err := os.Open(dir)
	if err != nil {
		return
	}
	defer d.Close()
	for n := 0; n < MaxPollFiles; {
		ents, err := d.ReadDir(256)
		n += len(ents)
		for _, e := range ents {
			p := filepath.Join(dir, e.Name())
			switch {
			case e.IsDir():
				if scan && strings.EqualFold(filepath.Ext(p), ".app") {
					m.pend(p)
				}
				if wantSub {
					m.addSubdir(p)
				}
			case scan && e.Type().IsRegular():
				m.pend(p)
			}
		}
		if err != nil {
			break
		}
	}
}

func mergeRules(a, b []dirRule) []dirRule {
	out := append([]dirRule(nil), a...)
	for _, x := range b {
		found := false
		for i, y := range out {
			if y.cfg == x.cfg {
				found = true
				out[i].depth = min(y.depth, x.depth)
			}
		}
		if !found {
			out = append(out, x)
		}
	}
	return out
}

// refreshRoots expands the rules' path globs and watches new roots (a USB
// stick mounted, a new user's Downloads); with scan, the contents of new
// roots are queued. Roots that disappeared are dropped.
func (m *monitor) refreshRoots(scan bool) {
	roots := map[string][]dirRule{}
	var order []string
	for i, c := range m.cfgs {
		for _, r := range expandRoots(c.paths) {
			if roots[r] == nil {
				order = append(order, r)
			}
			roots[r] = append(roots[r], dirRule{cfg: i})
		}
	}
	m.mu.Lock()
	for d := range m.dirs {
		if _, err := os.Stat(d); err != nil {
			m.dropDirLocked(d)
		}
	}
	var added []string
	for _, r := range order {
		if _, ok := m.dirs[r]; !ok {
			added = append(added, r)
		}
	}
	m.mu.Unlock()
	for _, r := range order {
		m.addDir(r, roots[r], scan && contains(added, r))
	}
}

func contains(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// flush hands paths quiet for the debounce time to the workers, then
// rescans dirty folders once there is room.
func (m *monitor) flush() {
	m.backlogged = false
	now := time.Now()
	for m.qhead < len(m.queue) {
		q := m.queue[m.qhead]
		t, ok := m.pending[q.path]
		switch {
		case !ok:
			// removed, or already handed out: stale
		case !t.Equal(q.t):
			// a later event: take its place at the back
			m.queue = append(m.queue, queued{q.path, t})
		case now.Sub(t) < m.debounce:
			m.compact()
			return // the rest are newer
		default:
			select {
			case m.work <- q.path:
				delete(m.pending, q.path)
			default:
				m.backlogged = true // workers busy: again when one is done
				m.compact()
				return
			}
		}
		m.queue[m.qhead] = queued{}
		m.qhead++
	}
	m.compact()
	if len(m.dirty) == 0 || len(m.pending) > maxPending/2 {
		return
	}
	for dir := range m.dirty {
		delete(m.dirty, dir)
		if !m.rescan(dir) {
			m.dirty[dir] = true
			return
		}
	}
}

// compact drops the consumed front of the queue.
func (m *monitor) compact() {
	if m.qhead == len(m.queue) {
		m.queue, m.qhead = m.queue[:0], 0
		if cap(m.queue) > 4*maxPending {
			m.queue = nil
		}
		return
	}
	if m.qhead > 1024 && m.qhead > len(m.queue)/2 {
		n := copy(m.queue, m.queue[m.qhead:])
		clear(m.queue[n:])
		m.queue, m.qhead = m.queue[:n], 0
	}
}

// rescan queues dir's files; false if the pending set filled up first.
func (m *monitor) rescan(dir string) bool {
	m.mu.Lock()
	_, ok := m.dirs[dir]
	m.mu.Unlock()
	if !ok {
		return true
	}
	d, err := os.Open(dir)
	if err != nil {
		return true
	}
	defer d.Close()
	for {
		ents, err := d.ReadDir(256)
		for _, e := range ents {
			if e.Type().IsRegular() || e.IsDir() && strings.EqualFold(filepath.Ext(e.Name()), ".app") {
				if !m.setPending(filepath.Join(dir, e.Name()), time.Now()) {
					return false
				}
			}
		}
		if err != nil {
			return true
		}
	}
}

func (m *monitor) rulesFor(dir string) []dirRule {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.dirs[dir]
}

func (m *monitor) worker(ctx context.Context) {
	for {
		select {
		case <-ctx.Done():
			return
		case p := <-m.work:
			m.process(ctx, p)
			select {
			case m.kick <- struct{}{}:
			default:
			}
		}
	}
}

func (m *monitor) process(ctx context.Context, p string) {
	rs := m.rulesFor(filepath.Dir(p))
	if len(rs) == 0 {
		return
	}
	var maxHash int64
	for _, dr := range rs {
		maxHash = max(maxHash, m.cfgs[dr.cfg].maxHash)
	}
	fi, err := inspect(p, maxHash)
	if err != nil {
		if errors.Is(err, errNotExecutable) && strings.EqualFold(filepath.Ext(p), ".app") {
			select { // a bundle still being copied: look again later
			case m.retry <- p:
			default:
			}
		}
		return
	}
	k := seenKey{fi.Size, fi.ModTime}
	m.seenMu.Lock()
	if old, ok := m.seen[p]; ok && old == k {
		m.seenMu.Unlock()
		return
	}
	if len(m.seen) >= maxSeen {
		for x := range m.seen {
			delete(m.seen, x)
			break
		}
	}
	m.seen[p] = k
	m.seenMu.Unlock()
	st := &fileState{}
	for _, dr := range rs {
		if err := reportFile(ctx, m.cfgs[dr.cfg], fi, "watch", m.emit, st); err != nil && ctx.Err() == nil {
			m.log.Warn("executables: report", "path", p, "err", err)
		}
	}
}
