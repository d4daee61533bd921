package e2e

import (
	"bytes"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"image/jpeg"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/jezek/xgb"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/agent/spool"
	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/internal/contract"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// spoolCounts are the spool counters of `vigil-agent status` these tests
// read (RejectedTotal is not in the shared harness's struct).
type spoolCounts struct {
	Count         int
	RejectedTotal uint64
}

func (a *agent) spoolStats() spoolCounts {
	a.t.Helper()
	out := mustRun(a.t, "vigil-agent", "status", "--state", a.state)
	if i := strings.Index(out, "{"); i >= 0 {
		out = out[i:]
	}
	var s struct {
		Spool spoolCounts `json:"spool"`
	}
	if err := json.Unmarshal([]byte(out), &s); err != nil {
		a.t.Fatalf("status %q: %v", out, err)
	}
	return s.Spool
}

// TestInvalidUTF8ExecutableEndToEnd is the reported attack: `cp /bin/true
// $'/tmp/tor-browser-\xff'` gave the agent a local warning ("string field
// contains invalid UTF-8") and the collector nothing, so a denied program
// stayed hidden. Now the finding reaches the collector, with the name made
// valid and the original bytes kept escaped in its details.
func TestInvalidUTF8ExecutableEndToEnd(t *testing.T) {
	dir := t.TempDir()
	watched := filepath.Join(dir, "tmp")
	rulesDir := filepath.Join(dir, "rules")
	os.MkdirAll(watched, 0o755)
	os.MkdirAll(rulesDir, 0o700)
	rule := "apiVersion: vigil/v1\nid: exe-deny\nname: deny\nrationale: test\nseverity: low\ncategory: unapproved_software\ncheck: executables\n" +
		"params:\n  paths: [" + watched + "]\n  processes: false\n  software: false\n  report_unapproved: false\n" +
		"  deny:\n    - name: [\"tor-browser*\"]\n      category: filter_bypass\n      severity: high\n      reason: Tor Browser bypasses the school filter.\n"
	if err := os.WriteFile(filepath.Join(rulesDir, "exe.yaml"), []byte(rule), 0o600); err != nil {
		t.Fatal(err)
	}
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	a.start("--rules", rulesDir)

	elf, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	name := "tor-browser-\xff"
	// The watcher logs nothing when it is ready, so the program is copied
	// in again every few seconds until the finding arrives (repeats of the
	// same file are deduplicated by the engine).
	var f finding
	var last time.Time
	waitFor(t, 90*time.Second, "the denied executable's finding at the collector", func() bool {
		if time.Since(last) > 3*time.Second {
			last = time.Now()
			tmp := filepath.Join(dir, "copy")
			if err := os.WriteFile(tmp, elf, 0o755); err != nil {
				t.Fatal(err)
			}
			if err := os.Rename(tmp, filepath.Join(watched, name)); err != nil {
				t.Fatal(err)
			}
		}
		for _, g := range c.findings(a.id) {
			if g.RuleID == "exe-deny" {
				f = g
				return true
			}
		}
		return false
	})
	if f.Severity != "high" || !strings.Contains(f.Message, "tor-browser-\uFFFD") {
		t.Errorf("finding %+v", f)
	}
	if got := f.Details["name_raw"]; got != `tor-browser-\xff` {
		t.Errorf("details.name_raw = %v, want the escaped original name", got)
	}
	if raw, _ := f.Details["path_raw"].(string); !strings.HasSuffix(raw, `/tor-browser-\xff`) {
		t.Errorf("details.path_raw = %q", raw)
	}
	if strings.Contains(a.p.log.String(), "invalid UTF-8") && !strings.Contains(a.p.log.String(), "finding adjusted") {
		t.Errorf("agent log still reports an encode failure:\n%s", tail(a.p.log.String(), 2000))
	}
}

// oldScreenshotFinding is what an agent before the size contract spooled
// for a screen match over a photo: about 1.4 MiB of PNG evidence, which
// the collector refuses (the budget is contract.MaxEvidenceBytes).
func oldScreenshotFinding(t *testing.T, cfg state.Config) []byte {
	t.Helper()
	data := make([]byte, 1400<<10)
	rand.Read(data)
	sum := sha256.Sum256(data)
	f := &vigilv1.Finding{
		DeviceId: cfg.DeviceID, Group: cfg.Group, ObservedAt: timestamppb.Now(), User: "pupil",
		Check: "screen", RuleId: "screen-keywords", RuleVersion: 1, Severity: vigilv1.Severity_SEVERITY_CRITICAL,
		Category: "self_harm", Message: `self_harm term "kill myself" in the active window title (firefox)`,
		Evidence:     []*vigilv1.EvidenceRef{{Id: "old-shot", MediaType: "image/png", Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data))}},
		EvidenceData: []*vigilv1.EvidenceBlob{{Id: "old-shot", Data: data}},
	}
	b, err := proto.Marshal(f)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

