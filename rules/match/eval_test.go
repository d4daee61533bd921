package match

import (
	"bytes"
	"math"
	"strings"
	"testing"
)

func TestParseEvalSet(t *testing.T) {
	src := "# comment\n\nself_harm\tkill myself - Google Search\nnone\tkiller whale\nhate,extremism\tgas them\n"
	lines, errs := ParseEvalSet("e.tsv", []byte(src))
	if errs != nil {
		t.Fatal(errs)
	}
	if len(lines) != 3 || lines[0].Labels[0] != "self_harm" || lines[0].Text != "kill myself - Google Search" || lines[0].Pos.Line != 3 {
		t.Fatalf("%+v", lines)
	}
	if lines[1].Harmful() || !lines[2].Harmful() || strings.Join(lines[2].Labels, "|") != "hate|extremism" {
		t.Fatalf("%+v", lines)
	}
	_, errs = ParseEvalSet("e.tsv", []byte("self_harm kill myself\nBad Label\tx\nnone\t\nself_harm,none\tx\nnone\tok\n"))
	if len(errs) != 4 {
		t.Fatalf("want 4 errors, got %v", errs)
	}
	for i, want := range []string{"e.tsv:1:1: want LABEL<TAB>TEXT", "e.tsv:2:1: bad label", "e.tsv:3:1: want", "e.tsv:4:1: bad label"} {
		if !strings.HasPrefix(errs[i].Error(), want) {
			t.Errorf("error %d: %q, want prefix %q", i, errs[i].Error(), want)
		}
	}
}

func TestEvaluate(t *testing.T) {
	sh, errs := ParseLibrary("sh.txt", []byte(header+"kill myself # intent\n"))
	if errs != nil {
		t.Fatal(errs)
	}
	vi, errs := ParseLibrary("vi.txt", []byte("#! rule: keywords-v\n#! category: violence\n#! severity: high\nstab ; exact # weapon\n"))
	if errs != nil {
		t.Fatal(errs)
	}
	m, err := Compile(sh, vi)
	if err != nil {
		t.Fatal(err)
	}
	lines, errs := ParseEvalSet("e.tsv", []byte(strings.Join([]string{
		"self_harm\ti will kill myself",       // caught
		"self_harm\ti want to disappear",      // missed
		"self_harm\tstab myself",              // missed, wrong category
		"violence,self_harm\tkill myself now", // caught by its second label
		"violence\tstab him",                  // caught
		"none\tstab wound first aid",          // false positive
		"none\tkiller whale",
		"none\tskills",
	}, "\n")))
	if errs != nil {
		t.Fatal(errs)
	}
	r := Evaluate(m, lines)
	if r.Lines != 8 || r.Harmful != 5 || r.Benign != 3 {
		t.Fatalf("counts %+v", r)
	}
	near := func(a, b float64) bool { return math.Abs(a-b) < 1e-9 }
	o := r.Overall
	if o.Lines != 5 || o.Caught != 3 || !near(o.Recall, 0.6) || o.BenignHit != 1 || !near(o.FPRate, 1.0/3) || o.Flagged != 5 || !near(o.Precision, 3.0/5) {
		t.Errorf("overall %+v", o)
	}
	if len(r.Categories) != 2 {
		t.Fatalf("categories %+v", r.Categories)
	}
	s, v := r.Categories[0], r.Categories[1]
	if s.Category != "self_harm" || s.Lines != 3 || s.Caught != 1 || s.Flagged != 2 || s.Correct != 2 || s.BenignHit != 0 {
		t.Errorf("self_harm %+v", s)
	}
	// violence: flagged "stab myself" (wrong), "stab him", "stab wound"; the
	// multi-label line counts under its first label.
	if v.Category != "violence" || v.Lines != 2 || v.Caught != 2 || v.Flagged != 3 || v.Correct != 1 || v.BenignHit != 1 || !near(v.FPRate, 1.0/3) {
		t.Errorf("violence %+v", v)
	}
	if len(r.Misses) != 2 || r.Misses[0].Text != "i want to disappear" || r.Misses[1].Matches[0] != "violence: stab" {
		t.Errorf("misses %+v", r.Misses)
	}
	if len(r.FalsePositives) != 1 || r.FalsePositives[0].Pos != "e.tsv:6:1" {
		t.Errorf("false positives %+v", r.FalsePositives)
	}
	var out bytes.Buffer
	if err := r.WriteText(&out); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"8 lines: 5 harmful, 3 benign", "all                    5       3     0.600", "misses (2):", "e.tsv:3:1: [self_harm] stab myself  (matched violence: stab)", "false positives (1):", "e.tsv:6:1: stab wound first aid  (matched violence: stab)"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("report lacks %q:\n%s", want, out.String())
		}
	}
}
