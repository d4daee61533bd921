// Package rulesdist serves rules bundles to agents by school and device
// group. A bundle is composed of three layers, each replacing the files of
// the one before by relative path:
//
//  1. the trust's rule pack: DATA/rules/<group>/ (the "default" group's
//     folder for a group without one of its own);
//  2. the school's overrides: DATA/school-rules/<school>/, laid over every
//     group's pack for that school's devices (a rule file of the same path
//     with enabled: false switches a trust rule off there; a new file adds
//     a rule or a library);
//  3. files the collector generates for the school (its approved
//     exclusions, its keyword terms and the trust-wide ones it has not
//     suppressed), through SetExtra.
//
// A single school is a trust of one: with no overrides and nothing
// generated, every school's bundle is the group's folder, byte for byte.
// Edits are picked up by a watcher and pushed to connected agents.
package rulesdist

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
	_ "github.com/vigil-safeguarding/vigil/rules/exclusions" // approved exclusions travel in bundles
	_ "github.com/vigil-safeguarding/vigil/rules/match"      // keyword libraries travel in bundles
)

// DefaultGroup names the bundle for groups without their own folder.
const DefaultGroup = "default"

// SchoolRulesDir is the folder, beside the rules folder, that holds each
// school's overrides (one sub-folder per school ID).
const SchoolRulesDir = "school-rules"

// key names one school's bundle of one group.
type key struct{ school, group string }

// Distributor holds the current bundle of every school's every group.
type Distributor struct {
	dir       string
	schoolDir string // "": no school overrides
	log       *slog.Logger

	buildMu sync.Mutex                   // serialises Reload and Refresh
	base    map[string]map[string][]byte // group -> files last loaded from its folder
	overlay map[string]map[string][]byte // school -> its override files
	extra   func(school, group string) map[string][]byte
	schools func() ([]string, error) // nil: the default school only

	mu      sync.RWMutex
	bundles map[key]*vigilv1.RulesBundle

	// history records every change of a group's bundle (nil: none kept);
	// recorded is its latest entry per group, read once.
	history  History
	recorded map[string]store.RulesChange

	// now stamps bundle versions and history entries; a test of a report
	// over a fixed period sets it so the change falls inside the period.
	now func() time.Time
}

// History keeps the rules bundles' change history: the decision log of
// the DfE evidence pack reads it (the store).
type History interface {
	LastRulesChanges() (map[string]store.RulesChange, error)
	RecordRulesChange(store.RulesChange) error
}

// Option configures New.
type Option func(*Distributor)

// WithHistory records each bundle change, compared with the last one
// recorded, so an edit made while the collector was stopped is recorded
// at the next start.
func WithHistory(h History) Option { return func(d *Distributor) { d.history = h } }

// WithSchools composes a bundle for each school the function lists (the
// store's schools; nil: the default school only), with the school
// overrides under overrides (DATA/school-rules; "" for none). A school not
// yet listed gets its bundle composed at its first request.
func WithSchools(list func() ([]string, error), overrides string) Option {
	return func(d *Distributor) { d.schools, d.schoolDir = list, overrides }
}

// WithClock sets the clock that stamps bundle versions and recorded
// changes (default time.Now).
func WithClock(now func() time.Time) Option { return func(d *Distributor) { d.now = now } }

// anyKind accepts every check kind: agents validate kinds and parameters
// against their own registry, and a newer agent may know kinds this
// collector does not.
type anyKind struct{}

func (anyKind) Known(string) bool                       { return true }
func (anyKind) ValidateParams(string, *yaml.Node) error { return nil }

// New loads the bundles under dir, seeding dir/default with the embedded
// default pack on first start.
func New(dir string, log *slog.Logger, opts ...Option) (*Distributor, error) {
	d := &Distributor{dir: dir, log: log, base: map[string]map[string][]byte{}, overlay: map[string]map[string][]byte{},
		bundles: map[key]*vigilv1.RulesBundle{}}
	for _, o := range opts {
		o(d)
	}
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := seed(filepath.Join(dir, DefaultGroup)); err != nil {
			return nil, fmt.Errorf("seed default rules in %s: %w", dir, err)
		}
	}
	if d.schoolDir != "" {
		// Made at once so the watcher has a folder to watch before the
		// first school writes an override.
		if err := os.MkdirAll(d.schoolDir, 0o700); err != nil {
			return nil, fmt.Errorf("create the school rules folder %s: %w", d.schoolDir, err)
		}
	}
	if err := d.Reload(); err != nil {
		return nil, err
	}
	return d, nil
}

