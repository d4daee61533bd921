// Package sessionwatch is the `session` check: it raises a finding when a
// user has had a graphical session for longer than the rule's grace period
// with no session helper attached to the service, which means nobody is
// watching that screen (the pupil killed the helper, removed it from
// autostart, or it never started). The finding clears (pass) when a helper
// attaches or the session ends.
package sessionwatch

import (
	"context"
	"fmt"
	"log/slog"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/session"
	"github.com/vigil-safeguarding/vigil/rules"
)

// Kind is the rule kind.
const Kind = "session"

// DefaultGrace is how long a graphical session may go without a helper
// before it is reported, unless a rule says otherwise: a login takes a while
// to start its autostart entries, and a helper restarting is not an
// incident. It is the one definition: the default rule pack
// (rules/default/session.yaml) leaves grace to it.
const DefaultGrace = 3 * time.Minute

// Params of a session rule.
type Params struct {
	// Grace: how long a graphical session may go without a helper before
	// it is reported (default DefaultGrace).
	Grace checks.Duration `yaml:"grace"`
	// Every: how often sessions and helpers are compared (default 15s).
	Every checks.Duration `yaml:"every"`
}

func (p *Params) defaults() {
	if p.Grace == 0 {
		p.Grace = checks.Duration(DefaultGrace)
	}
	if p.Every == 0 {
		p.Every = checks.Duration(15 * time.Second)
	}
}

// Helpers is what the check needs from the service's session endpoint
// (session.Server): the helpers attached now and the probe that lists
// graphical sessions.
type Helpers interface {
	Attached() []session.Attached
	Probe() session.SessionProbe
}

// Monitor connects the check to the session endpoint the daemon runs.
type Monitor struct {
	mu  sync.Mutex
	src Helpers
	log *slog.Logger
	now func() time.Time
}

// NewMonitor returns a Monitor with no source: until Use, the check
// reports nothing (`check --once`, where no helpers can attach).
func NewMonitor() *Monitor { return &Monitor{now: time.Now, log: slog.Default()} }

// Use sets the session endpoint to watch.
func (m *Monitor) Use(h Helpers, log *slog.Logger) {
	m.mu.Lock()
	m.src, m.log = h, log
	m.mu.Unlock()
}

func (m *Monitor) source() (Helpers, *slog.Logger) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.src, m.log
}

// Check is the session check; its source lives in the Monitor the daemon
// constructs and connects to the session server (Monitor.Use).
type Check struct {
	mon *Monitor
}

// New returns the check watching m. A zero Check (validation, `check
// --once`) has no helpers to watch and reports nothing.
func New(m *Monitor) Check { return Check{mon: m} }

var _ checks.Runner = Check{}

// Kind implements checks.Check.
func (Check) Kind() string { return Kind }

// ValidateParams implements checks.Check.
func (Check) ValidateParams(n *yaml.Node) error {
	var p Params
	if err := checks.DecodeParams(n, &p); err != nil {
		return err
	}
	if p.Grace < 0 || p.Every < 0 {
		return checks.ParamError(n, "grace and every must not be negative")
	}
	if p.Every != 0 && time.Duration(p.Every) < 100*time.Millisecond {
		return checks.ParamError(n, "every must be at least 100ms")
	}
	return nil
}

// DefaultInterval implements checks.Poller; Run keeps its own schedule.
func (Check) DefaultInterval() time.Duration { return time.Hour }

// Poll has nothing to judge without the service's helpers.
func (Check) Poll(ctx context.Context, r *rules.Rule, emit checks.Emit) error {
	var p Params
	return checks.DecodeParams(r.Params, &p)
}

// Run compares sessions and helpers every rule's Every until ctx ends.
func (c Check) Run(ctx context.Context, rs []*rules.Rule, emit checks.Emit) error {
	m := c.mon
	if m == nil {
		m = NewMonitor()
	}
	var wg sync.WaitGroup
	for _, r := range rs {
		var p Params
		if err := checks.DecodeParams(r.Params, &p); err != nil {
			if _, _, eerr := emit(ctx, r, checks.Observation{Status: "error", Key: "params", Message: err.Error()}); eerr != nil && ctx.Err() == nil {
				_, log := m.source()
				log.Error("session check: record that a rule's params are unusable", "rule", r.ID, "params_err", err, "err", eerr)
			}
			continue
		}
		p.defaults()
		wg.Go(func() { m.watch(ctx, r, p, emit) })
	}
	wg.Wait()
	return nil
}

