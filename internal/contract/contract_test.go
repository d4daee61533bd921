package contract

import (
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"math"
	"strconv"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

var now = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)

func base() *vigilv1.Finding {
	return &vigilv1.Finding{
		DeviceId: "dev1", Group: "pupils", ObservedAt: timestamppb.New(now), User: "pupil.2031",
		Check: "executables", RuleId: "executables", RuleVersion: 1, Severity: vigilv1.Severity_SEVERITY_HIGH,
		Category: "filter_bypass", Message: "denied executable", RulesHash: "abc",
		Details: Details(map[string]any{"path": "/tmp/x", "matched": map[string]any{"list": "deny"}, "pids": []any{1, 2}}),
	}
}

func evidence(f *vigilv1.Finding, n int) {
	data := make([]byte, n)
	for i := range data {
		data[i] = byte(i * 7)
	}
	sum := sha256.Sum256(data)
	f.Evidence = []*vigilv1.EvidenceRef{{Id: "ev-1", MediaType: "image/png", Sha256: hex.EncodeToString(sum[:]), Size: int64(n)}}
	f.EvidenceData = []*vigilv1.EvidenceBlob{{Id: "ev-1", Data: data}}
}

func at(f *vigilv1.Finding, path ...string) *structpb.Value {
	v := structpb.NewStructValue(f.Details)
	for _, p := range path {
		if l := v.GetListValue(); l != nil {
			i, _ := strconv.Atoi(p)
			if i >= len(l.Values) {
				return nil
			}
			v = l.Values[i]
			continue
		}
		v = v.GetStructValue().GetFields()[p]
		if v == nil {
			return nil
		}
	}
	return v
}

func unescape(t *testing.T, s string) string {
	t.Helper()
	u, err := strconv.Unquote(`"` + s + `"`)
	if err != nil {
		t.Fatalf("escaped form %q does not unquote: %v", s, err)
	}
	return u
}

// TestSanitizeInvalidUTF8 is the class behind "a file name that is not
// valid UTF-8 hides a denied program": any string of a finding holding
// bytes the OS handed over unchecked makes proto.Marshal fail, so the
// finding was lost. After Sanitize it encodes, validates, and the original
// bytes are kept escaped next to the field.
func TestSanitizeInvalidUTF8(t *testing.T) {
	const bad = "tor-browser-\xff\xfe"
	cases := []struct {
		name string
		set  func(f *vigilv1.Finding)
		// raw is the details path of the escaped original; clean the path
		// of the now-valid value (nil: a top-level field checked by get).
		raw   []string
		clean []string
		get   func(f *vigilv1.Finding) string
	}{
		{"message", func(f *vigilv1.Finding) { f.Message = "denied executable: /tmp/" + bad }, []string{"message_raw"}, nil, func(f *vigilv1.Finding) string { return f.Message }},
		{"user", func(f *vigilv1.Finding) { f.User = "SCHOOL\\p\xe9rez" }, []string{"user_raw"}, nil, func(f *vigilv1.Finding) string { return f.User }},
		{"category", func(f *vigilv1.Finding) { f.Category = bad }, []string{"category_raw"}, nil, func(f *vigilv1.Finding) string { return f.Category }},
		{"status", func(f *vigilv1.Finding) { f.Status = "fail\xc3" }, []string{"status_raw"}, nil, func(f *vigilv1.Finding) string { return f.Status }},
		{"rule_id", func(f *vigilv1.Finding) { f.RuleId = "r\x80" }, []string{"rule_id_raw"}, nil, func(f *vigilv1.Finding) string { return f.RuleId }},
		{"details string", func(f *vigilv1.Finding) { f.Details.Fields["path"] = str("/tmp/" + bad) }, []string{"path_raw"}, []string{"path"}, nil},
		{"nested map", func(f *vigilv1.Finding) {
			f.Details.Fields["matched"].GetStructValue().Fields["entry"] = str("name " + bad)
		}, []string{"matched", "entry_raw"}, []string{"matched", "entry"}, nil},
		{"list element", func(f *vigilv1.Finding) {
			f.Details.Fields["names"] = toValue([]string{"ok", bad, "fine"}, 1)
		}, []string{"names_raw", "1"}, []string{"names", "1"}, nil},
		{"list in list", func(f *vigilv1.Finding) {
			f.Details.Fields["grid"] = toValue([]any{[]any{"a", bad}}, 1)
		}, []string{"grid_raw", "0", "1"}, []string{"grid", "0", "1"}, nil},
		{"map in list", func(f *vigilv1.Finding) {
			f.Details.Fields["products"] = toValue([]any{map[string]any{"name": bad}}, 1)
		}, []string{"products", "0", "name_raw"}, []string{"products", "0", "name"}, nil},
		{"details key", func(f *vigilv1.Finding) { f.Details.Fields[bad] = str("x") }, []string{ValidString(bad) + "_raw_key"}, []string{ValidString(bad)}, nil},
		{"from a Go map", func(f *vigilv1.Finding) {
			f.Details = Details(map[string]any{"label": bad, "list": []string{bad}})
		}, []string{"label_raw"}, []string{"label"}, nil},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := base()
			c.set(f)
			if _, err := proto.Marshal(f); err == nil {
				t.Fatal("the unsanitised finding encodes; the case does not hold invalid UTF-8")
			}
			notes := Sanitize(f)
			if len(notes) == 0 {
				t.Error("Sanitize reported no change")
			}
			if err := Validate(f, Options{Device: "dev1", Now: now}); err != nil {
				t.Fatalf("after Sanitize: %v", err)
			}
			if _, err := proto.Marshal(f); err != nil {
				t.Fatalf("after Sanitize the finding does not encode: %v", err)
			}
			raw := at(f, c.raw...)
			if raw == nil {
				t.Fatalf("no %v in details %v", c.raw, f.Details)
			}
			orig := unescape(t, raw.GetStringValue())
			if !strings.Contains(orig, "\xff") && !strings.Contains(orig, "\xe9") && !strings.Contains(orig, "\xc3") && !strings.Contains(orig, "\x80") {
				t.Errorf("raw %q does not hold the original bytes", orig)
			}
			if c.get != nil {
				if got := c.get(f); !strings.Contains(got, "\uFFFD") {
					t.Errorf("field %q not made valid with U+FFFD", got)
				}
			} else if v := at(f, c.clean...); v == nil || !strings.Contains(v.GetStringValue()+strings.Join(keysOf(f), ""), "\uFFFD") {
				t.Errorf("value at %v not made valid: %v", c.clean, v)
			}
		})
	}
}

