// Package bluetooth is the Bluetooth posture check (rule kind "bluetooth").
//
// School policy (seed 000 §5.7) says the Bluetooth function "should be
// switched off at all times" for pupils, and that staff Bluetooth should be
// "hidden" (not discoverable) or switched off. A rule's params say what its
// device group may do (allow_powered, allow_discoverable); the check reports
// one pass/fail observation per adapter, keyed by the adapter id (hci0).
//
// Sources: BlueZ over the D-Bus system bus on Linux, event-driven
// (PropertiesChanged, InterfacesAdded/Removed), falling back to rfkill in
// sysfs; system_profiler on macOS; the WinRT radio state (through Windows
// PowerShell) or Plug and Play on Windows. See docs/checks/bluetooth.md.
package bluetooth

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

// Check implements checks.Runner for the "bluetooth" kind.
type Check struct {
	log *slog.Logger
}

// New returns the check; log receives what cannot be recorded as a finding
// (a failed Emit).
func New(log *slog.Logger) Check { return Check{log: log} }

var _ checks.Runner = Check{}

// Kind implements checks.Check.
func (Check) Kind() string { return "bluetooth" }

// DefaultInterval implements checks.Poller. On Linux changes arrive as
// D-Bus signals; the interval is the safety-net re-poll (and the only
// schedule on Windows and macOS, where reading the state starts a process).
func (Check) DefaultInterval() time.Duration { return 5 * time.Minute }

// Params are the rule's params.
type Params struct {
	// AllowPowered: the adapter may be switched on (staff). False means
	// the policy is "off at all times" (pupils).
	AllowPowered bool `yaml:"allow_powered"`
	// AllowDiscoverable: a powered adapter may be visible to other
	// devices. Only meaningful together with allow_powered.
	AllowDiscoverable bool `yaml:"allow_discoverable"`
}

// ValidateParams implements checks.Check.
func (Check) ValidateParams(params *yaml.Node) error {
	_, err := parseParams(params)
	return err
}

func parseParams(n *yaml.Node) (Params, error) {
	var p Params
	if n == nil {
		return p, nil
	}
	if n.Kind == yaml.MappingNode {
		// Type errors at the value, not at the params key.
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch k.Value {
			case "allow_powered", "allow_discoverable":
				if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
					return p, checks.ParamError(v, "%s must be true or false", k.Value)
				}
			}
		}
	}
	if err := checks.DecodeParams(n, &p); err != nil {
		return p, err
	}
	if p.AllowDiscoverable && !p.AllowPowered {
		for i := 0; i+1 < len(n.Content); i += 2 {
			if n.Content[i].Value == "allow_discoverable" {
				return p, checks.ParamError(n.Content[i], "allow_discoverable: true has no effect while allow_powered is false (an adapter that is off cannot be discovered); remove it or allow powered")
			}
		}
	}
	return p, nil
}

// Adapter is one Bluetooth controller as a platform source sees it.
type Adapter struct {
	ID      string // hci0 on Linux; the radio or device name elsewhere
	Address string // may be empty
	Name    string
	Powered bool
	// Discoverable is nil when the source cannot tell (rfkill, Windows).
	Discoverable *bool
	Source       string         // bluez, rfkill, system_profiler, winrt, pnp
	Extra        map[string]any // source-specific details
}

// snapshot is what a platform read returns.
type snapshot struct {
	Adapters []Adapter
	Source   string // the source used (also for "no adapter")
	Note     string // why a fallback was used, for the no-adapter details
}

func boolp(b bool) *bool { return &b }

// evaluate turns a snapshot into observations under p: one per adapter,
// or one pass with Key "" when there is none.
func evaluate(p Params, s snapshot) []checks.Observation {
	if len(s.Adapters) == 0 {
		d := map[string]any{"source": s.Source}
		if s.Note != "" {
			d["note"] = s.Note
		}
		return []checks.Observation{{Status: "pass", Key: "", Message: "no Bluetooth adapter", Details: d}}
	}
	as := append([]Adapter(nil), s.Adapters...)
	sort.Slice(as, func(i, j int) bool { return as[i].ID < as[j].ID })
	out := make([]checks.Observation, 0, len(as))
	for _, a := range as {
		out = append(out, observe(p, a))
	}
	return out
}

