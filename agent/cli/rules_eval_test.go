package cli

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestRulesEval(t *testing.T) {
	const dir, set = "../../rules/keywords", "../../rules/keywords/eval/titles.tsv"
	var out, errb bytes.Buffer
	if rc := Main([]string{"rules", "eval", dir, set}, &out, &errb); rc != 0 {
		t.Fatalf("rc %d: %s", rc, errb.String())
	}
	for _, want := range []string{"harmful", "benign", "category", "self_harm", "all ", "misses (", "false positives ("} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}

	out.Reset()
	if rc := Main([]string{"rules", "eval", "--json", dir, set}, &out, &errb); rc != 0 {
		t.Fatalf("--json rc %d: %s", rc, errb.String())
	}
	var r struct {
		Lines      int `json:"lines"`
		Categories []struct {
			Category string  `json:"category"`
			Recall   float64 `json:"recall"`
		} `json:"categories"`
		Overall struct {
			Recall float64 `json:"recall"`
			FPRate float64 `json:"false_positive_rate"`
		} `json:"overall"`
		Misses []struct {
			Pos  string `json:"pos"`
			Text string `json:"text"`
		} `json:"misses"`
	}
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		t.Fatalf("--json output: %v", err)
	}
	if r.Lines < 1500 || len(r.Categories) < 11 || r.Overall.Recall <= 0 || (len(r.Misses) > 0 && !strings.Contains(r.Misses[0].Pos, "titles.tsv:")) {
		t.Errorf("json report: %+v", r)
	}

	// Thresholds make it a gate; a threshold the set cannot meet fails.
	errb.Reset()
	if rc := Main([]string{"rules", "eval", "--min-recall", "1.01", dir, set}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "overall recall") {
		t.Errorf("--min-recall 1.01: rc %d, stderr %q", rc, errb.String())
	}
	errb.Reset()
	if rc := Main([]string{"rules", "eval", "--max-fp-rate", "-1", dir, set}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "false-positive rate") {
		t.Errorf("--max-fp-rate -1: rc %d, stderr %q", rc, errb.String())
	}

	// A malformed set is refused with the line at fault.
	bad := filepath.Join(t.TempDir(), "bad.tsv")
	if err := os.WriteFile(bad, []byte("none\tfine\nself harm\tno tab label\nself_harm no tab\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	errb.Reset()
	if rc := Main([]string{"rules", "eval", dir, bad}, &out, &errb); rc != 1 || !strings.Contains(errb.String(), "bad.tsv:2:1: bad label") || !strings.Contains(errb.String(), "bad.tsv:3:1: want LABEL<TAB>TEXT") {
		t.Errorf("bad set: rc %d, stderr %q", rc, errb.String())
	}
	if rc := Main([]string{"rules", "eval", dir}, &out, &errb); rc != 2 {
		t.Errorf("one argument: rc %d", rc)
	}
}