func seed(dir string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	for name, data := range rules.Defaults() {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomic(p, data, 0o600); err != nil {
			return err
		}
	}
	return nil
}

// SetExtra sets the function that supplies generated files for a school's
// bundle of a group (relative path -> bytes; they replace a folder or
// override file of the same path). It is called for every school and
// group on each Reload and Refresh; call Refresh after setting it.
func (d *Distributor) SetExtra(fn func(school, group string) map[string][]byte) {
	d.buildMu.Lock()
	d.extra = fn
	d.buildMu.Unlock()
}

// Reload re-reads every group folder. A group whose files do not validate
// keeps its previous bundle; the errors are logged with file:line:col.
func (d *Distributor) Reload() error {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("read rules dir %s: %w", d.dir, err)
	}
	d.buildMu.Lock()
	defer d.buildMu.Unlock()
	d.base = d.loadFolders(d.dir, entries, d.base, "group", func(string) bool { return true })
	d.loadOverrides()
	d.rebuild()
	return nil
}

// loadOverrides re-reads every school's override folder. A school whose
// files do not validate keeps its previous overrides (logged with
// file:line:col). buildMu is held.
func (d *Distributor) loadOverrides() {
	if d.schoolDir == "" {
		return
	}
	entries, err := os.ReadDir(d.schoolDir)
	if err != nil {
		d.log.Error("read the school rules folder; keeping the previous overrides", "dir", d.schoolDir, "err", err)
		return
	}
	d.overlay = d.loadFolders(d.schoolDir, entries, d.overlay, "school", func(sc string) bool {
		if strings.HasPrefix(sc, ".") {
			return false // a set being swapped in (SetSchoolOverrides)
		}
		if !store.ValidSchoolID(sc) {
			d.log.Error("a school rules folder is not named by a school ID; ignored", "folder", filepath.Join(d.schoolDir, sc))
			return false
		}
		return true
	})
}

// loadFolders loads each sub-folder of dir (a group's pack, a school's
// overrides) that named accepts. One whose files do not validate keeps
// what it had in prev; the errors are logged with file:line:col.
func (d *Distributor) loadFolders(dir string, entries []os.DirEntry, prev map[string]map[string][]byte, what string, named func(string) bool) map[string]map[string][]byte {
	next := map[string]map[string][]byte{}
	for _, e := range entries {
		name := e.Name()
		if !e.IsDir() || !named(name) {
			continue
		}
		set, errs := rules.LoadDir(filepath.Join(dir, name), anyKind{})
		if len(errs) > 0 {
			d.log.Error("rules do not validate; keeping the previous ones", what, name, "errors", errs.Error())
			if old, ok := prev[name]; ok {
				next[name] = old
			}
			continue
		}
		next[name] = set.Files
	}
	return next
}

// schoolList is the schools to compose bundles for: the listed ones, the
// default school, and any with overrides. buildMu is held.
func (d *Distributor) schoolList() []string {
	seen := map[string]bool{store.DefaultSchool: true}
	if d.schools != nil {
		list, err := d.schools()
		if err != nil {
			d.log.Error("list schools for the rules bundles; composing the ones known", "err", err)
			d.mu.RLock()
			for k := range d.bundles {
				seen[k.school] = true
			}
			d.mu.RUnlock()
		}
		for _, sc := range list {
			seen[store.SchoolOf(sc)] = true
		}
	}
	for sc := range d.overlay {
		seen[sc] = true
	}
	out := make([]string, 0, len(seen))
	for sc := range seen {
		out = append(out, sc)
	}
	sort.Strings(out)
	return out
}

// Refresh rebuilds the bundles from the files last loaded and the current
// extra files, without re-reading the folders. It reports whether any
// group's bundle changed (then push it to the agents).
func (d *Distributor) Refresh() bool {
	d.buildMu.Lock()
	defer d.buildMu.Unlock()
	return d.rebuild()
}