func (m *Monitor) watch(ctx context.Context, r *rules.Rule, p Params, emit checks.Emit) {
	tr := newTracker()
	t := time.NewTicker(time.Duration(p.Every))
	defer t.Stop()
	for {
		m.step(ctx, tr, r, p, emit)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// step compares once and emits what changed.
func (m *Monitor) step(ctx context.Context, tr *tracker, r *rules.Rule, p Params, emit checks.Emit) {
	src, log := m.source()
	if src == nil {
		return
	}
	sessions, err := src.Probe().GraphicalSessions(ctx)
	if err != nil {
		log.Warn("list graphical sessions", "err", err)
		return
	}
	obs := tr.update(m.now(), time.Duration(p.Grace), sessions, src.Attached())
	if len(obs) > 0 {
		if _, _, err := emit(ctx, r, obs...); err != nil && ctx.Err() == nil {
			log.Warn("record session helper status", "err", err)
		}
	}
}

// tracker remembers, per user, since when they have had a graphical
// session without a helper, and whom it has reported failing (to clear
// them when their session ends).
type tracker struct {
	missing map[string]time.Time
	failing map[string]string // key -> username, reported as failing
}

func newTracker() *tracker {
	return &tracker{missing: map[string]time.Time{}, failing: map[string]string{}}
}

type userSessions struct {
	username string
	uid      int
	displays []string
}

func (tr *tracker) update(now time.Time, grace time.Duration, sessions []session.GraphicalSession, attached []session.Attached) []checks.Observation {
	users := map[string]*userSessions{}
	for _, s := range sessions {
		u := users[s.Key()]
		if u == nil {
			u = &userSessions{username: s.Username, uid: s.UID}
			users[s.Key()] = u
		}
		u.displays = append(u.displays, s.Display)
	}
	helped := map[string]bool{}
	for _, a := range attached {
		if a.Peer.SID != "" {
			helped[a.Peer.SID] = true
		} else {
			helped[fmt.Sprint(a.Peer.UID)] = true
		}
	}
	var obs []checks.Observation
	keys := make([]string, 0, len(users))
	for k := range users {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		u := users[k]
		// The status is reported at every step; the engine records only
		// changes (and remembers them across restarts, so a helper that is
		// attached after a restart clears a failure recorded before it).
		if helped[k] {
			delete(tr.missing, k)
			delete(tr.failing, k)
			obs = append(obs, checks.Observation{Status: "pass", Key: "user:" + u.username, User: u.username,
				Message: fmt.Sprintf("a session helper is attached for %s's graphical session", u.username)})
			continue
		}
		since, ok := tr.missing[k]
		if !ok {
			tr.missing[k] = now
			continue
		}
		if now.Sub(since) < grace {
			continue
		}
		tr.failing[k] = u.username
		sort.Strings(u.displays)
		obs = append(obs, checks.Observation{Status: "fail", Key: "user:" + u.username, User: u.username,
			Message: fmt.Sprintf("%s has a graphical session (%s) with no Vigil session helper attached for more than %s: the screen is not monitored (helper stopped, removed from autostart, or never started)",
				u.username, strings.Join(u.displays, ", "), grace),
			Details: map[string]any{"user": u.username, "uid": u.uid, "displays": anySlice(u.displays),
				"missing_since": since.UTC().Format(time.RFC3339), "grace_seconds": grace.Seconds()}})
	}
	for k, name := range tr.failing {
		if _, still := users[k]; !still {
			delete(tr.failing, k)
			obs = append(obs, checks.Observation{Status: "pass", Key: "user:" + name, User: name,
				Message: fmt.Sprintf("%s's graphical session ended", name)})
		}
	}
	for k := range tr.missing {
		if _, still := users[k]; !still {
			delete(tr.missing, k)
		}
	}
	return obs
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}
