// Package rulesdist serves rules bundles to agents by device group. The
// collector's rules live in DATA/rules/<group>/; the "default" group's
// bundle goes to every group without a folder of its own. Edits are picked
// up by a watcher and pushed to connected agents.
package rulesdist

import (
	"context"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
	_ "github.com/vigil-safeguarding/vigil/rules/match" // keyword libraries travel in bundles
)

// DefaultGroup names the bundle for groups without their own folder.
const DefaultGroup = "default"

// Distributor holds the current bundle of every group.
type Distributor struct {
	dir string
	log *slog.Logger

	mu      sync.RWMutex
	bundles map[string]*vigilv1.RulesBundle
}

// anyKind accepts every check kind: agents validate kinds and parameters
// against their own registry, and a newer agent may know kinds this
// collector does not.
type anyKind struct{}

func (anyKind) Known(string) bool                       { return true }
func (anyKind) ValidateParams(string, *yaml.Node) error { return nil }

// New loads the bundles under dir, seeding dir/default with the embedded
// default pack on first start.
func New(dir string, log *slog.Logger) (*Distributor, error) {
	d := &Distributor{dir: dir, log: log, bundles: map[string]*vigilv1.RulesBundle{}}
	if _, err := os.Stat(dir); os.IsNotExist(err) {
		if err := seed(filepath.Join(dir, DefaultGroup)); err != nil {
			return nil, fmt.Errorf("seed default rules in %s: %w", dir, err)
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

// Reload re-reads every group folder. A group whose files do not validate
// keeps its previous bundle; the errors are logged with file:line:col.
func (d *Distributor) Reload() error {
	entries, err := os.ReadDir(d.dir)
	if err != nil {
		return fmt.Errorf("read rules dir %s: %w", d.dir, err)
	}
	next := map[string]*vigilv1.RulesBundle{}
	d.mu.RLock()
	for g, b := range d.bundles {
		next[g] = b
	}
	d.mu.RUnlock()
	seen := map[string]bool{}
	for _, e := range entries {
		if !e.IsDir() {
			continue
		}
		g := e.Name()
		seen[g] = true
		set, errs := rules.LoadDir(filepath.Join(d.dir, g), anyKind{})
		if len(errs) > 0 {
			d.log.Error("rules for group do not validate; keeping the previous bundle", "group", g, "errors", errs.Error())
			continue
		}
		next[g] = &vigilv1.RulesBundle{Version: time.Now().UTC().Format(time.RFC3339), Hash: set.Hash, Files: set.Files}
		if old := d.bundles[g]; old != nil && old.Hash == set.Hash {
			next[g] = old
		}
	}
	for g := range next {
		if !seen[g] {
			delete(next, g)
		}
	}
	d.mu.Lock()
	d.bundles = next
	d.mu.Unlock()
	groups := make([]string, 0, len(next))
	for g, b := range next {
		groups = append(groups, g+"="+b.Hash[:19])
	}
	sort.Strings(groups)
	d.log.Info("rules bundles loaded", "groups", groups)
	return nil
}

// Bundle returns the bundle for group, or the default group's.
func (d *Distributor) Bundle(group string) *vigilv1.RulesBundle {
	d.mu.RLock()
	defer d.mu.RUnlock()
	if b, ok := d.bundles[group]; ok {
		return b
	}
	return d.bundles[DefaultGroup]
}

// Watch reloads on changes under dir and then calls changed.
func (d *Distributor) Watch(ctx context.Context, changed func()) error {
	return rules.Watch(ctx, d.dir, 300*time.Millisecond, func() {
		if err := d.Reload(); err != nil {
			d.log.Error("reload rules", "err", err)
			return
		}
		changed()
	})
}
