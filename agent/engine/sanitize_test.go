package engine

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"strconv"
	"strings"
	"testing"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/internal/contract"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
)

func unquote(t *testing.T, s string) string {
	t.Helper()
	u, err := strconv.Unquote(`"` + s + `"`)
	if err != nil {
		t.Fatalf("%q is not an escaped string: %v", s, err)
	}
	return u
}

// TestEmitDeniedExecutableWithInvalidName is the reported case: `cp
// /bin/true $'/tmp/tor-browser-\xff'` gave only a local warning ("string
// field contains invalid UTF-8") and no finding. The observation is built
// as the executables check builds it; the finding is spooled, decodes, and
// keeps the original name escaped.
func TestEmitDeniedExecutableWithInvalidName(t *testing.T) {
	e, sp := newTestEngine(t, t.TempDir())
	path := "/tmp/tor-browser-\xff"
	r := &rules.Rule{ID: "executables", Version: 1, Check: "scripted", Severity: rules.Low, Category: "unapproved_software"}
	_, _, err := e.Emit(context.Background(), r, checks.Observation{
		Key:      path + ":" + strings.Repeat("0", 64),
		Severity: rules.High, Category: "filter_bypass",
		Message: "denied executable (filter_bypass): " + path + " (ELF executable, 39 KiB) — Tor Browser bypasses the school filter",
		Details: map[string]any{
			"path": path, "name": "tor-browser-\xff", "sha256": strings.Repeat("0", 64), "size": int64(39 << 10), "source": "watch",
			"matched": map[string]any{"list": "deny", "entry": "name tor-browser*", "category": "filter_bypass"},
		},
	})
	if err != nil {
		t.Fatalf("Emit: %v", err)
	}
	fs := spooled(t, sp)
	if len(fs) != 1 {
		t.Fatalf("%d findings spooled, want 1", len(fs))
	}
	f := fs[0]
	d := f.Details.AsMap()
	if got := unquote(t, d["path_raw"].(string)); got != path {
		t.Errorf("path_raw unescapes to %q, want %q", got, path)
	}
	if d["name_raw"] != `tor-browser-\xff` {
		t.Errorf("name_raw = %v", d["name_raw"])
	}
	if d["name"] != "tor-browser-\uFFFD" || !strings.Contains(f.Message, "tor-browser-\uFFFD") {
		t.Errorf("name %q, message %q", d["name"], f.Message)
	}
	if got := unquote(t, d["message_raw"].(string)); !strings.Contains(got, path) {
		t.Errorf("message_raw %q", got)
	}
	if f.Severity != vigilv1.Severity_SEVERITY_HIGH || f.Category != "filter_bypass" {
		t.Errorf("severity/category changed: %v %v", f.Severity, f.Category)
	}
}

// TestEmitSanitisesEveryField: the class. Each string an observation or the
// device gives a finding, with bytes that are not UTF-8, reaches the spool
// as a valid finding with its original kept; none is dropped.
func TestEmitSanitisesEveryField(t *testing.T) {
	const bad = "caf\xe9-\xff"
	cases := []struct {
		name string
		obs  checks.Observation
		user string // device's logged-in user
		raw  func(d map[string]any) any
	}{
		{"message (window title)", checks.Observation{Message: "term in " + bad}, "", func(d map[string]any) any { return d["message_raw"] }},
		{"observation user", checks.Observation{Message: "m", User: "SCHOOL\\" + bad}, "", func(d map[string]any) any { return d["user_raw"] }},
		{"device user (utmp)", checks.Observation{Message: "m"}, "p" + bad, func(d map[string]any) any { return d["user_raw"] }},
		{"category", checks.Observation{Message: "m", Category: bad}, "", func(d map[string]any) any { return d["category_raw"] }},
		{"status", checks.Observation{Message: "m", Status: "fail" + bad, Key: "k"}, "", func(d map[string]any) any { return d["status_raw"] }},
		{"process name", checks.Observation{Message: "m", Details: map[string]any{"process": bad}}, "", func(d map[string]any) any { return d["process_raw"] }},
		{"volume label", checks.Observation{Message: "m", Details: map[string]any{"label": bad, "size_bytes": 1.0}}, "", func(d map[string]any) any { return d["label_raw"] }},
		{"bluetooth name in a nested map", checks.Observation{Message: "m", Details: map[string]any{"adapter": map[string]any{"name": bad}}}, "",
			func(d map[string]any) any { return d["adapter"].(map[string]any)["name_raw"] }},
		{"typed list", checks.Observation{Message: "m", Details: map[string]any{"signers": []string{"ok", bad}}}, "",
			func(d map[string]any) any { return d["signers_raw"].([]any)[1] }},
		{"list of maps", checks.Observation{Message: "m", Details: map[string]any{"matches": []any{map[string]any{"text": bad}}}}, "",
			func(d map[string]any) any { return d["matches"].([]any)[0].(map[string]any)["text_raw"] }},
		{"key (posture subject)", checks.Observation{Message: "m", Status: "fail", Key: "hci" + bad}, "", nil},
		{"evidence media type", checks.Observation{Message: "m", Evidence: evidenceRef(bad)}, "", func(d map[string]any) any { return d["evidence_media_type_raw"] }},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			e, sp := newTestEngine(t, t.TempDir())
			e.user, e.userTime = c.user, e.cfg.Now() // the cached logged-in user
			if _, _, err := e.Emit(context.Background(), rule, c.obs); err != nil {
				t.Fatalf("Emit: %v", err)
			}
			fs := spooled(t, sp)
			if len(fs) != 1 {
				t.Fatalf("%d findings spooled, want 1", len(fs))
			}
			if err := contract.Validate(fs[0], contract.Options{Device: "dev"}); err != nil {
				t.Fatalf("spooled finding the collector would refuse: %v", err)
			}
			if c.raw == nil {
				return
			}
			raw, _ := c.raw(fs[0].Details.AsMap()).(string)
			if !strings.Contains(unquote(t, raw), bad) {
				t.Errorf("original not kept: %q in %v", raw, fs[0].Details.AsMap())
			}
		})
	}
}