func keysOf(f *vigilv1.Finding) []string {
	var out []string
	for k := range f.Details.GetFields() {
		out = append(out, k)
	}
	return out
}

// TestSanitizeKeepsCheckKeys: the raw sibling never overwrites a key the
// check itself set.
func TestSanitizeKeepsCheckKeys(t *testing.T) {
	f := base()
	f.Details.Fields["name"] = str("a\xff")
	f.Details.Fields["name_raw"] = str("the check's own")
	Sanitize(f)
	if got := f.Details.Fields["name_raw"].GetStringValue(); got != "the check's own" {
		t.Errorf("check's key overwritten: %q", got)
	}
	if got := f.Details.Fields["name_raw_"].GetStringValue(); got != `a\xff` {
		t.Errorf("raw kept as %q", got)
	}
}

func TestEscape(t *testing.T) {
	for _, s := range []string{"plain", "tor-browser-\xff", "quote \" and \\ and \n", "naïve 日本", "\x00\x01"} {
		if got := unescape(t, Escape(s)); got != s {
			t.Errorf("Escape(%q) = %q round-trips to %q", s, Escape(s), got)
		}
	}
	if got := Escape("tor-browser-\xff"); got != `tor-browser-\xff` {
		t.Errorf("Escape = %q", got)
	}
	if got := Truncate("ééé", 3); got != "é" {
		t.Errorf("Truncate cut inside a rune: %q", got)
	}
}

