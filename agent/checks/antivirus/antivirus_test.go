package antivirus

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

// testNow is the fixed "now" of the fixture tests.
var testNow = time.Date(2026, 11, 23, 12, 0, 0, 0, time.UTC)

// checkDetails: the engine stores Details as a protobuf Struct, which
// takes only JSON-like values.
func checkDetails(t *testing.T, o checks.Observation) {
	t.Helper()
	if _, err := structpb.NewStruct(o.Details); err != nil {
		t.Errorf("details not storable: %v (%#v)", err, o.Details)
	}
	if o.Status != "pass" && o.Status != "fail" {
		t.Errorf("status %q", o.Status)
	}
	if o.Message == "" {
		t.Error("empty message")
	}
}

func defaults(t *testing.T) settings {
	t.Helper()
	s, err := parseParams(nil)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

func paramsNode(t *testing.T, src string) *yaml.Node {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

func TestKindRegistered(t *testing.T) {
	c, ok := checks.MustRegistry(Check{}).Get("antivirus")
	if !ok {
		t.Fatal("antivirus kind not in a registry holding the check")
	}
	p, ok := c.(checks.Poller)
	if !ok || p.DefaultInterval() != time.Hour {
		t.Fatalf("antivirus is not a Poller with a 1h interval: %T", c)
	}
	if _, runner := c.(checks.Runner); runner {
		t.Error("antivirus should be polled, not a Runner")
	}
}

func TestParamsDefaultsAndValues(t *testing.T) {
	s := defaults(t)
	if s.maxAge != 72*time.Hour || !s.requireRealtime || !s.allowUnknownAge || len(s.products) != 0 ||
		s.clamdSocket != "/var/run/clamav/clamd.ctl" || s.clamDBDir != "/var/lib/clamav" {
		t.Errorf("defaults: %+v", s)
	}
	s, err := parseParams(paramsNode(t, `
max_signature_age: 36h
require_realtime: false
products: [ClamAV, " Sophos "]
allow_unknown_signature_age: false
clamd_socket: tcp://127.0.0.1:3310
clamav_db_dir: /srv/clamav
`))
	if err != nil {
		t.Fatal(err)
	}
	if s.maxAge != 36*time.Hour || s.requireRealtime || s.allowUnknownAge || strings.Join(s.products, "|") != "ClamAV|Sophos" ||
		s.clamdSocket != "tcp://127.0.0.1:3310" || s.clamDBDir != "/srv/clamav" {
		t.Errorf("parsed: %+v", s)
	}
	if _, err := parseParams(paramsNode(t, "{}")); err != nil {
		t.Errorf("empty mapping: %v", err)
	}
}

// 5. Invalid params are reported at the offending node.
func TestParamsErrorsPositioned(t *testing.T) {
	for _, tc := range []struct {
		src       string
		line, col int
		want      string
	}{
		{"max_signature_age: 3d\nmax_age: 3d\n", 2, 1, `unknown param "max_age"`},
		{"max_signature_age: 3x\n", 1, 20, `max_signature_age: bad duration "3x"`},
		{"products: [a]\nmax_signature_age: -1h\n", 2, 20, `bad duration "-1h"`},
		{"require_realtime: true\nmax_signature_age: 0d\n", 2, 20, "max_signature_age 0s out of range"},
		{"max_signature_age: 400d\n", 1, 20, "max_signature_age 400d out of range (1h .. 365d)"},
		{"products:\n  - ClamAV\n  - \"\"\n", 3, 5, "products: entry 2 must be a product name"},
		{"clamd_socket: clamd.sock\n", 1, 15, `clamd_socket "clamd.sock" must be an absolute socket path or tcp://host:port`},
		{"clamd_socket: tcp://localhost\n", 1, 15, "clamd_socket"},
		{"clamav_db_dir: var/lib/clamav\n", 1, 16, "clamav_db_dir"},
		{"require_realtime: maybe\n", 1, 1, "params:"},
		{"- max_signature_age\n", 1, 1, "params must be a mapping"},
	} {
		err := Check{}.ValidateParams(paramsNode(t, tc.src))
		var re *rules.Error
		if !errors.As(err, &re) {
			t.Errorf("%q: error %v (%T), want a positioned *rules.Error", tc.src, err, err)
			continue
		}
		if re.Line != tc.line || re.Col != tc.col || !strings.Contains(re.Msg, tc.want) {
			t.Errorf("%q: got %d:%d %q, want %d:%d containing %q", tc.src, re.Line, re.Col, re.Msg, tc.line, tc.col, tc.want)
		}
	}
}

// Params errors reach rule authors as FILE:LINE:COL through the rules
// loader with the agent's registry.
func TestParamsErrorThroughRulesLoader(t *testing.T) {
	src := `apiVersion: vigil/v1
id: av
name: AV
rationale: test
severity: high
category: compliance
check: antivirus
params:
  max_signature_age: 3d
  products: [ClamAV]
  clamd_socket: relative.sock
`
	_, errs := rules.LoadFiles(map[string][]byte{"av.yaml": []byte(src)}, checks.MustRegistry(Check{}))
	if len(errs) != 1 || errs[0].Error() != `av.yaml:11:17: clamd_socket "relative.sock" must be an absolute socket path or tcp://host:port` {
		t.Errorf("errors: %v", errs)
	}
}

// The default rule pack (rules/default, embedded) validates with this
// kind registered: the equivalent of `vigil-agent rules check rules/default`
// once the agent imports this package.
func TestDefaultRulePack(t *testing.T) {
	set, errs := rules.LoadFiles(rules.Defaults(), checks.MustRegistry(Check{}))
	if errs != nil {
		// Sibling checks' default rules may be present without their
		// packages linked into this test binary; only our own file
		// must be clean.
		for _, e := range errs {
			if strings.HasPrefix(e.File, "antivirus.yaml") {
				t.Errorf("antivirus.yaml: %v", e)
			}
		}
		set, errs = rules.LoadFiles(map[string][]byte{"antivirus.yaml": rules.Defaults()["antivirus.yaml"]}, checks.MustRegistry(Check{}))
		if errs != nil {
			t.Fatal(errs)
		}
	}
	var r *rules.Rule
	for i := range set.Rules {
		if set.Rules[i].ID == "antivirus-current" {
			r = &set.Rules[i]
		}
	}
	if r == nil {
		t.Fatalf("no antivirus-current rule in %d default rules", len(set.Rules))
	}
	if r.Check != "antivirus" || r.Severity != rules.High || r.Category != "compliance" || !r.Enabled ||
		r.Schedule.Interval != time.Hour || !strings.Contains(r.Rationale, "must be installed and current") ||
		!strings.Contains(r.Rationale, "up to date virus software") {
		t.Errorf("rule: %+v", r)
	}
	s, err := parseParams(r.Params)
	if err != nil || s.maxAge != 72*time.Hour || !s.requireRealtime {
		t.Errorf("params: %+v %v", s, err)
	}
}

func TestEvaluate(t *testing.T) {
	day := 24 * time.Hour
	clam := func(age time.Duration) Product {
		return Product{Name: "ClamAV", Version: "1.4.6", Source: "clamd", Running: true, SignatureVersion: "27999", SignatureDate: testNow.Add(-age)}
	}
	s := func(mod func(*settings)) settings {
		st := defaults(t)
		if mod != nil {
			mod(&st)
		}
		return st
	}
	for _, tc := range []struct {
		name     string
		products []Product
		err      error
		s        settings
		status   string
		msg      string
	}{
		{"nothing", nil, nil, s(nil), "fail", "no antivirus product found"},
		{"probe error", nil, errors.New("WMI: access denied"), s(nil), "fail", "antivirus status could not be read: WMI: access denied"},
		{"unsupported", nil, errNotSupported, s(nil), "fail", "the antivirus check is not supported on this operating system"},
		{"fresh", []Product{clam(2 * time.Hour)}, nil, s(nil), "pass", "ClamAV 1.4.6 is running, signatures 2 hours old (version 27999)"},
		{"old", []Product{clam(10*day + time.Hour)}, nil, s(nil), "fail", "ClamAV signatures are 10 days old (limit 3d)"},
		{"a day over a 12h limit", []Product{clam(day + time.Minute)}, nil, s(func(s *settings) { s.maxAge = 12 * time.Hour }), "fail", "ClamAV signatures are 24 hours old (limit 12h)"},
		{"just inside", []Product{clam(3*day - time.Minute)}, nil, s(nil), "pass", "ClamAV 1.4.6 is running, signatures 2 days old (version 27999)"},
		{"not running", []Product{{Name: "ClamAV", Source: "clamav-db", State: "clamd not answering on /x: connection refused", SignatureDate: testNow}}, nil, s(nil),
			"fail", "ClamAV protection is not running (clamd not answering on /x: connection refused)"},
		{"not running, realtime not required", []Product{{Name: "ClamAV", Source: "clamav-db", SignatureDate: testNow.Add(-time.Hour)}}, nil,
			s(func(s *settings) { s.requireRealtime = false }), "pass", "ClamAV is installed, signatures 1 hour old"},
		{"realtime off", []Product{{Name: "Windows Defender", Running: true, Realtime: ptr(false), SignatureDate: testNow}}, nil, s(nil),
			"fail", "real-time protection is off in Windows Defender"},
		{"realtime off and old", []Product{{Name: "Windows Defender", Running: true, Realtime: ptr(false), SignatureDate: testNow.Add(-5 * day)}}, nil, s(nil),
			"fail", "real-time protection is off in Windows Defender; Windows Defender signatures are 5 days old (limit 3d)"},
		{"out of date flag", []Product{{Name: "Sophos Anti-Virus", Running: true, Realtime: ptr(true), OutOfDate: ptr(true)}}, nil, s(nil),
			"fail", "Sophos Anti-Virus reports its signatures are out of date"},
		{"up to date flag", []Product{{Name: "Sophos Anti-Virus", Running: true, Realtime: ptr(true), OutOfDate: ptr(false)}}, nil, s(nil),
			"pass", "Sophos Anti-Virus is running, signatures up to date by its own report"},
		{"unknown age allowed", []Product{{Name: "CrowdStrike Falcon", Running: true}}, nil, s(nil),
			"pass", "CrowdStrike Falcon is running (signature age not reported)"},
		{"unknown age refused", []Product{{Name: "CrowdStrike Falcon", Running: true}}, nil, s(func(s *settings) { s.allowUnknownAge = false }),
			"fail", "CrowdStrike Falcon does not report the age of its signatures"},
		{"one of two passes", []Product{{Name: "Windows Defender", Running: false, State: "Passive Mode"}, clam(time.Hour)}, errors.New("partial"), s(nil),
			"pass", "ClamAV 1.4.6 is running, signatures 1 hour old (version 27999)"},
		{"both fail", []Product{{Name: "A", Running: false}, {Name: "B", Running: true, Realtime: ptr(false)}}, nil, s(nil),
			"fail", "A protection is not running; real-time protection is off in B"},
		{"not accepted", []Product{clam(time.Hour)}, nil, s(func(s *settings) { s.products = []string{"Sophos", "ESET"} }),
			"fail", "no accepted antivirus product found (found ClamAV; accepted: Sophos, ESET)"},
		{"accepted ignores case", []Product{{Name: "Sophos Anti-Virus", Running: true, OutOfDate: ptr(false)}, clam(10 * day)}, nil, s(func(s *settings) { s.products = []string{"clamav"} }),
			"fail", "ClamAV signatures are 10 days old (limit 3d)"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o := evaluate(tc.products, tc.err, tc.s, testNow)
			checkDetails(t, o)
			if o.Status != tc.status || o.Message != tc.msg {
				t.Errorf("got %s %q, want %s %q", o.Status, o.Message, tc.status, tc.msg)
			}
			if ps := o.Details["products"].([]any); len(ps) != len(tc.products) {
				t.Errorf("details products: %v", ps)
			}
			if tc.err != nil && o.Details["probe_error"] != tc.err.Error() {
				t.Errorf("probe_error: %v", o.Details["probe_error"])
			}
		})
	}
}

func TestProductDetail(t *testing.T) {
	p := Product{Name: "ClamAV", Version: "1.4.6", Source: "clamd", Running: true, Realtime: ptr(true), SignatureVersion: "27999",
		SignatureDate: testNow.Add(-90 * time.Minute), OutOfDate: ptr(false), State: "clamd answering", Extra: map[string]any{"name": "ignored", "x": "y"}}
	d := p.detail(testNow)
	want := map[string]any{"name": "ClamAV", "version": "1.4.6", "source": "clamd", "running": true, "realtime": true, "signature_version": "27999",
		"signature_date": "2026-11-23T10:30:00Z", "signature_age_hours": 1.5, "signatures_out_of_date": false, "state": "clamd answering", "x": "y"}
	if len(d) != len(want) {
		t.Errorf("detail: %v", d)
	}
	for k, v := range want {
		if d[k] != v {
			t.Errorf("%s = %v, want %v", k, d[k], v)
		}
	}
}

type probeFunc func(context.Context) ([]Product, error)

func (f probeFunc) Products(ctx context.Context) ([]Product, error) { return f(ctx) }

// A probe that errors, panics or hangs becomes a fail observation, never
// a crash or a stuck poll.
func TestObserveNeverPanicsOrHangs(t *testing.T) {
	s := defaults(t)
	now := func() time.Time { return testNow }

	o := observe(context.Background(), probeFunc(func(context.Context) ([]Product, error) {
		return nil, errors.New("Security Center: Invalid namespace")
	}), s, now)
	if o.Status != "fail" || o.Message != "antivirus status could not be read: Security Center: Invalid namespace" {
		t.Errorf("error: %s %q", o.Status, o.Message)
	}

	o = observe(context.Background(), probeFunc(func(context.Context) ([]Product, error) { panic("boom") }), s, now)
	if o.Status != "fail" || o.Message != "antivirus status could not be read: probe panicked: boom" {
		t.Errorf("panic: %s %q", o.Status, o.Message)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	release := make(chan struct{})
	defer close(release)
	start := time.Now()
	o = observe(ctx, probeFunc(func(context.Context) ([]Product, error) { <-release; return nil, nil }), s, now)
	if el := time.Since(start); el > 5*time.Second {
		t.Errorf("observe took %v with a 100ms deadline", el)
	}
	if o.Status != "fail" || !strings.HasPrefix(o.Message, "antivirus status could not be read: timed out reading antivirus status") {
		t.Errorf("hang: %s %q", o.Status, o.Message)
	}
	checkDetails(t, o)
}

func TestHumanAgeAndLimit(t *testing.T) {
	for d, want := range map[time.Duration]string{
		0: "0 minutes", time.Minute: "1 minute", 59 * time.Minute: "59 minutes", time.Hour: "1 hour", 47 * time.Hour: "47 hours",
		48 * time.Hour: "2 days", 24 * time.Hour: "24 hours", 10*24*time.Hour + 23*time.Hour: "10 days",
	} {
		if got := humanAge(d); got != want {
			t.Errorf("humanAge(%v) = %q, want %q", d, got, want)
		}
	}
	for d, want := range map[time.Duration]string{
		72 * time.Hour: "3d", 12 * time.Hour: "12h", 90 * time.Minute: "1h30m", 30 * time.Minute: "30m", 36 * time.Hour: "36h",
	} {
		if got := fmtLimit(d); got != want {
			t.Errorf("fmtLimit(%v) = %q, want %q", d, got, want)
		}
	}
}
