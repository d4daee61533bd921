package e2e

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/internal/testutil"
)

type spoolStatus struct {
	Spool struct {
		Count         int
		DroppedTotal  uint64
		WriteFailures uint64
		LastError     string
	} `json:"spool"`
}

func (a *agent) spoolStatus() spoolStatus {
	a.t.Helper()
	out := mustRun(a.t, "vigil-agent", "status", "--state", a.state)
	if i := strings.Index(out, "{"); i >= 0 {
		out = out[i:]
	}
	var s spoolStatus
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		a.t.Fatalf("status %q: %v", out, err)
	}
	return s
}

// TestAgentDiskFull: the agent's state dir on a tmpfs filled to the last
// byte. Findings emitted meanwhile cannot be spooled; the agent keeps
// running, counts every one of them in dropped_total and as write failures
// (status and heartbeat) and says why; when space returns it spools again
// by itself and a finding reports the loss with counts and time window.
// Everything acknowledged before is still at the collector. Before the fix
// the lost findings were counted nowhere.
func TestAgentDiskFull(t *testing.T) {
	c := newCollector(t)
	mnt := testutil.Tmpfs(t, "8m")
	a := &agent{t: t, state: filepath.Join(mnt, "agent")}
	out := mustRun(t, "vigil-agent", "enroll", "--collector", c.grpc, "--token", c.token("pupils"), "--state", a.state)
	a.id = strings.Fields(out)[2]
	rulesDir := filepath.Join(t.TempDir(), "rules")
	os.MkdirAll(rulesDir, 0o700)
	if err := os.WriteFile(filepath.Join(rulesDir, "selftest.yaml"), []byte(strings.ReplaceAll(selftestRule("selftest", "info"), "\t", "  ")), 0o600); err != nil {
		t.Fatal(err)
	}
	a.start("--rules", rulesDir)

	before, err := a.trigger(20, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "first findings acked", func() bool {
		return countSeqs(c.findings(a.id), before.FirstSeq, before.LastSeq) == 20
	})

	testutil.FillToLastByte(t, filepath.Join(mnt, "filler"))
	var lostByTrigger, failed int
	var stored []triggerResult
	for i := 0; i < 20 && failed < 5; i++ {
		r, err := a.trigger(500, "")
		if err != nil {
			failed++
			lostByTrigger += 500
			continue
		}
		stored = append(stored, r)
	}
	if failed == 0 {
		t.Fatal("no trigger-test failed on a full disk: the test does not exercise a write failure")
	}
	st := a.spoolStatus()
	t.Logf("disk full: %d triggers of 500 failed; status %+v", failed, st.Spool)
	if st.Spool.WriteFailures < uint64(lostByTrigger) || st.Spool.DroppedTotal < st.Spool.WriteFailures {
		t.Fatalf("lost %d findings in failed triggers; spool counts %+v", lostByTrigger, st.Spool)
	}
	if !strings.Contains(st.Spool.LastError, "no space left") {
		t.Errorf("last_error %q does not say why", st.Spool.LastError)
	}
	select {
	case <-a.p.done:
		t.Fatalf("agent exited on a full disk: %v", a.p.err)
	default:
	}

	if err := os.Remove(filepath.Join(mnt, "filler")); err != nil {
		t.Fatal(err)
	}
	var reported float64
	var report finding
	waitFor(t, 60*time.Second, "write-failure report at the collector", func() bool {
		reported = 0
		for _, f := range c.findings(a.id) {
			if f.RuleID == "agent-spool-write-failed" {
				reported += f.Details["lost"].(float64)
				report = f
			}
		}
		return reported > 0
	})
	final := a.spoolStatus()
	if uint64(reported) != final.Spool.WriteFailures || final.Spool.LastError != "" {
		t.Errorf("reports name %v lost, spool counted %+v", reported, final.Spool)
	}
	if report.Severity != "high" || report.Details["first_failure"] == nil || report.Details["last_failure"] == nil ||
		!strings.Contains(report.Details["error"].(string), "no space") {
		t.Errorf("report %+v", report)
	}
	t.Logf("report: %s", report.Message)

	after, err := a.trigger(10, "")
	if err != nil {
		t.Fatalf("trigger after space returned: %v", err)
	}
	stored = append(stored, before, after)
	waitFor(t, 60*time.Second, "findings after space returned", func() bool {
		got := c.findings(a.id)
		for _, r := range stored {
			if countSeqs(got, r.FirstSeq, r.LastSeq) != int(r.LastSeq-r.FirstSeq+1) {
				return false
			}
		}
		return true
	})
}

