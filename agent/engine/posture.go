package engine

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"os"
	"sync"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/internal/fsutil"
)

// memory decides which observations become findings in run mode: posture
// observations only when their status for (rule, key) changes, events only
// once per (rule, key) within the dedupe window. Posture state is kept on
// disk so a restart does not re-announce every pass.
type memory struct {
	path   string
	window time.Duration

	mu      sync.Mutex
	posture map[string]string    // rule \x00 key -> "pass"/"fail"
	events  map[string]time.Time // rule \x00 key -> last recorded
}

const maxEventKeys = 10000

func newMemory(path string, window time.Duration, log *slog.Logger) *memory {
	m := &memory{path: path, window: window, posture: map[string]string{}, events: map[string]time.Time{}}
	if path == "" {
		return m
	}
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return m
	}
	if err == nil {
		var p map[string]string
		if err = json.Unmarshal(b, &p); err == nil && p == nil {
			// "null": a nil map would panic at the first commit.
			err = errors.New("holds no posture map")
		}
		if err == nil {
			for _, v := range p {
				if v != "pass" && v != "fail" {
					err = fmt.Errorf("unknown status %q", v)
					break
				}
			}
		}
		if err == nil {
			maps.Copy(m.posture, p)
			return m
		}
	}
	// Damaged or unreadable: the cost of starting empty is one repeat of
	// each posture status, never a crash. Keep the file for support.
	q := fmt.Sprintf("%s.damaged-%s", path, time.Now().UTC().Format("20060102T150405Z"))
	if rerr := os.Rename(path, q); rerr != nil {
		q = ""
	}
	log.Error("posture state unreadable; starting empty (posture statuses will be reported again)", "path", path, "err", err, "moved_to", q)
	return m
}

// filter returns the observations to record and whether posture changed
// (so the caller persists it after the spool append succeeded).
func (m *memory) filter(ruleID string, obs []checks.Observation, now time.Time) (keep []checks.Observation, changed map[string]string) {
	m.mu.Lock()
	defer m.mu.Unlock()
	for _, o := range obs {
		k := ruleID + "\x00" + o.Key
		switch {
		case o.Status == "pass" || o.Status == "fail":
			if m.posture[k] == o.Status {
				continue
			}
			if changed == nil {
				changed = map[string]string{}
			}
			changed[k] = o.Status
		case o.Key != "":
			if last, ok := m.events[k]; ok && now.Sub(last) < m.window {
				continue
			}
			if len(m.events) >= maxEventKeys {
				m.pruneEvents(now)
			}
			m.events[k] = now
		}
		keep = append(keep, o)
	}
	return keep, changed
}

func (m *memory) pruneEvents(now time.Time) {
	for k, t := range m.events {
		if now.Sub(t) >= m.window {
			delete(m.events, k)
		}
	}
	// Still full of recent keys: forget half rather than grow without bound.
	for k := range m.events {
		if len(m.events) < maxEventKeys/2 {
			break
		}
		delete(m.events, k)
	}
}

// commit records posture changes once their findings are in the spool.
func (m *memory) commit(changed map[string]string) error {
	if len(changed) == 0 {
		return nil
	}
	m.mu.Lock()
	for k, v := range changed {
		m.posture[k] = v
	}
	b, _ := json.Marshal(m.posture)
	m.mu.Unlock()
	if m.path == "" {
		return nil
	}
	if err := fsutil.WriteFileAtomic(m.path, b, 0o600); err != nil {
		return fmt.Errorf("save posture state: %w", err)
	}
	return nil
}
