package e2e

import (
	"os"
	"path/filepath"
	"sort"
	"testing"
	"time"
)

// Issue 8 item 4 end to end: one byte flipped in a table of the stopped
// collector's store. The real collector still starts (before: silent loss,
// or Badger refusing to start), says what is damaged in /healthz and as a
// store-damaged finding, keeps the intact findings, and goes on accepting
// new ones from the real agent.
func TestCollectorCorruptTableReported(t *testing.T) {
	c := &collector{t: t, data: filepath.Join(t.TempDir(), "collector"), grpc: freePort(t), web: freePort(t)}
	startCollector(c)
	a := enrollAgent(t, c, "pupils")
	a.start()
	first, err := a.trigger(300, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "300 findings stored", func() bool { return len(triggered(c.findings(a.id), first.Nonce)) == 300 })
	if err := c.p.stop(); err != nil {
		t.Fatal(err)
	}
	tables, _ := filepath.Glob(filepath.Join(c.data, "badger", "*.sst"))
	if len(tables) == 0 {
		t.Fatal("no tables after a clean stop")
	}
	sort.Strings(tables)
	victim := tables[len(tables)-1]
	b, err := os.ReadFile(victim)
	if err != nil {
		t.Fatal(err)
	}
	b[len(b)/3] ^= 0x5a // a data block, not the index at the end
	if err := os.WriteFile(victim, b, 0o600); err != nil {
		t.Fatal(err)
	}

	startCollector(c)
	var h healthz
	waitFor(t, 30*time.Second, "/healthz reports the damaged table", func() bool {
		var code int
		code, h = getHealth(t, c)
		return code == 200 && h.Status == "degraded" && len(h.Store.Damaged) == 1 && h.Store.Damaged[0].File == filepath.Base(victim)
	})
	if _, err := os.Stat(h.Store.Damaged[0].Quarantined); err != nil {
		t.Fatalf("quarantine copy: %v", err)
	}
	waitFor(t, 30*time.Second, "store-damaged finding", func() bool {
		for _, f := range c.findings("") {
			if f.RuleID == "store-damaged" && f.Severity == "high" {
				return true
			}
		}
		return false
	})
	kept := len(triggered(c.findings(a.id), first.Nonce))
	if kept < 250 {
		t.Fatalf("only %d of 300 findings kept after one flipped byte", kept)
	}
	// Monitoring goes on.
	second, err := a.trigger(20, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "new findings stored", func() bool { return len(triggered(c.findings(a.id), second.Nonce)) == 20 })
	t.Logf("%d of 300 findings kept; damaged %s", kept, h.Store.Damaged[0].File)
}