// rebuild composes every school's bundle of every group and reports
// whether any hash changed. An unchanged bundle keeps its version.
// buildMu is held.
func (d *Distributor) rebuild() bool {
	d.mu.RLock()
	prev := d.bundles
	d.mu.RUnlock()
	schools := d.schoolList()
	next := make(map[key]*vigilv1.RulesBundle, len(d.base)*len(schools))
	changed := len(prev) != len(d.base)*len(schools)
	for _, sc := range schools {
		for g := range d.base {
			k := key{sc, g}
			b := d.compose(k, prev[k])
			changed = changed || b != prev[k]
			next[k] = b
		}
	}
	d.mu.Lock()
	d.bundles = next
	d.mu.Unlock()
	d.recordHistory(next)
	if changed {
		names := make([]string, 0, len(next))
		for k, b := range next {
			names = append(names, store.RulesBundleKey(k.school, k.group)+"="+b.Hash[:19])
		}
		sort.Strings(names)
		d.log.Info("rules bundles loaded", "bundles", names)
	}
	return changed
}

// compose lays the school's overrides and then its generated files over
// the group's folder, and returns prev when the hash is unchanged. A layer
// whose composition does not validate (a generated file that clashes, an
// override that names a rule the pack defines too) is left out and
// logged: the school then gets the layers below it. buildMu is held.
func (d *Distributor) compose(k key, prev *vigilv1.RulesBundle) *vigilv1.RulesBundle {
	var extra map[string][]byte
	if d.extra != nil {
		extra = d.extra(k.school, k.group)
	}
	// The usual case, nothing changed: the layers merged give the bundle
	// already composed (and validated), so it is not validated again (a
	// refresh of 50 schools is then hashing, not parsing).
	if prev != nil && rules.HashFiles(layered(d.base[k.group], d.overlay[k.school], extra)) == prev.Hash {
		return prev
	}
	files := d.base[k.group]
	layer := func(what string, add map[string][]byte) {
		if len(add) == 0 {
			return
		}
		merged := layered(files, add)
		if _, errs := rules.LoadFiles(merged, anyKind{}); errs != nil {
			d.log.Error(what+" do not validate over the group's rules; leaving them out of the bundle", "school", k.school, "group", k.group, "errors", errs.Error())
			return
		}
		files = merged
	}
	layer("the school's rules overrides", d.overlay[k.school])
	layer("generated rules files", extra)
	hash := rules.HashFiles(files)
	if prev != nil && prev.Hash == hash {
		return prev
	}
	return &vigilv1.RulesBundle{Version: d.clock().UTC().Format(time.RFC3339), Hash: hash, Files: files}
}

// layered is the files of every layer, each replacing the ones before by
// path, as a bundle is composed.
func layered(layers ...map[string][]byte) map[string][]byte {
	n := 0
	for _, l := range layers {
		n += len(l)
	}
	out := make(map[string][]byte, n)
	for _, l := range layers {
		for p, b := range l {
			out[p] = b
		}
	}
	return out
}

