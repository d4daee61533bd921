package match

import (
	"os"
	"testing"
)

// Evaluation gate (issue 12): on the labelled set in rules/keywords/eval,
// written apart from the libraries, the published libraries must catch at
// least GateMinRecall of the harmful lines and match at most GateMaxFPRate
// of the benign ones. It runs the same Evaluate as `vigil-agent rules
// eval`, so the published table and this gate agree.
const (
	GateMinRecall = 0.95
	GateMaxFPRate = 0.05
	gateMinLines  = 1500
	gateMinBenign = 0.40
)

func TestEvaluationGate(t *testing.T) {
	libs, _, errs := LoadDir("../keywords")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	m, err := Compile(libs...)
	if err != nil {
		t.Fatal(err)
	}
	const file = "../keywords/eval/titles.tsv"
	data, err := os.ReadFile(file)
	if err != nil {
		t.Fatal(err)
	}
	lines, errs := ParseEvalSet(file, data)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	r := Evaluate(m, lines)
	// The set must stay large and hard enough to mean something.
	if r.Lines < gateMinLines || float64(r.Benign) < gateMinBenign*float64(r.Lines) {
		t.Fatalf("evaluation set has %d lines, %d benign: want at least %d lines and %.0f%% benign", r.Lines, r.Benign, gateMinLines, 100*gateMinBenign)
	}
	o := r.Overall
	t.Logf("recall %.3f (%d/%d), false-positive rate %.3f (%d/%d), precision %.3f", o.Recall, o.Caught, o.Lines, o.FPRate, o.BenignHit, r.Benign, o.Precision)
	if o.Recall < GateMinRecall {
		for _, x := range r.Misses {
			t.Logf("miss %s: [%v] %s %v", x.Pos, x.Labels, x.Text, x.Matches)
		}
		t.Errorf("overall recall %.3f is below %.2f", o.Recall, GateMinRecall)
	}
	if o.FPRate > GateMaxFPRate {
		for _, x := range r.FalsePositives {
			t.Logf("false positive %s: %s %v", x.Pos, x.Text, x.Matches)
		}
		t.Errorf("false-positive rate %.3f is above %.2f", o.FPRate, GateMaxFPRate)
	}
}
