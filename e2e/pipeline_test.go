package e2e

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestEnrollFindingsStored: enroll, findings reach Badger and the CLI,
// devices report last-seen and version, bad tokens are refused clearly,
// rules edited on the collector reach the agent, SIGTERM is clean.
func TestEnrollFindingsStored(t *testing.T) {
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	a.start()
	r, err := a.trigger(3, "")
	if err != nil {
		t.Fatal(err)
	}
	if r.LastSeq-r.FirstSeq != 2 {
		t.Fatalf("trigger result %+v", r)
	}
	// Besides the 3 triggered, the selftest rule's scheduled finding marks
	// the agent's start.
	waitFor(t, 10*time.Second, "3 triggered selftest findings stored", func() bool { return len(triggered(c.findings(a.id), r.Nonce)) == 3 })
	for i, f := range triggered(c.findings(a.id), r.Nonce) {
		if f.DeviceID != a.id || f.Seq != r.FirstSeq+uint64(i) || f.Check != "selftest" || f.RuleID != "selftest" ||
			f.Severity != "info" || f.Message == "" || f.Time == "" || f.Details["nonce"] != r.Nonce {
			t.Errorf("finding %d: %+v", i, f)
		}
	}
	// --since filters by observed time.
	// The time-ordered listing holds them too (beside the default pack's
	// own findings: the scheduled selftest, antivirus posture, ...).
	if got := triggered(c.findings(""), r.Nonce); len(got) != 3 {
		t.Fatalf("time-ordered listing has %d of the 3 triggered findings", len(got))
	}
	future := time.Now().Add(time.Hour).UTC().Format(time.RFC3339)
	if out := mustRun(t, "vigil-collector", "findings", "list", "--data", c.data, "--since", future, "--json"); out != "" {
		t.Errorf("--since in the future listed %q", out)
	}

	waitFor(t, 10*time.Second, "device heartbeat recorded", func() bool {
		ds := c.devices()
		return len(ds) == 1 && ds[0].DeviceID == a.id && ds[0].Group == "pupils" && ds[0].AgentVersion != "" &&
			time.Since(ds[0].LastSeen) < time.Minute && ds[0].Connected
	})

	// Token refusals, each with a message a technician can act on.
	for _, tc := range []struct {
		name, token, want string
	}{
		{"wrong secret", tamper(c.token("pupils")), "not known"},
		{"garbage", "not-a-token", "malformed"},
		{"expired", c.token("pupils", "--ttl", "1ms"), "expired"},
	} {
		time.Sleep(5 * time.Millisecond)
		_, errOut, code := run(t, "vigil-agent", "enroll", "--collector", c.grpc, "--token", tc.token, "--state", filepath.Join(t.TempDir(), "x"))
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("%s: exit %d, stderr %q, want it to mention %q", tc.name, code, errOut, tc.want)
		}
	}
	once := c.token("staff", "--uses", "1")
	mustRun(t, "vigil-agent", "enroll", "--collector", c.grpc, "--token", once, "--state", filepath.Join(t.TempDir(), "s1"))
	if _, errOut, code := run(t, "vigil-agent", "enroll", "--collector", c.grpc, "--token", once, "--state", filepath.Join(t.TempDir(), "s2")); code == 0 || !strings.Contains(errOut, "no uses left") {
		t.Errorf("used-up token: exit %d, %q", code, errOut)
	}

	// A rule added on the collector is pushed to the agent and applied.
	rule := strings.ReplaceAll(selftestRule("selftest-urgent", "high"), "\t", "  ")
	if err := os.WriteFile(filepath.Join(c.data, "rules", "default", "urgent.yaml"), []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "pushed rule applied on the agent", func() bool {
		_, err := a.trigger(1, "selftest-urgent")
		return err == nil
	})
	hash := a.status().RulesHash
	waitFor(t, 10*time.Second, "collector sees the agent's new rules hash", func() bool {
		for _, d := range c.devices() {
			if d.DeviceID == a.id {
				return d.RulesHash == hash
			}
		}
		return false
	})
	// The pushed bundle is on disk, so it applies at the next boot offline.
	if _, err := os.Stat(filepath.Join(a.state, "rules", "urgent.yaml")); err != nil {
		t.Errorf("pushed rule not kept in the state dir: %v", err)
	}

	// Revoking the device ends its stream and refuses it from then on.
	mustRun(t, "vigil-collector", "devices", "revoke", "--data", c.data, "--device", a.id)
	waitFor(t, 10*time.Second, "revoked agent refused", func() bool {
		s := a.status()
		return !s.Uplink.Connected && strings.Contains(s.Uplink.LastError, "revoked")
	})

	if err := c.p.stop(); err != nil {
		t.Fatalf("collector SIGTERM: %v", err)
	}
	if !strings.Contains(c.p.log.String(), "store closed cleanly") {
		t.Error("collector did not report closing the store cleanly")
	}
}

