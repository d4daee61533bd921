package bluetooth

import (
	"context"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

// recorder is a checks.Emit that keeps every observation.
type recorder struct {
	mu  sync.Mutex
	obs []checks.Observation
	ch  chan checks.Observation
}

func newRecorder() *recorder { return &recorder{ch: make(chan checks.Observation, 256)} }

func (r *recorder) emit(ctx context.Context, rule *rules.Rule, obs ...checks.Observation) (uint64, uint64, error) {
	r.mu.Lock()
	r.obs = append(r.obs, obs...)
	r.mu.Unlock()
	for _, o := range obs {
		select {
		case r.ch <- o:
		default:
		}
	}
	return 1, uint64(len(obs)), nil
}

func (r *recorder) all() []checks.Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]checks.Observation(nil), r.obs...)
}

// waitFor returns the first observation matching ok, or fails after d.
// waitFor waits for an observation that ok accepts. d is raised to 30 s:
// it is a liveness bound (a busy 2-core CI machine delays D-Bus signals and
// timers by seconds); latencies are logged by the tests that measure them.
func (r *recorder) waitFor(t *testing.T, d time.Duration, what string, ok func(checks.Observation) bool) checks.Observation {
	t.Helper()
	d = max(d, 30*time.Second)
	timer := time.NewTimer(d)
	defer timer.Stop()
	for {
		select {
		case o := <-r.ch:
			if ok(o) {
				return o
			}
		case <-timer.C:
			t.Fatalf("no %s within %v; got %+v", what, d, r.all())
			return checks.Observation{}
		}
	}
}

// loadRule loads the named rule from the embedded default pack, parsing
// only this package's file (other kinds are not registered here).
func loadRule(t *testing.T, id string) *rules.Rule {
	t.Helper()
	data, ok := rules.Defaults()["bluetooth.yaml"]
	if !ok {
		t.Fatal("rules/default/bluetooth.yaml is not in the default pack")
	}
	set, errs := rules.LoadFiles(map[string][]byte{"bluetooth.yaml": data}, checks.MustRegistry(Check{}))
	if len(errs) > 0 {
		t.Fatalf("default bluetooth rules: %v", errs)
	}
	for i := range set.Rules {
		if set.Rules[i].ID == id {
			return &set.Rules[i]
		}
	}
	t.Fatalf("no rule %s", id)
	return nil
}

