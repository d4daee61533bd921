package rules

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/fsnotify/fsnotify"
)

// DefaultDebounce is the quiet period Watch uses when given debounce <= 0.
const DefaultDebounce = 300 * time.Millisecond

// pollInterval is how often Watch checks, while the directory is missing,
// whether it has been re-created.
const pollInterval = time.Second

// watchingPoll is how often Watch checks that the watched directory is still
// the same one. Removal and rename of the directory itself arrive as events;
// this only catches what inotify cannot see (a parent renamed), and a
// 1-second stat woke an idle agent for nothing.
const watchingPoll = 10 * time.Second

// Watch watches dir recursively (adding watches for new subdirectories,
// skipping those whose name starts with ".") and calls onChange once per
// burst of file-system events, after debounce of quiet. During continuous
// activity onChange is still called at least every 5*debounce. onChange is
// called from Watch's goroutine, never concurrently with itself.
//
// If dir disappears (including being replaced, as editors that save by
// rename may do) Watch polls every second for it to come back, re-creates
// its watches and calls onChange once more. Watch also waits for dir if it
// does not exist yet.
//
// Watch returns nil when ctx ends. It returns an error only if the
// file-system watcher cannot be created or a directory cannot be watched
// (for example when the inotify watch limit is reached); the caller should
// then fall back to periodic reloading.
func Watch(ctx context.Context, dir string, debounce time.Duration, onChange func()) error {
	if debounce <= 0 {
		debounce = DefaultDebounce
	}
	root := filepath.Clean(dir)
	owed := false // a change happened while we were not watching
	for {
		for !isDir(root) {
			owed = true
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(pollInterval):
			}
		}
		err := watchOnce(ctx, root, debounce, onChange, owed)
		if err != nil || ctx.Err() != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
		owed = true // the directory went away; report its return
	}
}

func isDir(p string) bool {
	fi, err := os.Stat(p)
	return err == nil && fi.IsDir()
}

// watchOnce watches root until ctx ends (returns nil) or root disappears or
// is replaced (returns nil after flushing any pending change).
func watchOnce(ctx context.Context, root string, debounce time.Duration, onChange func(), owed bool) error {
	w, err := fsnotify.NewWatcher()
	if err != nil {
		return fmt.Errorf("rules: watch %s: %w", root, err)
	}
	defer w.Close()

	rootInfo, err := os.Stat(root)
	if err != nil || !rootInfo.IsDir() {
		return nil // gone again; the caller polls
	}
	if err := addTree(w, root); err != nil {
		if !isDir(root) {
			return nil
		}
		return err
	}

	maxWait := 5 * debounce
	timer := time.NewTimer(time.Hour)
	timer.Stop()
	defer timer.Stop()
	pending := false
	var burstStart time.Time
	mark := func() {
		now := time.Now()
		if !pending {
			pending, burstStart = true, now
		}
		wait := debounce
		if rest := burstStart.Add(maxWait).Sub(now); rest < wait {
			wait = max(rest, 0)
		}
		timer.Reset(wait)
	}
	fire := func() {
		if pending {
			pending = false
			timer.Stop()
			onChange()
		}
	}
	if owed {
		mark()
	}
	poll := time.NewTicker(watchingPoll)
	defer poll.Stop()

	for {
		select {
		case <-ctx.Done():
			return nil
		case ev, ok := <-w.Events:
			if !ok {
				return errors.New("rules: watcher closed unexpectedly")
			}
			if filepath.Clean(ev.Name) == root && ev.Has(fsnotify.Remove|fsnotify.Rename) {
				fire()
				return nil
			}
			if ev.Has(fsnotify.Create) && !strings.HasPrefix(filepath.Base(ev.Name), ".") {
				if fi, err := os.Lstat(ev.Name); err == nil && fi.IsDir() {
					if err := addTree(w, ev.Name); err != nil {
						return err
					}
				}
			}
			mark()
		case _, ok := <-w.Errors:
			if !ok {
				return errors.New("rules: watcher closed unexpectedly")
			}
			mark() // e.g. an event queue overflow: assume something changed
		case <-timer.C:
			fire()
		case <-poll.C:
			fi, err := os.Stat(root)
			if err != nil || !os.SameFile(fi, rootInfo) {
				fire()
				return nil
			}
		}
	}
}

// addTree adds watches for dir and its subdirectories, skipping dot
// directories. Directories that vanish meanwhile are ignored.
func addTree(w *fsnotify.Watcher, dir string) error {
	return filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return nil
			}
			if p == dir {
				return fmt.Errorf("rules: watch %s: %w", p, err)
			}
			return nil // unreadable subdirectory: LoadDir reports it
		}
		if !d.IsDir() {
			return nil
		}
		if p != dir && strings.HasPrefix(d.Name(), ".") {
			return fs.SkipDir
		}
		if err := w.Add(p); err != nil {
			if errors.Is(err, fs.ErrNotExist) {
				return fs.SkipDir
			}
			return fmt.Errorf("rules: watch %s: %w", p, err)
		}
		return nil
	})
}