func observe(p Params, a Adapter) checks.Observation {
	d := map[string]any{
		"adapter": a.ID,
		"address": a.Address,
		"powered": a.Powered,
		"source":  a.Source,
	}
	if a.Discoverable != nil {
		d["discoverable"] = *a.Discoverable
	} else {
		d["discoverable"] = nil // unknown to this source
	}
	if a.Name != "" {
		d["name"] = a.Name
	}
	for k, v := range a.Extra {
		d[k] = v
	}
	discoverable := a.Powered && a.Discoverable != nil && *a.Discoverable
	o := checks.Observation{Status: "pass", Key: a.ID, Details: d}
	switch {
	case a.Powered && !p.AllowPowered:
		o.Status = "fail"
		o.Message = fmt.Sprintf("Bluetooth adapter %s is powered on (policy: off)", a.ID)
		if discoverable {
			o.Message = fmt.Sprintf("Bluetooth adapter %s is powered on and discoverable (policy: off)", a.ID)
		}
	case discoverable && !p.AllowDiscoverable:
		o.Status = "fail"
		o.Message = fmt.Sprintf("Bluetooth adapter %s is discoverable (policy: hidden or off)", a.ID)
	case !a.Powered:
		o.Message = fmt.Sprintf("Bluetooth adapter %s is powered off", a.ID)
	case discoverable:
		o.Message = fmt.Sprintf("Bluetooth adapter %s is powered on and discoverable (allowed by policy)", a.ID)
	case a.Discoverable == nil && !p.AllowDiscoverable:
		o.Message = fmt.Sprintf("Bluetooth adapter %s is powered on (allowed by policy; discoverability not visible to %s)", a.ID, a.Source)
	case !p.AllowDiscoverable:
		o.Message = fmt.Sprintf("Bluetooth adapter %s is powered on and not discoverable (policy: hidden or off)", a.ID)
	default:
		o.Message = fmt.Sprintf("Bluetooth adapter %s is powered on (allowed by policy)", a.ID)
	}
	return o
}

// Poll implements checks.Poller: read the adapters once and emit one
// observation per adapter.
func (Check) Poll(ctx context.Context, rule *rules.Rule, emit checks.Emit) error {
	p, err := parseParams(rule.Params)
	if err != nil {
		return err
	}
	s, err := readAdapters(ctx)
	if err != nil {
		return err
	}
	_, _, err = emit(ctx, rule, evaluate(p, s)...)
	return err
}

// Run implements checks.Runner: it evaluates every rule at start, on
// every change the platform reports (BlueZ signals on Linux) and on the
// shortest rule interval as a safety net. It emits the current status of
// every adapter whenever the state differs from what it last emitted for
// that rule (the engine records posture transitions per (rule, Key)); an
// adapter that disappears gets a final pass.
func (c Check) Run(ctx context.Context, rs []*rules.Rule, emit checks.Emit) error {
	return run(ctx, rs, emit, readAdapters, watchChanges, c.DefaultInterval(), c.logger())
}

func (c Check) logger() *slog.Logger {
	if c.log == nil {
		return slog.Default()
	}
	return c.log
}

type (
	readFunc  func(context.Context) (snapshot, error)
	watchFunc func(ctx context.Context, notify func())
)

// debounce groups a burst of signals (Powered then Discoverable...) into
// one read.
const debounce = 50 * time.Millisecond