func TestDefaultPack(t *testing.T) {
	data := rules.Defaults()["bluetooth.yaml"]
	set, errs := rules.LoadFiles(map[string][]byte{"bluetooth.yaml": data}, checks.MustRegistry(Check{}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(set.Rules) != 2 {
		t.Fatalf("want 2 rules, got %d", len(set.Rules))
	}
	pupils, staff := loadRule(t, "bluetooth-pupils"), loadRule(t, "bluetooth-staff")
	for _, r := range []*rules.Rule{pupils, staff} {
		if r.Check != "bluetooth" || r.Severity != rules.Medium || r.Category != "compliance" || !r.Enabled {
			t.Errorf("%s: unexpected %+v", r.ID, r)
		}
		if !strings.Contains(r.Rationale, "5.7") {
			t.Errorf("%s: rationale does not cite the policy: %q", r.ID, r.Rationale)
		}
	}
	if !pupils.Applies("pupils", "pupil") || pupils.Applies("staff", "staff") {
		t.Error("bluetooth-pupils scope")
	}
	if !staff.Applies("staff", "staff") || staff.Applies("pupils", "pupil") {
		t.Error("bluetooth-staff scope")
	}
	pp, _ := parseParams(pupils.Params)
	sp, _ := parseParams(staff.Params)
	if pp != (Params{}) || sp != (Params{AllowPowered: true}) {
		t.Errorf("params: pupils %+v staff %+v", pp, sp)
	}
}

func TestParamsErrors(t *testing.T) {
	for _, tc := range []struct {
		src       string
		line, col int
		msg       string
	}{
		{"allow_powered: true\nallow_discovrable: false\n", 2, 1, `unknown param "allow_discovrable"`},
		{"allow_powered: maybe\n", 1, 16, "allow_powered must be true or false"},
		{"allow_powered: true\nallow_discoverable: [x]\n", 2, 21, "allow_discoverable must be true or false"},
		{"allow_discoverable: true\n", 1, 1, "has no effect while allow_powered is false"},
		{"- a\n", 1, 1, "params must be a mapping"},
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(tc.src), &doc); err != nil {
			t.Fatal(err)
		}
		err := Check{}.ValidateParams(doc.Content[0])
		var re *rules.Error
		if !errors.As(err, &re) {
			t.Errorf("%q: want *rules.Error, got %v", tc.src, err)
			continue
		}
		if re.Line != tc.line || re.Col != tc.col || !strings.Contains(re.Msg, tc.msg) {
			t.Errorf("%q: got %d:%d %q, want %d:%d %q", tc.src, re.Line, re.Col, re.Msg, tc.line, tc.col, tc.msg)
		}
	}
	// Through the rules loader the error carries file:line:col.
	src := "apiVersion: vigil/v1\nid: bt\nname: n\nrationale: r\nseverity: medium\ncategory: compliance\ncheck: bluetooth\nparams:\n  allow_powered: yes please\n"
	_, errs := rules.LoadFiles(map[string][]byte{"bt.yaml": []byte(src)}, checks.MustRegistry(Check{}))
	if len(errs) != 1 || errs[0].Error() != "bt.yaml:9:18: allow_powered must be true or false" {
		t.Errorf("loader error: %v", errs)
	}
	if err := (Check{}).ValidateParams(nil); err != nil {
		t.Errorf("absent params: %v", err)
	}
}

func TestEvaluate(t *testing.T) {
	pupils, staff, open := Params{}, Params{AllowPowered: true}, Params{AllowPowered: true, AllowDiscoverable: true}
	on := Adapter{ID: "hci0", Address: "00:01:02:03:04:05", Powered: true, Discoverable: boolp(false), Source: "bluez"}
	onDisc := on
	onDisc.Discoverable = boolp(true)
	off := on
	off.Powered = false
	unknown := Adapter{ID: "hci0", Powered: true, Source: "rfkill"}
	for _, tc := range []struct {
		name   string
		p      Params
		a      Adapter
		status string
		msg    string
	}{
		{"pupil on", pupils, on, "fail", "Bluetooth adapter hci0 is powered on (policy: off)"},
		{"pupil on discoverable", pupils, onDisc, "fail", "Bluetooth adapter hci0 is powered on and discoverable (policy: off)"},
		{"pupil off", pupils, off, "pass", "Bluetooth adapter hci0 is powered off"},
		{"staff hidden", staff, on, "pass", "Bluetooth adapter hci0 is powered on and not discoverable (policy: hidden or off)"},
		{"staff discoverable", staff, onDisc, "fail", "Bluetooth adapter hci0 is discoverable (policy: hidden or off)"},
		{"staff off", staff, off, "pass", "Bluetooth adapter hci0 is powered off"},
		{"staff unknown discoverability", staff, unknown, "pass", "discoverability not visible to rfkill"},
		{"open discoverable", open, onDisc, "pass", "allowed by policy"},
	} {
		obs := evaluate(tc.p, snapshot{Adapters: []Adapter{tc.a}, Source: tc.a.Source})
		if len(obs) != 1 {
			t.Fatalf("%s: %d observations", tc.name, len(obs))
		}
		o := obs[0]
		if o.Status != tc.status || !strings.Contains(o.Message, tc.msg) || o.Key != "hci0" {
			t.Errorf("%s: got %s %q (key %q), want %s %q", tc.name, o.Status, o.Message, o.Key, tc.status, tc.msg)
		}
		for _, k := range []string{"adapter", "address", "powered", "discoverable", "source"} {
			if _, ok := o.Details[k]; !ok {
				t.Errorf("%s: details lack %s: %v", tc.name, k, o.Details)
			}
		}
	}
	obs := evaluate(pupils, snapshot{Source: "bluez"})
	if len(obs) != 1 || obs[0].Status != "pass" || obs[0].Key != "" || obs[0].Message != "no Bluetooth adapter" {
		t.Errorf("no adapter: %+v", obs)
	}
}

func TestRfkillFixture(t *testing.T) {
	as, err := readRfkill(filepath.Join("testdata", "rfkill"))
	if err != nil {
		t.Fatal(err)
	}
	want := map[string]bool{"hci0": true, "hci1": false, "hci2": false} // unblocked, soft-, hard-blocked; wlan ignored
	if len(as) != len(want) {
		t.Fatalf("got %+v", as)
	}
	for _, a := range as {
		if p, ok := want[a.ID]; !ok || a.Powered != p || a.Discoverable != nil || a.Source != "rfkill" {
			t.Errorf("adapter %+v", a)
		}
	}
	obs := evaluate(Params{}, snapshot{Adapters: as, Source: "rfkill"})
	if obs[0].Status != "fail" || obs[1].Status != "pass" || obs[2].Status != "pass" || obs[2].Details["hard_blocked"] != true {
		t.Errorf("observations %+v", obs)
	}
	// No rfkill at all (like this machine): no adapters, not an error.
	as, err = readRfkill(filepath.Join(t.TempDir(), "absent"))
	if err != nil || len(as) != 0 {
		t.Errorf("absent dir: %v %v", as, err)
	}
}

func readFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestMacOSFixtures(t *testing.T) {
	for _, tc := range []struct {
		file                  string
		powered, discoverable bool
		address               string
		pupil, staff          string
	}{
		{"system_profiler_macos14.json", true, false, "A4:83:E7:5C:21:0F", "fail", "pass"},
		{"system_profiler_macos14_off.json", false, false, "A4:83:E7:5C:21:0F", "pass", "pass"},
		{"system_profiler_macos11.json", true, true, "8C:85:90:1A:2B:3C", "fail", "fail"},
	} {
		s, err := parseSystemProfiler(readFixture(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if len(s.Adapters) != 1 {
			t.Fatalf("%s: %+v", tc.file, s)
		}
		a := s.Adapters[0]
		if a.ID != "controller" || a.Powered != tc.powered || a.Discoverable == nil || *a.Discoverable != tc.discoverable || a.Address != tc.address {
			t.Errorf("%s: %+v", tc.file, a)
		}
		if got := evaluate(Params{}, s)[0].Status; got != tc.pupil {
			t.Errorf("%s pupils: %s", tc.file, got)
		}
		if got := evaluate(Params{AllowPowered: true}, s)[0].Status; got != tc.staff {
			t.Errorf("%s staff: %s", tc.file, got)
		}
	}
	if _, err := parseSystemProfiler([]byte(`{"SPBluetoothDataType":[{"controller_properties":{"controller_state":"attrib_weird"}}]}`)); err == nil {
		t.Error("unknown power state accepted")
	}
	if s, err := parseSystemProfiler([]byte(`{"SPBluetoothDataType":[]}`)); err != nil || len(s.Adapters) != 0 {
		t.Errorf("no controller: %+v %v", s, err)
	}
	if _, err := parseSystemProfiler([]byte(`not json`)); err == nil {
		t.Error("garbage accepted")
	}
}

func TestWindowsFixtures(t *testing.T) {
	for _, tc := range []struct {
		file    string
		source  string
		ids     []string
		powered []bool
	}{
		// WinRT radio (single object, as ConvertTo-Json unwraps it); PnP ignored.
		{"windows_winrt_on.json", "winrt", []string{"radio0"}, []bool{true}},
		{"windows_winrt_off.json", "winrt", []string{"radio0"}, []bool{false}},
		// No WinRT: the PnP radio (USB\...) disabled in Device Manager; enumerators skipped.
		{"windows_pnp_disabled.json", "pnp", []string{`USB\VID_0BDA&PID_B009\00E04C000001`}, []bool{false}},
		{"windows_none.json", "pnp", nil, nil},
	} {
		s, err := parseWindows(readFixture(t, tc.file))
		if err != nil {
			t.Fatalf("%s: %v", tc.file, err)
		}
		if s.Source != tc.source || len(s.Adapters) != len(tc.ids) {
			t.Fatalf("%s: %+v", tc.file, s)
		}
		for i, a := range s.Adapters {
			if a.ID != tc.ids[i] || a.Powered != tc.powered[i] || a.Discoverable != nil {
				t.Errorf("%s: adapter %+v", tc.file, a)
			}
		}
		obs := evaluate(Params{}, s)
		if len(tc.ids) == 0 && obs[0].Message != "no Bluetooth adapter" {
			t.Errorf("%s: %+v", tc.file, obs)
		}
	}
	// Both sources failing is an error (the engine reports it), not a pass.
	if _, err := parseWindows([]byte(`{"radios":[],"radioError":"boom","devices":[],"deviceError":"Access denied"}`)); err == nil {
		t.Error("double failure accepted")
	}
	// The script is what produces these fixtures; keep it parseable JSON-wise.
	if !strings.Contains(windowsScript, "GetRadiosAsync") || !strings.Contains(windowsScript, "Get-PnpDevice -Class Bluetooth") {
		t.Error("script changed")
	}
}

// TestRunTransitions drives Run with a scripted source: only changes are
// emitted, a vanished adapter gets a final pass, read errors are reported once.
func TestRunTransitions(t *testing.T) {
	var mu sync.Mutex
	cur := snapshot{Source: "bluez", Adapters: []Adapter{{ID: "hci0", Powered: true, Discoverable: boolp(false), Source: "bluez"}}}
	var readErr error
	read := func(context.Context) (snapshot, error) {
		mu.Lock()
		defer mu.Unlock()
		return cur, readErr
	}
	var notifyMu sync.Mutex
	var notify func()
	ready := make(chan struct{})
	watch := func(ctx context.Context, n func()) {
		notifyMu.Lock()
		notify = n
		notifyMu.Unlock()
		close(ready)
		<-ctx.Done()
	}
	set := func(s snapshot, err error) {
		mu.Lock()
		cur, readErr = s, err
		mu.Unlock()
		notifyMu.Lock()
		notify()
		notifyMu.Unlock()
	}
	rule := loadRule(t, "bluetooth-pupils")
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []*rules.Rule{rule}, rec.emit, read, watch, time.Hour, slog.Default()) }()
	<-ready
	rec.waitFor(t, 2*time.Second, "initial fail", func(o checks.Observation) bool { return o.Key == "hci0" && o.Status == "fail" })
	set(cur, nil) // same state: nothing new
	set(snapshot{Source: "bluez", Adapters: []Adapter{{ID: "hci0", Powered: false, Discoverable: boolp(false), Source: "bluez"}}}, nil)
	rec.waitFor(t, 2*time.Second, "pass", func(o checks.Observation) bool { return o.Key == "hci0" && o.Status == "pass" })
	set(snapshot{Source: "bluez"}, nil)
	rec.waitFor(t, 2*time.Second, "gone", func(o checks.Observation) bool { return o.Key == "hci0" && o.Details["gone"] == true })
	set(snapshot{}, errors.New("bus down"))
	set(snapshot{}, errors.New("bus down"))
	rec.waitFor(t, 2*time.Second, "error", func(o checks.Observation) bool { return o.Status == "error" })
	set(snapshot{Source: "bluez", Adapters: []Adapter{{ID: "hci0", Powered: false, Discoverable: boolp(false), Source: "bluez"}}}, nil)
	rec.waitFor(t, 2*time.Second, "recovery", func(o checks.Observation) bool { return o.Key == "" && o.Status == "pass" })
	time.Sleep(200 * time.Millisecond)
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatal(err)
		}
	case <-time.After(2 * time.Second):
		t.Fatal("Run did not return after cancel")
	}
	var fails, errs int
	for _, o := range rec.all() {
		switch o.Status {
		case "fail":
			fails++
		case "error":
			errs++
		}
	}
	if fails != 1 || errs != 1 {
		t.Errorf("want 1 fail and 1 error, got %d and %d: %+v", fails, errs, rec.all())
	}
}