// TestValidateLimits: what the collector refuses, one finding at a time.
func TestValidateLimits(t *testing.T) {
	cases := []struct {
		name     string
		mod      func(f *vigilv1.Finding)
		contains string
		// fixable: Sanitize makes it valid.
		fixable bool
	}{
		{"severity 9", func(f *vigilv1.Finding) { f.Severity = 9 }, "severity", true},
		{"severity 0", func(f *vigilv1.Finding) { f.Severity = 0 }, "severity", true},
		{"other device", func(f *vigilv1.Finding) { f.DeviceId = "dev2" }, "not the sender", false},
		{"no observed_at", func(f *vigilv1.Finding) { f.ObservedAt = nil }, "observed_at", false},
		{"clock far behind", func(f *vigilv1.Finding) { f.ObservedAt = timestamppb.New(time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC)) }, "outside", false},
		{"clock far ahead", func(f *vigilv1.Finding) { f.ObservedAt = timestamppb.New(now.Add(2 * MaxClockAhead)) }, "outside", false},
		{"no check", func(f *vigilv1.Finding) { f.Check = "" }, "check", false},
		{"long rule id", func(f *vigilv1.Finding) { f.RuleId = strings.Repeat("r", 200) }, "rule_id", true},
		{"long user", func(f *vigilv1.Finding) { f.User = strings.Repeat("u", 200) }, "user", true},
		{"long message", func(f *vigilv1.Finding) { f.Message = strings.Repeat("m", 5000) }, "message", true},
		{"17 evidence refs", func(f *vigilv1.Finding) { f.Evidence = make([]*vigilv1.EvidenceRef, 17) }, "evidence", true},
		{"evidence over budget", func(f *vigilv1.Finding) { evidence(f, MaxEvidenceBytes+1) }, "evidence of more than", true},
		{"evidence hash mismatch", func(f *vigilv1.Finding) { evidence(f, 100); f.EvidenceData[0].Data[0]++ }, "does not match", true},
		{"blob without ref", func(f *vigilv1.Finding) { evidence(f, 100); f.EvidenceData[0].Id = "other" }, "no reference", true},
		{"bad evidence id", func(f *vigilv1.Finding) { evidence(f, 100); f.Evidence[0].Id = "../x" }, "malformed", true},
		{"details over body limit", func(f *vigilv1.Finding) {
			f.Details.Fields["blob"] = str(strings.Repeat("A", MaxBodyBytes))
		}, "without its evidence", true},
		{"screen match not UTF-8", func(f *vigilv1.Finding) {
			f.ScreenMatch = &vigilv1.ScreenMatch{Term: "kill myself", WindowTitle: "how to kill myself \xff"}
		}, "screen_match.window_title is not valid UTF-8", true},
		{"long screen match context", func(f *vigilv1.Finding) {
			f.ScreenMatch = &vigilv1.ScreenMatch{Term: "t", Context: strings.Repeat("c", MaxMessage+1)}
		}, "screen_match.context longer than", true},
		{"bad screen match evidence id", func(f *vigilv1.Finding) {
			f.ScreenMatch = &vigilv1.ScreenMatch{Term: "t", EvidenceIds: []string{"ok", "\xfe"}}
		}, "screen_match.evidence_ids[1]", true},
		{"many small details", func(f *vigilv1.Finding) {
			l := make([]any, 40000)
			for i := range l {
				l[i] = i
			}
			f.Details.Fields["numbers"] = toValue(l, 1)
		}, "without its evidence", true},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			f := base()
			c.mod(f)
			err := Validate(f, Options{Device: "dev1", Now: now})
			if err == nil || !strings.Contains(err.Error(), c.contains) {
				t.Fatalf("Validate: %v, want an error containing %q", err, c.contains)
			}
			Sanitize(f)
			err = Validate(f, Options{Device: "dev1", Now: now})
			if c.fixable && err != nil {
				t.Errorf("Sanitize did not make it valid: %v", err)
			}
			if !c.fixable && err == nil {
				t.Errorf("Sanitize hid a problem it cannot fix")
			}
		})
	}
	// At the limits is fine.
	f := base()
	evidence(f, MaxEvidenceBytes)
	f.Message = strings.Repeat("m", MaxMessage)
	f.User = strings.Repeat("u", MaxShort)
	if err := Validate(f, Options{Device: "dev1", Now: now}); err != nil {
		t.Errorf("finding at the limits: %v", err)
	}
	if n := proto.Size(f); n > MaxFindingBytes {
		t.Errorf("finding at the limits is %d bytes, MaxFindingBytes %d", n, MaxFindingBytes)
	}
	// The agent does not judge its own clock.
	f = base()
	f.ObservedAt = timestamppb.New(time.Date(1990, 1, 1, 0, 0, 0, 0, time.UTC))
	if err := Validate(f, Options{}); err != nil {
		t.Errorf("without Now the clock is not judged: %v", err)
	}
}

// TestSanitizeDropsEvidenceAndSaysSo: an oversized screenshot does not make
// the finding refused; the finding goes without it and says why.
func TestSanitizeDropsEvidenceAndSaysSo(t *testing.T) {
	f := base()
	evidence(f, 1400<<10)
	Sanitize(f)
	if len(f.Evidence) != 0 || len(f.EvidenceData) != 0 {
		t.Fatal("oversized evidence kept")
	}
	why := f.Details.Fields[KeyEvidenceDropped].GetStringValue()
	if !strings.Contains(why, "524288") || !strings.Contains(why, "1433600") {
		t.Errorf("evidence_dropped = %q", why)
	}
	if err := Validate(f, Options{}); err != nil {
		t.Fatal(err)
	}
}