// TestRefusedFindingDoesNotBlockEndToEnd is the reported outage: one
// finding the collector refuses (a 1.4 MiB screenshot in the spool of an
// agent from before the size contract) stopped every finding behind it, for
// ever. Now the collector refuses that one by name, records a
// finding-rejected in its place, the agent sets it aside and counts it,
// and all the findings behind it arrive.
func TestRefusedFindingDoesNotBlockEndToEnd(t *testing.T) {
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	cfg, err := state.Dir(a.state).LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	sp, err := spool.Open(state.Dir(a.state).SpoolPath(), spool.Options{KeyPath: state.Dir(a.state).SpoolKeyPath()})
	if err != nil {
		t.Fatal(err)
	}
	// And a record no agent can decode (a damaged or foreign payload).
	first, last, err := sp.Append([]spool.Item{{Severity: 5, Payload: oldScreenshotFinding(t, cfg)}, {Severity: 3, Payload: []byte("\xff\xff not a finding")}})
	sp.Close()
	if err != nil {
		t.Fatal(err)
	}

	a.start()
	const n = 50
	r, err := a.trigger(n, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, fmt.Sprintf("the %d findings behind the refused one", n), func() bool {
		return len(triggered(c.findings(a.id), r.Nonce)) == n
	})
	var rec *finding
	for _, f := range c.findings(a.id) {
		if f.Seq == first {
			rec = &f
		}
	}
	// A refused safeguarding alert stays an alert (check screen).
	if rec == nil || rec.RuleID != "finding-rejected" || rec.Check != "screen" || rec.Severity != "critical" ||
		!strings.Contains(fmt.Sprint(rec.Details["reason"]), "evidence of more than 524288 bytes") ||
		rec.Details["original_rule_id"] != "screen-keywords" {
		t.Fatalf("seq %d at the collector: %+v, want a finding-rejected record", first, rec)
	}
	waitFor(t, 30*time.Second, "the refused and the undecodable finding counted and out of the spool", func() bool {
		st := a.spoolStats()
		return st.RejectedTotal == 2 && st.Count == 0
	})
	for _, f := range c.findings(a.id) {
		if f.Seq == last {
			t.Errorf("the undecodable record reached the collector: %+v", f)
		}
	}
	if !strings.Contains(a.p.log.String(), "set aside, not retried") {
		t.Errorf("agent did not log the refusal")
	}
	// Restarted, the agent does not send it again and keeps the count.
	if err := a.p.stop(); err != nil {
		t.Fatal(err)
	}
	a.start()
	if st := a.spoolStats(); st.RejectedTotal != 2 {
		t.Errorf("after a restart rejected_total = %d, want 2", st.RejectedTotal)
	}
}

// photoWindow maps a full-screen window showing a photo-like image (an X
// background pixmap, so the server repaints it itself) titled title, and
// returns its id. The window lives as long as the test.
func photoWindow(t *testing.T, display, title string) string {
	t.Helper()
	c, err := xgb.NewConnDisplay(display)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(c.Close)
	if _, err := mapPixmapWindow(c, title, 1280, 800, photoPixels(1280, 800)); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "xdotool", "search", "--sync", "--name", title).Output()
	if err != nil {
		t.Fatalf("photo window not found: %v", err)
	}
	win := strings.Fields(string(out))[0]
	if err := exec.Command("xdotool", "windowactivate", "--sync", win).Run(); err != nil {
		t.Fatal(err)
	}
	return win
}

// TestScreenPhotoEvidenceEndToEnd: a keyword in the title of a window
// showing a photograph gives a finding whose screenshot (about 1.4 MiB as
// the agent's PNG used to be, refused by the collector, blocking the
// device) now arrives as a JPEG within the evidence budget, and the
// findings after it arrive too.
func TestScreenPhotoEvidenceEndToEnd(t *testing.T) {
	display, _ := xsession(t)
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	a.start()
	helper := start(t, "vigil-agent", "session", "--state", a.state, "--display", display)
	waitFor(t, 30*time.Second, "session helper connected", func() bool {
		return strings.Contains(helper.log.String(), "watching the screen")
	})
	photoWindow(t, display, "how to kill myself - Photos")
	var f finding
	waitFor(t, 60*time.Second, "screen finding at the collector", func() bool {
		for _, g := range c.findings(a.id) {
			if g.Check == "screen" {
				f = g
				return true
			}
		}
		return false
	})
	if d := f.Details[contract.KeyEvidenceDropped]; d != nil || f.Details["evidence"] != nil {
		t.Fatalf("screenshot not attached: %v %v", d, f.Details["evidence"])
	}
	ev := evidenceOf(t, c, a.id)
	out := filepath.Join(t.TempDir(), "shot")
	mustRun(t, "vigil-collector", "evidence", "get", "--data", c.data, "--device", a.id, "--id", ev, "--reason", "e2e test review", "--out", out)
	b, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	img, err := jpeg.Decode(bytes.NewReader(b))
	if err != nil {
		t.Fatalf("evidence of a photo is not a JPEG: %v", err)
	}
	if len(b) > contract.MaxEvidenceBytes || img.Bounds().Dx() != 960 {
		t.Errorf("evidence %d bytes, %v", len(b), img.Bounds())
	}
	t.Logf("photo screenshot stored as JPEG, %d bytes, %v", len(b), img.Bounds())
	r, err := a.trigger(20, "")
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "the findings after the screenshot", func() bool {
		return len(triggered(c.findings(a.id), r.Nonce)) == 20
	})
	if st := a.spoolStats(); st.RejectedTotal != 0 {
		t.Errorf("rejected_total %d: the agent spooled something the collector refused", st.RejectedTotal)
	}
}
