package exclusions

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/rules"
)

func sample(now time.Time) []Exclusion {
	return []Exclusion{
		{ID: "b", LibraryRuleID: "keywords-self-harm", Term: "cut myself", Reason: "drama project", ApprovedBy: "dsl1", ApprovedAt: now, ExpiresAt: now.Add(time.Hour)},
		{ID: "a", LibraryRuleID: "keywords-drugs", Term: "weed", Reason: "gardening club", ApprovedBy: "dsl1", ApprovedAt: now.Add(-48 * time.Hour), ExpiresAt: now.Add(-time.Hour)},
	}
}

func TestRoundTripActiveAndSet(t *testing.T) {
	now := time.Date(2026, 3, 2, 10, 0, 0, 0, time.UTC)
	data := Marshal(sample(now))
	if string(data) != string(Marshal([]Exclusion{sample(now)[1], sample(now)[0]})) {
		t.Error("Marshal depends on order")
	}
	list, err := Parse(data)
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].ID != "a" {
		t.Fatalf("parsed %+v", list)
	}
	if act := Active(list, now); len(act) != 1 || act[0].ID != "b" {
		t.Errorf("active %+v", act)
	}
	s := NewSet(list)
	if !s.Excluded("keywords-self-harm", "cut myself", now) || s.Excluded("keywords-self-harm", "cut myself", now.Add(time.Hour)) {
		t.Error("expiry not respected")
	}
	if s.Excluded("keywords-drugs", "weed", now) || s.Excluded("keywords-other", "cut myself", now) {
		t.Error("expired or other library excluded")
	}
	var nilSet *Set
	if nilSet.Excluded("x", "y", now) {
		t.Error("nil set excludes")
	}
	if empty, err := Parse(Marshal(nil)); err != nil || len(empty) != 0 {
		t.Errorf("empty file: %v %v", empty, err)
	}
}

func TestParseRejects(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{`[]`, "not an exclusions file"},
		{`{}`, `want {"exclusions"`},
		{`{"exclusions": [], "x": 1}`, "unknown field"},
		{`{"exclusions": [{"id": "a", "term": "t"}]}`, "missing library_rule_id, reason, approved_by, approved_at, expires_at"},
		{`{"exclusions": []} {}`, "data after"},
		{`{"exclusions": [{"id":"a","library_rule_id":"l","term":"t","reason":"r","approved_by":"d","approved_at":"2026-01-01T00:00:00Z","expires_at":"2026-02-01T00:00:00Z"},` +
			`{"id":"a","library_rule_id":"l","term":"u","reason":"r","approved_by":"d","approved_at":"2026-01-01T00:00:00Z","expires_at":"2026-02-01T00:00:00Z"}]}`, "repeated"},
	} {
		_, err := Parse([]byte(c.in))
		if err == nil || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want %q", c.in, err, c.want)
		}
	}
}

// TestBundleDataKind: the loader carries exclusions/*.json and refuses a
// malformed one with the file's name.
func TestBundleDataKind(t *testing.T) {
	now := time.Now()
	files := map[string][]byte{Path: Marshal(sample(now))}
	set, errs := rules.LoadFiles(files, nil)
	if errs != nil {
		t.Fatal(errs)
	}
	if _, ok := set.Files[Path]; !ok {
		t.Fatal("exclusions file not carried")
	}
	if _, errs := rules.LoadFiles(map[string][]byte{"exclusions/bad.json": []byte(`{"exclusions": 3}`)}, nil); errs == nil || !strings.Contains(errs.Error(), "exclusions/bad.json") {
		t.Errorf("bad file: %v", errs)
	}
	if _, errs := rules.LoadFiles(map[string][]byte{"exclusions/sub/x.json": Marshal(nil)}, nil); errs == nil {
		t.Error("nested exclusions file accepted")
	}
	got, err := FromBundle(map[string][]byte{Path: Marshal(sample(now)), "keywords/x.txt": []byte("x")})
	if err != nil || len(got) != 2 {
		t.Errorf("FromBundle: %v %v", got, err)
	}
}
