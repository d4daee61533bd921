package engine

import (
	"log/slog"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/checks"
)

// TestDamagedPostureStateNeverCrashes: whatever posture.json holds, the
// engine starts, records posture again and saves a good file; the damaged
// one is kept aside. Before, a file holding "null" decoded to a nil map and
// the first status change panicked the agent, at every start.
func TestDamagedPostureStateNeverCrashes(t *testing.T) {
	cases := map[string]string{
		"null":          "null",
		"truncated":     `{"r\u0000a":"pa`,
		"garbage":       "\x00\xff\x13garbage",
		"wrong type":    `{"r\u0000a":1}`,
		"array":         `["pass"]`,
		"unknown value": `{"r\u0000a":"maybe"}`,
		"empty":         "",
	}
	for name, content := range cases {
		t.Run(name, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "posture.json")
			if err := os.WriteFile(path, []byte(content), 0o600); err != nil {
				t.Fatal(err)
			}
			m := newMemory(path, time.Hour, slog.New(slog.DiscardHandler))
			keep, changed := m.filter("r", []checks.Observation{{Key: "a", Status: "fail"}}, time.Now())
			if len(keep) != 1 {
				t.Fatalf("status not reported after damaged state: %v", keep)
			}
			if err := m.commit(changed); err != nil {
				t.Fatal(err)
			}
			if moved, _ := filepath.Glob(path + ".damaged-*"); len(moved) != 1 {
				t.Errorf("damaged file not kept aside: %v", moved)
			}
			m2 := newMemory(path, time.Hour, slog.New(slog.DiscardHandler))
			if keep, _ := m2.filter("r", []checks.Observation{{Key: "a", Status: "fail"}}, time.Now()); len(keep) != 0 {
				t.Errorf("saved state not used after restart")
			}
		})
	}
}