// triggered picks the findings of one trigger-test by its nonce.
func triggered(fs []finding, nonce string) []finding {
	var out []finding
	for _, f := range fs {
		if f.Details["nonce"] == nonce {
			out = append(out, f)
		}
	}
	return out
}

func tamper(tok string) string {
	parts := strings.Split(tok, ".")
	b := []byte(parts[2])
	if b[0] == 'A' {
		b[0] = 'B'
	} else {
		b[0] = 'A'
	}
	parts[2] = string(b)
	return strings.Join(parts, ".")
}

func selftestRule(id, severity string) string {
	return `apiVersion: vigil/v1
id: ` + id + `
name: Self-test at ` + severity + ` severity
rationale: Proves that ` + severity + ` alerts travel end to end.
severity: ` + severity + `
category: selftest
check: selftest
schedule:
	interval: 24h
`
}

// TestForeignClientCertificateRefused: a device certificate from another
// collector's CA cannot stream to this one, even when the agent trusts
// this collector.
func TestForeignClientCertificateRefused(t *testing.T) {
	a1 := newCollector(t)
	b1 := newCollector(t)
	other := enrollAgent(t, b1, "pupils")
	legit := enrollAgent(t, a1, "pupils")

	// Point the other collector's device at collector A, pinning A's CA, so
	// only the client certificate is wrong.
	var legitCfg, cfg map[string]any
	readJSON(t, filepath.Join(legit.state, "config.json"), &legitCfg)
	readJSON(t, filepath.Join(other.state, "config.json"), &cfg)
	cfg["collector"], cfg["ca_fingerprint"] = a1.grpc, legitCfg["ca_fingerprint"]
	writeJSON(t, filepath.Join(other.state, "config.json"), cfg)
	other.start()
	if _, err := other.trigger(2, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 15*time.Second, "refusal recorded by the foreign agent", func() bool {
		s := other.status()
		return !s.Uplink.Connected && s.Uplink.LastError != ""
	})
	if s := other.status(); s.Spool.Count < 2 || s.Uplink.AckedTotal != 0 {
		t.Errorf("foreign agent: spool %d acked %d; nothing may be acknowledged", s.Spool.Count, s.Uplink.AckedTotal)
	}
	if n := len(a1.findings("")); n != 0 {
		t.Errorf("collector stored %d findings from a foreign certificate", n)
	}
	// And the collector still serves its own devices.
	legit.start()
	lr, err := legit.trigger(1, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 10*time.Second, "legit finding stored", func() bool { return len(triggered(a1.findings(legit.id), lr.Nonce)) == 1 })
}

func readJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	if err := json.Unmarshal(b, v); err != nil {
		t.Fatal(err)
	}
}

func writeJSON(t *testing.T, path string, v any) {
	t.Helper()
	b, _ := json.Marshal(v)
	if err := os.WriteFile(path, b, 0o600); err != nil {
		t.Fatal(err)
	}
}