func TestSanitizeDetailsTooLarge(t *testing.T) {
	f := base()
	f.Details.Fields["blob"] = str(strings.Repeat("A", MaxBodyBytes))
	Sanitize(f)
	if got := len(f.Details.Fields["blob"].GetStringValue()); got > maxDetailString {
		t.Errorf("blob kept at %d bytes", got)
	}
	if f.Details.Fields["path"].GetStringValue() != "/tmp/x" {
		t.Error("small details lost when cutting large ones")
	}
	if f.Details.Fields[KeyDetailsCut] == nil {
		t.Error("no note of the cut")
	}
}

// TestDetailsConversion: what checks put in details always converts, the
// way encoding/json writes it; NaN and infinities (which the console's JSON
// cannot carry) become strings.
func TestDetailsConversion(t *testing.T) {
	type product struct {
		Name    string `json:"name"`
		Enabled bool   `json:"enabled"`
	}
	type sev string
	f := base()
	f.Details = Details(map[string]any{
		"strings":  []string{"a", "b"},
		"ints":     []int64{1, 2},
		"struct":   product{Name: "Defender", Enabled: true},
		"ptr":      &product{Name: "ClamAV"},
		"nilptr":   (*product)(nil),
		"err":      errors.New("boom"),
		"time":     now,
		"bytes":    []byte{1, 2, 3},
		"typed":    sev("high"),
		"nan":      math.NaN(),
		"inf":      math.Inf(1),
		"intmap":   map[int]string{1: "one"},
		"duration": 2 * time.Second,
	})
	Sanitize(f)
	if err := Validate(f, Options{}); err != nil {
		t.Fatal(err)
	}
	m := f.Details.AsMap()
	checks := map[string]any{
		"strings": []any{"a", "b"}, "ints": []any{1.0, 2.0}, "err": "boom", "bytes": "AQID", "typed": "high",
		"nan": "NaN", "inf": "+Inf", "time": now.Format(time.RFC3339Nano), "duration": float64(2 * time.Second),
	}
	for k, want := range checks {
		if got := m[k]; !equalAny(got, want) {
			t.Errorf("%s = %#v, want %#v", k, got, want)
		}
	}
	if m["struct"].(map[string]any)["name"] != "Defender" || m["ptr"].(map[string]any)["name"] != "ClamAV" || m["nilptr"] != nil {
		t.Errorf("structs: %v %v %v", m["struct"], m["ptr"], m["nilptr"])
	}
	if m["intmap"].(map[string]any)["1"] != "one" {
		t.Errorf("intmap: %v", m["intmap"])
	}
}

func equalAny(a, b any) bool {
	la, ok1 := a.([]any)
	lb, ok2 := b.([]any)
	if ok1 && ok2 {
		if len(la) != len(lb) {
			return false
		}
		for i := range la {
			if la[i] != lb[i] {
				return false
			}
		}
		return true
	}
	return a == b
}

func TestDeepDetailsBounded(t *testing.T) {
	var v any = "leaf"
	for range 100 {
		v = []any{v}
	}
	f := base()
	f.Details = Details(map[string]any{"deep": v})
	Sanitize(f)
	if err := Validate(f, Options{}); err != nil {
		t.Fatal(err)
	}
}

// EvidenceHashed skips only the re-hash: a blob whose bytes changed after
// its reference was made is still refused without it, and a size or
// reference mismatch is refused with it.
func TestValidateEvidenceHashed(t *testing.T) {
	f := base()
	evidence(f, 1000)
	if err := Validate(f, Options{EvidenceHashed: true}); err != nil {
		t.Fatalf("valid evidence refused: %v", err)
	}
	f.EvidenceData[0].Data[0] ^= 1
	if err := Validate(f, Options{}); err == nil {
		t.Fatal("changed evidence bytes accepted without EvidenceHashed")
	}
	f.EvidenceData[0].Data = f.EvidenceData[0].Data[1:]
	if err := Validate(f, Options{EvidenceHashed: true}); err == nil {
		t.Fatal("evidence of the wrong size accepted with EvidenceHashed")
	}
	f.EvidenceData[0].Id = "other"
	if err := Validate(f, Options{EvidenceHashed: true}); err == nil {
		t.Fatal("evidence without a reference accepted with EvidenceHashed")
	}
}