// TestRunRetriesFailedEmit: a read failure whose finding could not be
// recorded (Emit failed: disk full) is reported again on the next round
// instead of being remembered as reported and lost.
func TestRunRetriesFailedEmit(t *testing.T) {
	read := func(context.Context) (snapshot, error) { return snapshot{}, errors.New("bus down") }
	var notifyMu sync.Mutex
	var notify func()
	ready := make(chan struct{})
	watch := func(ctx context.Context, n func()) {
		notifyMu.Lock()
		notify = n
		notifyMu.Unlock()
		close(ready)
		<-ctx.Done()
	}
	rule := loadRule(t, "bluetooth-pupils")
	rec := newRecorder()
	var mu sync.Mutex
	calls := 0
	emit := func(ctx context.Context, r *rules.Rule, obs ...checks.Observation) (uint64, uint64, error) {
		mu.Lock()
		calls++
		n := calls
		mu.Unlock()
		if n == 1 {
			return 0, 0, errors.New("spool: disk full")
		}
		return rec.emit(ctx, r, obs...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() { done <- run(ctx, []*rules.Rule{rule}, emit, read, watch, time.Hour, slog.Default()) }()
	<-ready
	// The first round's emit fails; a change notification starts a second.
	deadline := time.Now().Add(30 * time.Second)
	for {
		mu.Lock()
		n := calls
		mu.Unlock()
		if n >= 1 || time.Now().After(deadline) {
			break
		}
		time.Sleep(10 * time.Millisecond)
	}
	notifyMu.Lock()
	notify()
	notifyMu.Unlock()
	rec.waitFor(t, 30*time.Second, "error finding after the failed emit", func(o checks.Observation) bool { return o.Status == "error" })
	cancel()
	<-done
}