// TestChaos: while an agent emits 10,000+ selftest findings, the collector
// is killed -9 twice and the agent once at random moments; in the end the
// collector holds exactly the emitted set, none lost, none duplicated.
func TestChaos(t *testing.T) {
	if testing.Short() {
		t.Skip("chaos test is long")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("chaos seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	a.start()

	const rounds, perRound = 24, 500
	// Kill moments: rounds at which to kill, and a delay into that round.
	killAt := map[int]string{}
	for len(killAt) < 3 {
		r := 1 + rng.IntN(rounds-2)
		if _, taken := killAt[r]; taken {
			continue
		}
		if len(killAt) < 2 {
			killAt[r] = "collector"
		} else {
			killAt[r] = "agent"
		}
	}
	var acked []triggerResult
	for round := 0; round < rounds; round++ {
		victim := killAt[round]
		killed := make(chan struct{})
		if victim != "" {
			delay := time.Duration(rng.IntN(300)) * time.Millisecond
			go func() {
				defer close(killed)
				time.Sleep(delay)
				t.Logf("round %d: kill -9 %s after %v", round, victim, delay)
				if victim == "collector" {
					c.p.kill()
				} else {
					a.p.kill()
				}
			}()
		} else {
			close(killed)
		}
		r, err := a.trigger(perRound, "")
		if err == nil {
			acked = append(acked, r)
		} else if victim != "agent" {
			t.Fatalf("round %d: %v", round, err)
		}
		<-killed
		switch victim {
		case "collector":
			time.Sleep(time.Duration(rng.IntN(500)) * time.Millisecond)
			c.start()
		case "agent":
			a.start()
		}
	}

	emitted := a.status().Spool.NextSeq - 1
	var confirmed uint64
	for _, r := range acked {
		confirmed += uint64(r.Count)
	}
	if confirmed < 10000 {
		t.Fatalf("only %d findings confirmed emitted", confirmed)
	}
	// The emitted set is seqs 1..emitted (the spool never evicted here),
	// and every confirmed trigger's findings are there, with its nonce.
	seen := storedExactly(t, c, a, emitted, acked, 90*time.Second)
	t.Logf("emitted %d (confirmed %d in %d triggers), stored %d, none lost or duplicated", emitted, confirmed, len(acked), len(seen))
}

// TestOfflineSpoolAndDrain: with the collector down the agent spools within
// its byte bound, evicting oldest info findings first and never the
// high-severity ones, records the drop, and drains when the collector
// returns.
func TestOfflineSpoolAndDrain(t *testing.T) {
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	rulesDir := filepath.Join(t.TempDir(), "rules")
	os.MkdirAll(rulesDir, 0o700)
	for id, sev := range map[string]string{"selftest": "info", "selftest-high": "high"} {
		rule := strings.ReplaceAll(selftestRule(id, sev), "\t", "  ")
		if err := os.WriteFile(filepath.Join(rulesDir, id+".yaml"), []byte(rule), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	if err := c.p.stop(); err != nil {
		t.Fatal(err)
	}
	const maxBytes = 64 << 10
	a.start("--rules", rulesDir, "--spool-max-bytes", "65536")

	high, err := a.trigger(40, "selftest-high")
	if err != nil {
		t.Fatal(err)
	}
	var infos []triggerResult
	for i := 0; i < 20; i++ {
		r, err := a.trigger(50, "selftest")
		if err != nil {
			t.Fatal(err)
		}
		infos = append(infos, r)
		if st := a.status(); st.Spool.Bytes > maxBytes {
			t.Fatalf("spool %d bytes exceeds its bound %d", st.Spool.Bytes, maxBytes)
		}
	}
	st := a.status()
	if st.Spool.DroppedTotal == 0 {
		t.Fatal("1,000 info findings fit a 64 KiB spool: the test does not exercise eviction")
	}
	t.Logf("offline: spool %d findings, %d bytes, dropped %d", st.Spool.Count, st.Spool.Bytes, st.Spool.DroppedTotal)

	c.start()
	waitFor(t, 30*time.Second, "spool drained", func() bool { s := a.status(); return s.Spool.Count == 0 && s.Uplink.AckedTotal > 0 })
	got := c.findings(a.id)
	bySeq := map[uint64]finding{}
	var droppedReported float64
	for _, f := range got {
		bySeq[f.Seq] = f
		if f.RuleID == "agent-spool-dropped" {
			if f.Severity != "high" {
				t.Errorf("drop report severity %s", f.Severity)
			}
			droppedReported += f.Details["dropped"].(float64)
		}
	}
	for s := high.FirstSeq; s <= high.LastSeq; s++ {
		if f, ok := bySeq[s]; !ok || f.Severity != "high" {
			t.Fatalf("high-severity seq %d lost while info findings were spooled", s)
		}
	}
	// Info findings that survived are the newest: once one is present,
	// every later info finding must be too (oldest evicted first).
	var infoSeqs []uint64
	for _, r := range infos {
		for s := r.FirstSeq; s <= r.LastSeq; s++ {
			infoSeqs = append(infoSeqs, s)
		}
	}
	survived := 0
	for i, s := range infoSeqs {
		if _, ok := bySeq[s]; ok {
			survived++
		} else if survived > 0 {
			t.Fatalf("info seq %d evicted while older info seq %d survived", s, infoSeqs[i-1])
		}
	}
	if survived == 0 || survived == len(infoSeqs) {
		t.Fatalf("%d of %d info findings survived: expected a suffix", survived, len(infoSeqs))
	}
	// Every seq the spool assigned was either delivered or counted as
	// dropped; reports name all drops but the few evictions the last
	// report's own storage caused, which the next report will carry.
	emitted := a.status().Spool.NextSeq - 1
	if uint64(len(got))+st.Spool.DroppedTotal != emitted {
		t.Errorf("stored %d + dropped %d != emitted %d", len(got), st.Spool.DroppedTotal, emitted)
	}
	if uint64(droppedReported) > st.Spool.DroppedTotal || st.Spool.DroppedTotal-uint64(droppedReported) > 5 {
		t.Errorf("drop reports say %v, spool counted %d", droppedReported, st.Spool.DroppedTotal)
	}
}

// TestMalformedRulesKeepPrevious: an invalid edit leaves the previous rules
// active and yields a finding naming the file and line.
func TestMalformedRulesKeepPrevious(t *testing.T) {
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	rulesDir := filepath.Join(t.TempDir(), "rules")
	os.MkdirAll(rulesDir, 0o700)
	os.WriteFile(filepath.Join(rulesDir, "selftest.yaml"), []byte(strings.ReplaceAll(selftestRule("selftest", "info"), "\t", "  ")), 0o600)
	a.start("--rules", rulesDir)
	before := a.status().RulesHash

	bad := "apiVersion: vigil/v1\nid: broken\nseverity: loud\nname: x\nrationale: y\ncategory: c\ncheck: selftest\n"
	if err := os.WriteFile(filepath.Join(rulesDir, "broken.yaml"), []byte(bad), 0o600); err != nil {
		t.Fatal(err)
	}
	wrote := time.Now()
	var report finding
	waitFor(t, 10*time.Second, "rules error finding at the collector", func() bool {
		for _, f := range c.findings(a.id) {
			if f.RuleID == "agent-rules-invalid" {
				report = f
				return true
			}
		}
		return false
	})
	t.Logf("rules error reached the collector %v after the write", time.Since(wrote).Round(time.Millisecond))
	if !strings.HasSuffix(report.Details["file"].(string), "broken.yaml") || report.Details["line"].(float64) != 3 ||
		!strings.Contains(report.Message, "broken.yaml:3:") {
		t.Errorf("rules error finding does not name file and line: %+v", report)
	}
	if got := a.status().RulesHash; got != before {
		t.Errorf("rules hash changed from %s to %s after an invalid edit", before, got)
	}
	if _, err := a.trigger(1, ""); err != nil {
		t.Errorf("previous rules not active: %v", err)
	}
	// The CLI validator reports the same position, exit 1.
	out, _, code := run(t, "vigil-agent", "rules", "check", rulesDir)
	if code != 1 || !strings.Contains(out, "broken.yaml:3:11: ") {
		t.Errorf("rules check: exit %d, %q", code, out)
	}

	// A valid fix applies, timed by the agent's own log line (polling
	// status through race-built CLIs is slower than the reload). The time
	// is logged; the bound is only a liveness check, as a loaded CI
	// machine makes every latency longer.
	good := strings.ReplaceAll(selftestRule("broken", "low"), "\t", "  ")
	fixed := time.Now()
	os.WriteFile(filepath.Join(rulesDir, "broken.yaml"), []byte(good), 0o600)
	waitFor(t, 10*time.Second, "fixed rules applied", func() bool { return a.status().RulesHash != before })
	applied, ok := logTime(a.p.log.String(), `msg="rules applied"`, fixed)
	if !ok {
		t.Fatal("no rules applied log line")
	}
	if d := applied.Sub(fixed); d > time.Minute {
		t.Errorf("valid change applied %v after the write, want within a minute", d)
	} else {
		t.Logf("valid change applied %v after the write", d.Round(time.Millisecond))
	}
}

// logTime finds the first slog line containing marker at or after since and
// returns its time= field.
func logTime(log, marker string, since time.Time) (time.Time, bool) {
	for _, line := range strings.Split(log, "\n") {
		if !strings.Contains(line, marker) || !strings.HasPrefix(line, "time=") {
			continue
		}
		ts, _, _ := strings.Cut(strings.TrimPrefix(line, "time="), " ")
		at, err := time.Parse(time.RFC3339Nano, ts)
		if err == nil && !at.Before(since.Add(-time.Millisecond)) {
			return at, true
		}
	}
	return time.Time{}, false
}
