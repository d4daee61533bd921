package engine

import (
	"context"
	"testing"

	"github.com/vigil-safeguarding/vigil/agent/checks"
)

func TestComplianceAndLastSelftest(t *testing.T) {
	dir := t.TempDir()
	e, sp := newTestEngine(t, dir)
	ctx := context.Background()
	if len(e.Compliance()) != 0 || !e.LastSelftest().IsZero() {
		t.Fatalf("fresh engine: %v %v", e.Compliance(), e.LastSelftest())
	}
	real := &e.Rules().Rules[0] // a rule of the active set: its check is named
	e.Emit(ctx, real, checks.Observation{Status: "fail", Key: "k1"})
	e.Emit(ctx, rule, checks.Observation{Status: "pass", Key: "hci0"})
	e.Emit(ctx, real, checks.Observation{Status: "pass", Key: "k1"})
	got := e.Compliance()
	if len(got) != 2 {
		t.Fatalf("want 2 states, got %v", got)
	}
	byRule := map[string]string{}
	for _, c := range got {
		byRule[c.RuleId] = c.Status + "/" + c.Check + "/" + c.Key
	}
	if byRule[real.ID] != "pass/"+real.Check+"/k1" || byRule["r1"] != "pass//hci0" {
		t.Errorf("compliance %v", byRule)
	}
	if _, _, _, err := e.TriggerTest(ctx, 1, "test", ""); err != nil {
		t.Fatal(err)
	}
	if e.LastSelftest().IsZero() {
		t.Error("a selftest finding must set LastSelftest")
	}
	// Posture survives a restart, and so does the compliance answer.
	sp.Close()
	e2, _ := newTestEngine(t, dir)
	if n := len(e2.Compliance()); n != 2 {
		t.Errorf("after restart: %d states, want 2", n)
	}
}
