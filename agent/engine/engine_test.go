package engine

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"
	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/checks/all"
	"github.com/vigil-safeguarding/vigil/agent/spool"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
)

// scripted is a test check whose Poll does whatever the test sets.
type scripted struct{}

var pollFn func(ctx context.Context, r *rules.Rule, emit checks.Emit) error

func (scripted) Kind() string                    { return "scripted" }
func (scripted) ValidateParams(*yaml.Node) error { return nil }
func (scripted) DefaultInterval() time.Duration  { return time.Hour }
func (scripted) Poll(ctx context.Context, r *rules.Rule, emit checks.Emit) error {
	return pollFn(ctx, r, emit)
}

// testKinds: every kind the agent constructs (the default pack names them
// all) and the scripted one.
var testKinds = checks.MustRegistry(append(all.New(all.Deps{}).Registry.All(), scripted{})...)

func newTestEngine(t *testing.T, dir string) (*Engine, *spool.Spool) {
	t.Helper()
	sp, err := spool.Open(filepath.Join(dir, "spool.db"), spool.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { sp.Close() })
	e, err := New(Config{DeviceID: "dev", Group: "pupils", Spool: sp, PosturePath: filepath.Join(dir, "posture.json"), DedupeWindow: time.Minute, Checks: testKinds})
	if err != nil {
		t.Fatal(err)
	}
	return e, sp
}

func spooled(t *testing.T, sp *spool.Spool) []*vigilv1.Finding {
	t.Helper()
	recs, err := sp.ReadAfter(0, 0, 0)
	if err != nil {
		t.Fatal(err)
	}
	var out []*vigilv1.Finding
	for _, r := range recs {
		f := &vigilv1.Finding{}
		if err := proto.Unmarshal(r.Payload, f); err != nil {
			t.Fatal(err)
		}
		out = append(out, f)
	}
	return out
}

var rule = &rules.Rule{ID: "r1", Version: 2, Check: "scripted", Severity: rules.Medium, Category: "compliance"}

func TestPostureTransitionsOnlyAndSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	e, sp := newTestEngine(t, dir)
	ctx := context.Background()
	for _, st := range []string{"fail", "fail", "pass", "pass", "fail"} {
		e.Emit(ctx, rule, checks.Observation{Status: st, Key: "hci0", Message: "adapter " + st})
	}
	// A second subject has its own state.
	e.Emit(ctx, rule, checks.Observation{Status: "fail", Key: "hci1"})
	var got []string
	for _, f := range spooled(t, sp) {
		got = append(got, f.Status)
		if f.RuleId != "r1" || f.RuleVersion != 2 || f.Severity != vigilv1.Severity_SEVERITY_MEDIUM || f.Check != "scripted" {
			t.Fatalf("finding fields: %v", f)
		}
	}
	if strings.Join(got, ",") != "fail,pass,fail,fail" {
		t.Fatalf("recorded %v, want transitions fail,pass,fail (+hci1 fail)", got)
	}
	sp.Close()

	// After a restart the known status is not announced again.
	e2, sp2 := newTestEngine(t, dir)
	e2.Emit(ctx, rule, checks.Observation{Status: "fail", Key: "hci0"})
	if n := len(spooled(t, sp2)); n != 4 {
		t.Fatalf("restart repeated an unchanged status: %d findings", n)
	}
	e2.Emit(ctx, rule, checks.Observation{Status: "pass", Key: "hci0"})
	if n := len(spooled(t, sp2)); n != 5 {
		t.Fatalf("change after restart not recorded: %d findings", n)
	}
}