// recordHistory appends a change for every group whose bundle differs from
// the last one recorded. A failure is logged and tried again at the next
// rebuild: distributing rules must not wait on the history. buildMu is held.
func (d *Distributor) recordHistory(bundles map[key]*vigilv1.RulesBundle) {
	if d.history == nil {
		return
	}
	if d.recorded == nil {
		last, err := d.history.LastRulesChanges()
		if err != nil {
			d.log.Error("read the rules history; the change is recorded at the next rebuild", "err", err)
			return
		}
		d.recorded = last
	}
	keys := make([]key, 0, len(bundles))
	for k := range bundles {
		keys = append(keys, k)
	}
	sort.Slice(keys, func(i, j int) bool {
		return keys[i].school < keys[j].school || keys[i].school == keys[j].school && keys[i].group < keys[j].group
	})
	for _, k := range keys {
		b, name := bundles[k], store.RulesBundleKey(k.school, k.group)
		prev, had := d.recorded[name]
		if had && prev.Hash == b.Hash {
			continue
		}
		c := store.RulesChange{At: d.clock().UTC(), Group: k.group, Hash: b.Hash, Files: map[string]string{}}
		if k.school != store.DefaultSchool {
			c.School = k.school
		}
		for p, data := range b.Files {
			sum := sha256.Sum256(data)
			c.Files[p] = hex.EncodeToString(sum[:])
		}
		if had {
			c.PrevHash = prev.Hash
			for p, h := range c.Files {
				switch old, ok := prev.Files[p]; {
				case !ok:
					c.Added = append(c.Added, p)
				case old != h:
					c.Changed = append(c.Changed, p)
				}
			}
			for p := range prev.Files {
				if _, ok := c.Files[p]; !ok {
					c.Removed = append(c.Removed, p)
				}
			}
		} else {
			for p := range c.Files {
				c.Added = append(c.Added, p)
			}
		}
		sort.Strings(c.Added)
		sort.Strings(c.Removed)
		sort.Strings(c.Changed)
		if err := d.history.RecordRulesChange(c); err != nil {
			d.log.Error("record rules change; tried again at the next rebuild", "school", k.school, "group", k.group, "err", err)
			continue
		}
		d.recorded[name] = c
	}
}

// Bundle returns school's bundle for group, or for the default group. A
// school without bundles yet (added since the last rebuild) has them
// composed now, never lent another school's: a school's generated files
// hold its own terms.
func (d *Distributor) Bundle(school, group string) *vigilv1.RulesBundle {
	school = store.SchoolOf(school)
	d.mu.RLock()
	b := d.lookup(school, group)
	d.mu.RUnlock()
	if b != nil || !store.ValidSchoolID(school) {
		return b
	}
	d.buildMu.Lock()
	defer d.buildMu.Unlock()
	d.mu.RLock()
	b = d.lookup(school, group)
	d.mu.RUnlock()
	if b != nil {
		return b
	}
	if _, ok := d.base[group]; !ok {
		group = DefaultGroup
	}
	if _, ok := d.base[group]; !ok {
		return nil
	}
	d.mu.Lock()
	added := make(map[key]*vigilv1.RulesBundle, len(d.bundles)+len(d.base))
	for k, v := range d.bundles {
		added[k] = v
	}
	for g := range d.base {
		added[key{school, g}] = d.compose(key{school, g}, nil)
	}
	d.bundles = added
	d.mu.Unlock()
	d.recordHistory(added)
	return added[key{school, group}]
}

// Each calls fn with every bundle composed (every listed school's every
// group), in no order; the bus mirrors them to front-ends with it.
func (d *Distributor) Each(fn func(school, group string, b *vigilv1.RulesBundle)) {
	d.mu.RLock()
	all := make(map[key]*vigilv1.RulesBundle, len(d.bundles))
	for k, b := range d.bundles {
		all[k] = b
	}
	d.mu.RUnlock()
	for k, b := range all {
		fn(k.school, k.group, b)
	}
}

// lookup: mu is held.
func (d *Distributor) lookup(school, group string) *vigilv1.RulesBundle {
	if b, ok := d.bundles[key{school, group}]; ok {
		return b
	}
	return d.bundles[key{school, DefaultGroup}]
}

// Watch reloads on changes under the rules folder or the school rules
// folder and then calls changed.
func (d *Distributor) Watch(ctx context.Context, changed func()) error {
	reload := func() {
		if err := d.Reload(); err != nil {
			d.log.Error("reload rules", "err", err)
			return
		}
		changed()
	}
	if d.schoolDir == "" {
		return rules.Watch(ctx, d.dir, 300*time.Millisecond, reload)
	}
	errc := make(chan error, 2)
	go func() { errc <- rules.Watch(ctx, d.schoolDir, 300*time.Millisecond, reload) }()
	go func() { errc <- rules.Watch(ctx, d.dir, 300*time.Millisecond, reload) }()
	err := <-errc
	if err != nil {
		return err
	}
	return <-errc
}

func (d *Distributor) clock() time.Time {
	if d.now != nil {
		return d.now()
	}
	return time.Now()
}

