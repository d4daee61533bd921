package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/internal/testutil"
)

// startCollector starts c with extra flags, waiting generously: the first
// start creates the console admin (bcrypt under the race detector), and a
// start after damage verifies every table first.
func startCollector(c *collector, extra ...string) {
	c.t.Helper()
	args := append([]string{"serve", "--data", c.data, "--grpc-listen", c.grpc, "--http-listen", c.web, "--heartbeat", "2s"}, extra...)
	c.p = start(c.t, "vigil-collector", args...)
	waitFor(c.t, 90*time.Second, "collector admin socket", func() bool {
		_, _, code := run(c.t, "vigil-collector", "devices", "list", "--data", c.data, "--json")
		return code == 0
	})
}

type healthz struct {
	Status string `json:"status"`
	Store  struct {
		DiskFull      bool   `json:"disk_full"`
		WritesRefused bool   `json:"writes_refused"`
		Reason        string `json:"reason"`
		Damaged       []struct {
			File        string `json:"file"`
			Quarantined string `json:"quarantined"`
		} `json:"damaged"`
	} `json:"store"`
}

func getHealth(t *testing.T, c *collector) (int, healthz) {
	var h healthz
	resp, err := c.https().Get(c.url("/healthz"))
	if err != nil {
		return 0, h
	}
	defer resp.Body.Close()
	json.NewDecoder(resp.Body).Decode(&h)
	return resp.StatusCode, h
}

// Issue 8 item 3 end to end: the collector's data dir is on a small ext4
// filesystem that another file fills to the last byte while a real agent
// sends findings. The collector does not crash (old code: SIGBUS, crash
// loop); it answers RESOURCE_EXHAUSTED so the agent keeps its spool, says
// so in /healthz and its log, serves reads (findings list), refuses console
// writes with 503; when the file is removed it resumes without a restart
// and every finding arrives.
func TestCollectorDiskFullAndBack(t *testing.T) {
	mnt := testutil.LoopExt4(t, 384<<20)
	c := &collector{t: t, data: filepath.Join(mnt, "collector"), grpc: freePort(t), web: freePort(t)}
	startCollector(c, "--disk-reserve-mb", "16")
	a := enrollAgent(t, c, "pupils")
	a.start()
	first, err := a.trigger(100, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "first findings stored", func() bool { return len(triggered(c.findings(a.id), first.Nonce)) == 100 })

	fill := filepath.Join(mnt, "fill")
	testutil.FillToLastByte(t, fill)
	waitFor(t, 60*time.Second, "/healthz says the disk is full", func() bool {
		code, h := getHealth(t, c)
		if code == 503 && h.Status == "disk_full" && !h.Store.WritesRefused {
			testutil.FillToLastByte(t, fill) // take what Badger freed since, too
		}
		return code == 503 && h.Status == "disk_full" && h.Store.WritesRefused && h.Store.Reason != ""
	})
	second, err := a.trigger(200, "")
	if err != nil {
		t.Fatal(err)
	}
	// The agent keeps them: spooled, not acknowledged, told to retry.
	waitFor(t, 60*time.Second, "agent told to retry", func() bool {
		st := a.status()
		return st.Spool.Count >= 200 && strings.Contains(strings.ToLower(st.Uplink.LastError), "disk")
	})
	// Reads are served while full.
	if got := triggered(c.findings(a.id), first.Nonce); len(got) != 100 {
		t.Fatalf("read %d of 100 stored findings while the disk is full", len(got))
	}
	// Console writes (signing in creates a session) are refused with 503.
	pw, err := os.ReadFile(filepath.Join(c.data, "initial-admin-password"))
	if err != nil {
		t.Fatal(err)
	}
	body, _ := json.Marshal(map[string]string{"username": "admin", "password": strings.TrimSpace(string(pw))})
	resp, err := c.https().Post(c.url("/api/v1/session"), "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	var msg map[string]any
	json.NewDecoder(resp.Body).Decode(&msg)
	resp.Body.Close()
	if resp.StatusCode != 503 || !strings.Contains(strings.ToLower(msg["error"].(string)), "disk is full") {
		t.Fatalf("console sign-in while full: %d %v", resp.StatusCode, msg)
	}
	select {
	case <-c.p.done:
		t.Fatalf("collector exited while the disk was full:\n%s", tail(c.p.log.String(), 40))
	default:
	}

	if err := os.Remove(fill); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "/healthz ok again", func() bool { code, h := getHealth(t, c); return code == 200 && h.Status == "ok" })
	waitFor(t, 90*time.Second, "spooled findings delivered", func() bool {
		return len(triggered(c.findings(a.id), second.Nonce)) == 200
	})
	select {
	case <-c.p.done:
		t.Fatal("collector restarted")
	default:
	}
	log := c.p.log.String()
	if n := strings.Count(log, "disk full, refusing findings"); n != 1 {
		t.Fatalf("disk full logged %d times, want once:\n%s", n, tail(log, 40))
	}
	if !strings.Contains(log, "disk space is back") {
		t.Fatalf("resume not logged:\n%s", tail(log, 40))
	}
	if err := c.p.stop(); err != nil {
		t.Fatalf("collector stop: %v\n%s", err, tail(log, 40))
	}
}