func TestEventDedupeWindow(t *testing.T) {
	e, sp := newTestEngine(t, t.TempDir())
	now := time.Unix(1_800_000_000, 0)
	e.cfg.Now = func() time.Time { return now }
	ctx := context.Background()
	ev := checks.Observation{Key: "/home/p/Downloads/x.exe:abc", Message: "unapproved executable", Details: map[string]any{"paths": []string{"a", "b"}}}
	e.Emit(ctx, rule, ev, ev)
	now = now.Add(30 * time.Second)
	e.Emit(ctx, rule, ev)
	now = now.Add(time.Minute)
	e.Emit(ctx, rule, ev)
	// Events without a key are never deduplicated.
	e.Emit(ctx, rule, checks.Observation{Message: "no key"}, checks.Observation{Message: "no key"})
	fs := spooled(t, sp)
	if len(fs) != 4 {
		t.Fatalf("%d findings, want 2 keyed (window) + 2 unkeyed", len(fs))
	}
	// Typed slices in details survive (contract.Details converts them).
	if v := fs[0].Details.Fields["paths"].GetListValue().GetValues(); len(v) != 2 {
		t.Fatalf("details: %v", fs[0].Details)
	}
}

func TestRunPollTurnsFailuresIntoErrors(t *testing.T) {
	ctx := context.Background()
	pollFn = func(context.Context, *rules.Rule, checks.Emit) error { panic("boom") }
	if err := RunPoll(ctx, scripted{}, rule, nil); err == nil || !strings.Contains(err.Error(), "panicked: boom") {
		t.Fatalf("panic: %v", err)
	}
	pollFn = func(context.Context, *rules.Rule, checks.Emit) error { return errors.New("probe failed") }
	if err := RunPoll(ctx, scripted{}, rule, nil); err == nil || !strings.Contains(err.Error(), "probe failed") {
		t.Fatalf("error: %v", err)
	}
	o := ErrorObservation(rule, errors.New("x"))
	if o.Status != "error" || o.Key == "" {
		t.Fatalf("error observation %+v", o)
	}
}

func TestOnceReportsEveryObservation(t *testing.T) {
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, "a.yaml"), []byte("apiVersion: vigil/v1\nid: a\nname: a\nrationale: r\nseverity: high\ncategory: c\ncheck: scripted\nscope:\n  groups: [pupils]\n"), 0o600)
	os.WriteFile(filepath.Join(dir, "b.yaml"), []byte("apiVersion: vigil/v1\nid: b\nname: b\nrationale: r\nseverity: low\ncategory: c\ncheck: scripted\n"), 0o600)
	set, errs := rules.LoadDir(dir, testKinds)
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	pollFn = func(ctx context.Context, r *rules.Rule, emit checks.Emit) error {
		if r.ID == "b" {
			return errors.New("broken probe")
		}
		_, _, err := emit(ctx, r, checks.Observation{Status: "pass", Message: "ok"}, checks.Observation{Status: "pass", Message: "ok again"})
		return err
	}
	var got []*vigilv1.Finding
	Once(context.Background(), testKinds, set, "pupils", "pupil", func(f *vigilv1.Finding) { got = append(got, f) })
	if len(got) != 3 || got[0].RuleId != "a" || got[1].Status != "pass" || got[2].RuleId != "b" || got[2].Status != "error" {
		t.Fatalf("once: %v", got)
	}
	got = nil
	Once(context.Background(), testKinds, set, "staff", "staff", func(f *vigilv1.Finding) { got = append(got, f) })
	if len(got) != 1 || got[0].RuleId != "b" {
		t.Fatalf("scope not applied: %v", got)
	}
}

// TestEmitFailureCounted: a finding the spool refuses is not silently gone:
// Emit returns the error, and EmitFailures (agent status, heartbeat) counts
// it with the rule and the error.
func TestEmitFailureCounted(t *testing.T) {
	e, sp := newTestEngine(t, t.TempDir())
	if got := e.EmitFailures(); got.Total != 0 {
		t.Fatalf("fresh engine reports failures: %+v", got)
	}
	sp.Close() // every Append now fails, as on a dead disk
	_, _, err := e.Emit(context.Background(), rule, checks.Observation{Message: "unapproved executable", Key: "a"}, checks.Observation{Message: "second", Key: "b"})
	if err == nil {
		t.Fatal("Emit on a closed spool succeeded")
	}
	got := e.EmitFailures()
	if got.Total != 1 || got.Findings != 2 || got.LastRule != rule.ID || got.LastError == "" || got.Last.IsZero() {
		t.Fatalf("failures %+v", got)
	}
}