// SchoolOverrides reads school's override files under schoolDir (the
// DATA/school-rules folder) by relative, slash-separated path; none if it
// has no folder. A school's export carries them.
func SchoolOverrides(schoolDir, school string) (map[string][]byte, error) {
	if !store.ValidSchoolID(school) {
		return nil, fmt.Errorf("rules overrides: bad school id %q", school)
	}
	root := filepath.Join(schoolDir, school)
	out := map[string][]byte{}
	err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
		if err != nil {
			if p == root && os.IsNotExist(err) {
				return filepath.SkipDir
			}
			return err
		}
		if !e.Type().IsRegular() {
			return nil
		}
		rel, err := filepath.Rel(root, p)
		if err != nil {
			return err
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		out[filepath.ToSlash(rel)] = b
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("read the rules overrides of %s: %w", school, err)
	}
	return out, nil
}

// RemoveSchoolOverrides deletes school's override folder (a school that
// leaves the trust) and says how many files it held; the watcher then
// rebuilds without it.
func RemoveSchoolOverrides(schoolDir, school string) (int, error) {
	files, err := SchoolOverrides(schoolDir, school)
	if err != nil {
		return 0, err
	}
	if err := os.RemoveAll(filepath.Join(schoolDir, school)); err != nil {
		return 0, fmt.Errorf("remove the rules overrides of %s: %w", school, err)
	}
	return len(files), nil
}

// SetSchoolOverrides replaces school's override folder with files (by
// relative, slash-separated path; none: the folder is removed), once they
// validate on their own and laid over every group's pack, as a bundle
// would be composed: a set that does not is refused whole (the errors
// name file, line and column) and the folder is left as it was. The new
// folder is written beside the old and swapped in by rename, so a crash
// leaves one or the other; the bundles are rebuilt before it returns.
func (d *Distributor) SetSchoolOverrides(school string, files map[string][]byte) error {
	if d.schoolDir == "" {
		return fmt.Errorf("rules overrides: this collector keeps no school overrides")
	}
	if !store.ValidSchoolID(school) || school == store.DefaultSchool {
		return fmt.Errorf("rules overrides: %q: the default school's rules are the trust's pack (DATA/rules)", school)
	}
	if len(files) > 0 {
		if _, errs := rules.LoadFiles(files, anyKind{}); errs != nil {
			return fmt.Errorf("rules overrides of %s do not validate: %w", school, errs)
		}
		d.buildMu.Lock()
		var bad []string
		for g, base := range d.base {
			if _, errs := rules.LoadFiles(layered(base, files), anyKind{}); errs != nil {
				bad = append(bad, fmt.Sprintf("over group %s: %s", g, errs.Error()))
			}
		}
		d.buildMu.Unlock()
		if len(bad) > 0 {
			sort.Strings(bad)
			return fmt.Errorf("rules overrides of %s do not validate %s", school, strings.Join(bad, "; "))
		}
	}
	final := filepath.Join(d.schoolDir, school)
	tmp, err := os.MkdirTemp(d.schoolDir, "."+school+".new-")
	if err != nil {
		return fmt.Errorf("rules overrides of %s: %w", school, err)
	}
	defer os.RemoveAll(tmp)
	for p, b := range files {
		full := filepath.Join(tmp, filepath.FromSlash(p))
		if err := os.MkdirAll(filepath.Dir(full), 0o700); err != nil {
			return fmt.Errorf("rules overrides of %s: %w", school, err)
		}
		if err := fsutil.WriteFileAtomic(full, b, 0o600); err != nil {
			return fmt.Errorf("rules overrides of %s: write %s: %w", school, p, err)
		}
	}
	old := filepath.Join(d.schoolDir, "."+school+".old")
	os.RemoveAll(old)
	if err := os.Rename(final, old); err != nil && !os.IsNotExist(err) {
		return fmt.Errorf("rules overrides of %s: %w", school, err)
	}
	if len(files) > 0 {
		if err := os.Rename(tmp, final); err != nil {
			os.Rename(old, final) // put the previous set back
			return fmt.Errorf("rules overrides of %s: %w", school, err)
		}
	}
	os.RemoveAll(old)
	return d.Reload()
}