func run(ctx context.Context, rs []*rules.Rule, emit checks.Emit, read readFunc, watch watchFunc, defInterval time.Duration, log *slog.Logger) error {
	type ruleState struct {
		rule   *rules.Rule
		params Params
		last   map[string]checks.Observation // by Key
		errMsg string
	}
	var states []*ruleState
	interval := time.Duration(0)
	for _, r := range rs {
		p, err := parseParams(r.Params)
		if err != nil {
			// Validated at load; a bad rule here is skipped, not fatal to the others.
			if _, _, eerr := emit(ctx, r, checks.Observation{Status: "error", Message: fmt.Sprintf("check bluetooth: %v", err)}); eerr != nil {
				if ctx.Err() != nil {
					return nil
				}
				log.Error("bluetooth: record that a rule's params are unusable", "rule", r.ID, "params_err", err, "err", eerr)
			}
			continue
		}
		states = append(states, &ruleState{rule: r, params: p, last: map[string]checks.Observation{}})
		iv := r.Schedule.Interval
		if iv <= 0 {
			iv = defInterval
		}
		if interval == 0 || iv < interval {
			interval = iv
		}
	}
	if len(states) == 0 {
		<-ctx.Done()
		return nil
	}

	changed := make(chan struct{}, 1)
	notify := func() {
		select {
		case changed <- struct{}{}:
		default:
		}
	}
	wctx, stop := context.WithCancel(ctx)
	done := make(chan struct{})
	go func() {
		defer close(done)
		watch(wctx, notify)
	}()
	defer func() { stop(); <-done }()

	evalAll := func() {
		s, err := read(ctx)
		if ctx.Err() != nil {
			return
		}
		now := time.Now()
		for _, st := range states {
			if !st.rule.ActiveAt(now) {
				continue
			}
			if err != nil {
				msg := fmt.Sprintf("check bluetooth failed: %v", err)
				if msg != st.errMsg {
					if _, _, eerr := emit(ctx, st.rule, checks.Observation{Status: "error", Message: msg}); eerr != nil {
						// Not recorded: errMsg stays as it was, so the next
						// round tries again.
						log.Error("bluetooth: record a read failure", "rule", st.rule.ID, "read_err", err, "err", eerr)
						continue
					}
					st.errMsg = msg
				}
				continue
			}
			obs := evaluate(st.params, s)
			if st.errMsg != "" {
				// Recovered: the error was recorded under Key ""; clear it and
				// re-emit every adapter's current state.
				st.errMsg = ""
				st.last = map[string]checks.Observation{}
				if len(s.Adapters) > 0 {
					obs = append(obs, checks.Observation{Status: "pass", Key: "", Message: "Bluetooth state can be read again", Details: map[string]any{"source": s.Source}})
				}
			}
			seen := map[string]bool{}
			var out []checks.Observation
			for _, o := range obs {
				seen[o.Key] = true
				if prev, ok := st.last[o.Key]; ok && sameObs(prev, o) {
					continue
				}
				out = append(out, o)
			}
			for key, prev := range st.last {
				if seen[key] || key == "" || prev.Status == "pass" && prev.Details["gone"] == true {
					continue
				}
				out = append(out, checks.Observation{
					Status:  "pass",
					Key:     key,
					Message: fmt.Sprintf("Bluetooth adapter %s is no longer present", key),
					Details: map[string]any{"adapter": key, "gone": true, "source": s.Source},
				})
			}
			if len(out) == 0 {
				continue
			}
			if _, _, err := emit(ctx, st.rule, out...); err != nil {
				// Not recorded: leave last as is so the next round retries.
				log.Error("bluetooth: record adapter state; retrying next round", "rule", st.rule.ID, "findings", len(out), "err", err)
				continue
			}
			for _, o := range out {
				st.last[o.Key] = o
			}
		}
	}

	evalAll()
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		case <-changed:
			// Let a burst of signals settle, then read once.
			select {
			case <-ctx.Done():
				return nil
			case <-time.After(debounce):
			}
			select {
			case <-changed:
			default:
			}
		}
		evalAll()
	}
}

// sameObs reports whether two observations for one key say the same.
func sameObs(a, b checks.Observation) bool {
	if a.Status != b.Status || a.Message != b.Message || len(a.Details) != len(b.Details) {
		return false
	}
	for k, v := range a.Details {
		if w, ok := b.Details[k]; !ok || fmt.Sprint(v) != fmt.Sprint(w) {
			return false
		}
	}
	return true
}