func countSeqs(fs []finding, first, last uint64) int {
	n := 0
	for _, f := range fs {
		if f.Seq >= first && f.Seq <= last {
			n++
		}
	}
	return n
}

// TestAgentSpoolDamaged: the spool of a stopped agent holding unsent
// findings is damaged (its current meta page). The agent starts anyway,
// keeps monitoring, moves the file aside, sends the findings it could
// salvage and a finding reporting the damage, and new findings flow. Before
// the fix bbolt silently fell back to the older meta page (one-byte flips
// elsewhere made it panic at every start).
func TestAgentSpoolDamaged(t *testing.T) {
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	rulesDir := filepath.Join(t.TempDir(), "rules")
	os.MkdirAll(rulesDir, 0o700)
	if err := os.WriteFile(filepath.Join(rulesDir, "selftest.yaml"), []byte(strings.ReplaceAll(selftestRule("selftest", "info"), "\t", "  ")), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := c.p.stop(); err != nil {
		t.Fatal(err)
	}
	a.start("--rules", rulesDir)
	var spooled []triggerResult
	for range 5 {
		r, err := a.trigger(10, "")
		if err != nil {
			t.Fatal(err)
		}
		spooled = append(spooled, r)
	}
	if err := a.p.stop(); err != nil {
		t.Fatal(err)
	}

	// Flip a byte of the first meta page's checksum: bbolt alone would
	// silently use the other meta page, which may be the older one.
	path := filepath.Join(a.state, "spool.db")
	f, err := os.OpenFile(path, os.O_RDWR, 0)
	if err != nil {
		t.Fatal(err)
	}
	b := make([]byte, 1)
	f.ReadAt(b, 16+56)
	b[0] ^= 0xff
	f.WriteAt(b, 16+56)
	f.Close()

	c.start()
	a.start("--rules", rulesDir)
	var report finding
	waitFor(t, 60*time.Second, "spool damage report at the collector", func() bool {
		for _, f := range c.findings(a.id) {
			if f.RuleID == "agent-spool-damaged" {
				report = f
				return true
			}
		}
		return false
	})
	t.Logf("report: %s", report.Message)
	if report.Severity != "high" || report.Details["quarantined_file"] == nil {
		t.Errorf("report %+v", report)
	}
	// The other meta page's tree may be one transaction old; the records
	// of the newest one are still in their pages and authenticate, so
	// every spooled finding is salvaged and reaches the collector.
	waitFor(t, 60*time.Second, "every spooled finding at the collector", func() bool {
		got := c.findings(a.id)
		for _, r := range spooled {
			if countSeqs(got, r.FirstSeq, r.LastSeq) != int(r.LastSeq-r.FirstSeq+1) {
				return false
			}
		}
		return true
	})
	if _, err := os.Stat(report.Details["quarantined_file"].(string)); err != nil {
		t.Errorf("damaged spool not kept for support: %v", err)
	}
	if st := a.spoolStatus(); !strings.Contains(st.Spool.LastError, "damaged") {
		t.Errorf("last_error %q does not report the damage", st.Spool.LastError)
	}
	after, err := a.trigger(3, "")
	if err != nil {
		t.Fatalf("trigger after recovery: %v", err)
	}
	if after.FirstSeq <= spooled[len(spooled)-1].LastSeq {
		t.Errorf("new seq %d reuses the damaged spool's range (last %d)", after.FirstSeq, spooled[len(spooled)-1].LastSeq)
	}
	waitFor(t, 60*time.Second, "new findings after recovery", func() bool {
		return countSeqs(c.findings(a.id), after.FirstSeq, after.LastSeq) == 3
	})
}