func evidenceRef(mediaType string) []*vigilv1.EvidenceRef {
	sum := sha256.Sum256([]byte("x"))
	return []*vigilv1.EvidenceRef{{Id: "ev1", MediaType: mediaType, Sha256: hex.EncodeToString(sum[:]), Size: 1}}
}

// TestEmitNeverSpoolsWhatTheCollectorRefuses: oversized evidence (the 4 MiB
// the session socket used to accept) and details go out trimmed, saying
// what was dropped, instead of a finding the collector refuses.
func TestEmitNeverSpoolsWhatTheCollectorRefuses(t *testing.T) {
	e, sp := newTestEngine(t, t.TempDir())
	data := make([]byte, 1400<<10)
	sum := sha256.Sum256(data)
	obs := checks.Observation{Message: "term in title", Details: map[string]any{"title": "x", "blob": strings.Repeat("A", 300<<10)},
		Evidence:     []*vigilv1.EvidenceRef{{Id: "ev1", MediaType: "image/png", Sha256: hex.EncodeToString(sum[:]), Size: int64(len(data))}},
		EvidenceData: []*vigilv1.EvidenceBlob{{Id: "ev1", Data: data}},
	}
	if _, _, err := e.Emit(context.Background(), rule, obs); err != nil {
		t.Fatal(err)
	}
	f := spooled(t, sp)[0]
	if err := contract.Validate(f, contract.Options{}); err != nil {
		t.Fatal(err)
	}
	if len(f.EvidenceData) != 0 || !strings.Contains(f.Details.Fields[contract.KeyEvidenceDropped].GetStringValue(), "evidence of more than") {
		t.Errorf("evidence kept or not explained: %v", f.Details.Fields[contract.KeyEvidenceDropped])
	}
	if f.Details.Fields["title"].GetStringValue() != "x" {
		t.Error("small details lost")
	}
}

// TestEmitReplacesWhatCannotBeMadeValid: a finding no change can make
// valid (here: a rule without a check) is recorded as a replacement that
// says why, with the rule's severity, not dropped.
func TestEmitReplacesWhatCannotBeMadeValid(t *testing.T) {
	e, sp := newTestEngine(t, t.TempDir())
	r := &rules.Rule{ID: "odd", Version: 1, Severity: rules.High, Category: "c"}
	if _, _, err := e.Emit(context.Background(), r, checks.Observation{Message: "hello \xff"}); err != nil {
		t.Fatal(err)
	}
	fs := spooled(t, sp)
	if len(fs) != 1 {
		t.Fatalf("%d findings", len(fs))
	}
	f := fs[0]
	if f.Check != "agent" || f.RuleId != "odd" || f.Severity != vigilv1.Severity_SEVERITY_HIGH ||
		!strings.Contains(f.Details.Fields["finding_invalid"].GetStringValue(), "check is required") ||
		f.Details.Fields["original_message"].GetStringValue() != `hello \xff` {
		t.Errorf("replacement %v", f)
	}
	if err := contract.Validate(f, contract.Options{}); err != nil {
		t.Error(err)
	}
}
