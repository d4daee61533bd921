// Package engine runs the agent's rules: it keeps the active rule set (and
// the last good one on disk), schedules checks, and turns their
// observations into findings in the spool.
package engine

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/hostinfo"
	"github.com/vigil-safeguarding/vigil/agent/spool"
	"github.com/vigil-safeguarding/vigil/internal/contract"
	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
)

// Config for New.
type Config struct {
	DeviceID string
	Group    string
	Role     string
	// RulesDir is watched; GoodDir keeps a copy of the last set that
	// validated, used at boot when RulesDir does not.
	RulesDir string
	GoodDir  string
	// AcceptBundles: pushed bundles are written into RulesDir. False when
	// the operator pointed --rules at a folder of their own.
	AcceptBundles bool
	Spool         *spool.Spool
	// PosturePath keeps the last status per (rule, subject) across restarts.
	PosturePath string
	// DedupeWindow: an event with the same (rule, key) within it is dropped.
	DedupeWindow time.Duration
	// Checks are the kinds this agent evaluates (agent/checks/all.New);
	// rules naming another kind do not validate.
	Checks *checks.Registry
	Logger *slog.Logger
	Now    func() time.Time
}

// Engine is safe for concurrent use.
type Engine struct {
	cfg Config
	log *slog.Logger

	mu      sync.Mutex
	active  *rules.Set
	restart chan struct{}
	mem     *memory

	userMu   sync.Mutex
	user     string
	userTime time.Time

	lastSelftest atomic.Int64 // unix ns of the last selftest finding spooled
	emitMu       sync.Mutex
	emitFail     EmitFailures
}

// EmitFailures counts the Emits that could not record their findings (the
// spool refused them: disk full, I/O error), for `vigil-agent status` and
// the heartbeat: a finding that is not recorded is never silently gone.
type EmitFailures struct {
	Total     uint64    `json:"total"`
	Findings  uint64    `json:"findings"`
	LastError string    `json:"last_error,omitempty"`
	LastRule  string    `json:"last_rule,omitempty"`
	Last      time.Time `json:"last,omitzero"`
}

// New loads the initial rules: RulesDir, else the last good set, else the
// embedded defaults. A rules error at boot is itself recorded as a finding.
func New(cfg Config) (*Engine, error) {
	if cfg.Checks == nil {
		return nil, errors.New("engine: no check registry")
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.DedupeWindow <= 0 {
		cfg.DedupeWindow = time.Hour
	}
	e := &Engine{cfg: cfg, log: cfg.Logger, restart: make(chan struct{}, 1), mem: newMemory(cfg.PosturePath, cfg.DedupeWindow, cfg.Logger)}
	set, errs := e.loadDir(cfg.RulesDir)
	if len(errs) > 0 {
		e.reportRulesError(context.Background(), errs, "at start")
		if good, gerrs := e.loadDir(cfg.GoodDir); len(gerrs) == 0 && good != nil {
			set = good
		} else {
			set = nil
		}
	}
	if set == nil {
		var derrs rules.Errors
		set, derrs = rules.LoadFiles(rules.Defaults(), cfg.Checks)
		if len(derrs) > 0 {
			return nil, fmt.Errorf("embedded default rules do not validate: %w", derrs)
		}
		e.log.Info("using the embedded default rules", "hash", set.Hash)
	}
	e.setActive(set)
	return e, nil
}

// loadDir loads dir; a missing or empty dir gives (nil, nil).
func (e *Engine) loadDir(dir string) (*rules.Set, rules.Errors) {
	if dir == "" {
		return nil, nil
	}
	if entries, err := os.ReadDir(dir); err != nil || len(entries) == 0 {
		return nil, nil
	}
	set, errs := rules.LoadDir(dir, e.cfg.Checks)
	if len(errs) > 0 {
		return nil, errs
	}
	if len(set.Files) == 0 {
		return nil, nil
	}
	return set, nil
}

func (e *Engine) setActive(set *rules.Set) {
	e.mu.Lock()
	e.active = set
	e.mu.Unlock()
	select {
	case e.restart <- struct{}{}:
	default:
	}
}

// Rules returns the active set.
func (e *Engine) Rules() *rules.Set {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.active
}

// RulesHash is the active set's hash, reported in heartbeats.
func (e *Engine) RulesHash() string { return e.Rules().Hash }

// Reload re-reads RulesDir. An invalid set leaves the active rules in place
// and is reported as a finding naming file and line.
func (e *Engine) Reload(ctx context.Context) {
	set, errs := e.loadDir(e.cfg.RulesDir)
	if len(errs) > 0 {
		e.reportRulesError(ctx, errs, "after a change")
		return
	}
	if set == nil || set.Hash == e.RulesHash() {
		return
	}
	e.apply(set)
}

func (e *Engine) apply(set *rules.Set) {
	e.setActive(set)
	if err := writeTree(e.cfg.GoodDir, set.Files); err != nil {
		e.log.Error("keep copy of the last good rules", "err", err)
	}
	e.log.Info("rules applied", "hash", set.Hash, "rules", len(set.Rules))
}

// ApplyBundle validates a bundle pushed by the collector and makes it the
// active set, writing it into the rules dir so it applies at boot offline.
func (e *Engine) ApplyBundle(ctx context.Context, b *vigilv1.RulesBundle) error {
	if got := rules.HashFiles(b.GetFiles()); got != b.GetHash() {
		return fmt.Errorf("rules bundle hash mismatch: announced %s, content %s", b.GetHash(), got)
	}
	if b.GetHash() == e.RulesHash() {
		return nil
	}
	if !e.cfg.AcceptBundles {
		e.log.Info("ignoring pushed rules bundle: running with a local --rules folder", "hash", b.GetHash())
		return nil
	}
	set, errs := rules.LoadFiles(b.GetFiles(), e.cfg.Checks)
	if len(errs) > 0 {
		e.reportRulesError(ctx, errs, "in the bundle pushed by the collector")
		return fmt.Errorf("pushed rules bundle does not validate: %w", errs)
	}
	if err := writeTree(e.cfg.RulesDir, set.Files); err != nil {
		return fmt.Errorf("store pushed rules: %w", err)
	}
	e.apply(set)
	return nil
}

// writeTree replaces dir with files through a sibling temp dir and renames,
// so a watcher or a crash never sees half a rule set.
func writeTree(dir string, files map[string][]byte) error {
	tmp := dir + ".new"
	os.RemoveAll(tmp)
	if err := os.MkdirAll(tmp, 0o700); err != nil {
		return err
	}
	for name, data := range files {
		p := filepath.Join(tmp, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			return err
		}
		if err := fsutil.WriteFileAtomic(p, data, 0o600); err != nil {
			return err
		}
	}
	old := dir + ".old"
	os.RemoveAll(old)
	if err := os.Rename(dir, old); err != nil && !errors.Is(err, os.ErrNotExist) {
		return err
	}
	if err := os.Rename(tmp, dir); err != nil {
		return err
	}
	return os.RemoveAll(old)
}

// reportRulesError records a finding naming the first error's file and line.
func (e *Engine) reportRulesError(ctx context.Context, errs rules.Errors, when string) {
	e.log.Error("rules not applied; keeping the previous rules", "when", when, "errors", errs.Error())
	list := make([]any, 0, len(errs))
	for i, er := range errs {
		if i == 20 {
			break
		}
		list = append(list, er.Error())
	}
	first := errs[0]
	r := &rules.Rule{ID: "agent-rules-invalid", Version: 1, Severity: rules.Medium, Category: "agent", Check: "rules"}
	_, _, err := e.Emit(ctx, r, checks.Observation{
		Message: fmt.Sprintf("rules %s not applied, previous rules kept: %s", when, first.Error()),
		Details: map[string]any{"file": first.File, "line": first.Line, "column": first.Col, "errors": list, "error_count": len(errs)},
	})
	if err != nil {
		e.log.Error("record rules error finding", "err", err)
	}
}

// Emit is the one path from observation to spool (checks.Emit). Posture
// observations whose status did not change and events already recorded
// within the dedupe window are dropped here, so checks simply report what
// they see. Every finding is built by NewFinding, so what is spooled is what
// the collector accepts; one that still cannot be encoded is replaced by a
// finding saying so, never dropped.
//
// A failure is logged and counted here (EmitFailures), the one place every
// check's findings pass, and returned so the check can retry.
func (e *Engine) Emit(ctx context.Context, rule *rules.Rule, obs ...checks.Observation) (first, last uint64, err error) {
	first, last, err = e.emit(ctx, rule, obs...)
	if err != nil {
		e.emitFailed(rule, len(obs), err)
	}
	return first, last, err
}

func (e *Engine) emitFailed(rule *rules.Rule, n int, err error) {
	e.emitMu.Lock()
	e.emitFail.Total++
	e.emitFail.Findings += uint64(n)
	e.emitFail.LastError = contract.Truncate(err.Error(), 512)
	e.emitFail.LastRule = rule.ID
	e.emitFail.Last = e.cfg.Now()
	total := e.emitFail.Total
	e.emitMu.Unlock()
	e.log.Error("findings not recorded", "rule", rule.ID, "findings", n, "emit_failures_total", total, "err", err)
}

// EmitFailures returns the count of failed Emits since start.
func (e *Engine) EmitFailures() EmitFailures {
	e.emitMu.Lock()
	defer e.emitMu.Unlock()
	return e.emitFail
}

func (e *Engine) emit(ctx context.Context, rule *rules.Rule, obs ...checks.Observation) (first, last uint64, err error) {
	obs = validKeys(obs)
	obs, changed := e.mem.filter(rule.ID, obs, e.cfg.Now())
	if len(obs) == 0 {
		return 0, 0, nil
	}
	var hash string
	if set := e.Rules(); set != nil {
		hash = set.Hash
	}
	meta := FindingMeta{DeviceID: e.cfg.DeviceID, Group: e.cfg.Group, User: e.loggedInUser(), RulesHash: hash, Now: e.cfg.Now()}
	items := make([]spool.Item, len(obs))
	for i, o := range obs {
		f, notes := NewFinding(meta, rule, o)
		if len(notes) > 0 {
			e.log.Warn("finding adjusted to the collector's contract before spooling", "rule", rule.ID, "changes", notes)
		}
		b, err := proto.Marshal(f)
		if err != nil {
			e.log.Error("finding does not encode; recording a finding about the failure instead", "rule", rule.ID, "err", err)
			f = Replacement(meta, rule, f, fmt.Sprintf("the finding could not be encoded: %v", err))
			if b, err = proto.Marshal(f); err != nil {
				return 0, 0, fmt.Errorf("encode finding: %w", err)
			}
		}
		items[i] = spool.Item{Severity: uint8(f.Severity), Payload: b}
	}
	if first, last, err = e.cfg.Spool.Append(items); err != nil {
		return 0, 0, err
	}
	if err := e.mem.commit(changed); err != nil {
		e.log.Warn("posture state not saved; a restart may repeat a status finding", "err", err)
	}
	if rule.Check == "selftest" {
		e.lastSelftest.Store(e.cfg.Now().UnixNano())
	}
	return first, last, nil
}

// validKeys makes observation keys valid UTF-8 (escaped, so distinct keys
// stay distinct): they are kept in the posture file, which is JSON.
func validKeys(obs []checks.Observation) []checks.Observation {
	var out []checks.Observation
	for i, o := range obs {
		if utf8.ValidString(o.Key) {
			continue
		}
		if out == nil {
			out = slices.Clone(obs)
		}
		out[i].Key = contract.Escape(o.Key)
	}
	if out == nil {
		return obs
	}
	return out
}

// FindingMeta is what a finding takes from the device rather than the check.
type FindingMeta struct {
	DeviceID, Group, User, RulesHash string
	Now                              time.Time
}

// NewFinding builds the finding for one observation under rule. It is the
// one place where what checks read from the OS (paths, titles, user and
// process names, labels) enters a finding, so it is where every string is
// made valid UTF-8, with the original bytes kept escaped in the details,
// and where the finding is fitted to the collector's contract
// (contract.Sanitize): the agent never spools what the collector would
// refuse. The notes say what had to change. A finding that cannot be made
// valid becomes a Replacement saying why.
func NewFinding(meta FindingMeta, rule *rules.Rule, o checks.Observation) (*vigilv1.Finding, []string) {
	sev, cat := rule.Severity, rule.Category
	if o.Severity != 0 {
		sev = o.Severity
	}
	if o.Category != "" {
		cat = o.Category
	}
	f := &vigilv1.Finding{
		DeviceId: meta.DeviceID, Group: meta.Group, ObservedAt: timestamppb.New(meta.Now), User: meta.User,
		Check: rule.Check, RuleId: rule.ID, RuleVersion: int32(rule.Version), Severity: vigilv1.Severity(sev),
		Category: cat, Message: o.Message, Status: o.Status, Evidence: o.Evidence, EvidenceData: o.EvidenceData,
		RulesHash: meta.RulesHash, ScreenMatch: o.ScreenMatch,
	}
	if o.User != "" {
		f.User = o.User
	}
	if len(o.Details) > 0 {
		f.Details = contract.Details(o.Details)
	}
	notes := contract.Sanitize(f)
	if err := contract.Validate(f, contract.Options{EvidenceHashed: true}); err != nil {
		notes = append(notes, "replaced: "+err.Error())
		f = Replacement(meta, rule, f, fmt.Sprintf("the finding could not be made valid: %v", err))
	}
	return f, notes
}

// Replacement is the finding recorded instead of orig when orig cannot be
// made valid or encoded: same rule, severity and category, so an alert is
// not silently downgraded, with why and what is left of the message.
func Replacement(meta FindingMeta, rule *rules.Rule, orig *vigilv1.Finding, why string) *vigilv1.Finding {
	msg := contract.Escape(orig.GetMessage())
	if raw := orig.GetDetails().GetFields()["message"+contract.RawSuffix].GetStringValue(); raw != "" {
		msg = raw // the message as the check wrote it, before it was made valid
	}
	check := rule.Check
	if check == "" {
		check = "agent"
	}
	f := &vigilv1.Finding{
		DeviceId: meta.DeviceID, Group: meta.Group, ObservedAt: timestamppb.New(meta.Now), User: orig.GetUser(),
		Check: check, RuleId: rule.ID, RuleVersion: int32(rule.Version), Severity: orig.GetSeverity(),
		Category: orig.GetCategory(), RulesHash: meta.RulesHash, Status: orig.GetStatus(),
		Message: fmt.Sprintf("a finding of rule %s could not be recorded as observed: %s", rule.ID, why),
		Details: contract.Details(map[string]any{
			"finding_invalid":  why,
			"original_message": contract.Truncate(msg, 1024),
		}),
	}
	contract.Sanitize(f)
	return f
}

// loggedInUser is cached: reading utmp for every finding would cost more
// than the finding.
func (e *Engine) loggedInUser() string {
	e.userMu.Lock()
	defer e.userMu.Unlock()
	if now := e.cfg.Now(); now.Sub(e.userTime) > 30*time.Second {
		e.user, e.userTime = hostinfo.LoggedInUser(), now
	}
	return e.user
}

// ErrNoSelfTestRule means trigger-test has no enabled selftest rule to use.
var ErrNoSelfTestRule = errors.New("no enabled selftest rule applies to this device")

// TriggerTest emits n selftest findings through Emit, from the selftest
// rule ruleID, or the first enabled one when ruleID is empty (a school can
// keep a high-severity selftest rule to prove urgent alerts get through).
func (e *Engine) TriggerTest(ctx context.Context, n int, source, ruleID string) (first, last uint64, nonce string, err error) {
	if n < 1 || n > 100000 {
		return 0, 0, "", fmt.Errorf("count %d out of range 1..100000", n)
	}
	var rule *rules.Rule
	for _, r := range e.Rules().Enabled() {
		if r.Check == "selftest" && r.Applies(e.cfg.Group, e.cfg.Role) && (ruleID == "" || r.ID == ruleID) {
			rule = &r
			break
		}
	}
	if rule == nil {
		return 0, 0, "", ErrNoSelfTestRule
	}
	nb := make([]byte, 8)
	rand.Read(nb)
	nonce = hex.EncodeToString(nb)
	first, last, err = checks.SelfTest{}.Trigger(ctx, rule, e.Emit, n, source, nonce)
	return first, last, nonce, err
}

// Run schedules the active rules' checks until ctx ends, restarting them
// whenever the rule set changes, and watches RulesDir.
func (e *Engine) Run(ctx context.Context) error {
	if e.cfg.RulesDir != "" {
		os.MkdirAll(e.cfg.RulesDir, 0o700)
		go func() {
			err := rules.Watch(ctx, e.cfg.RulesDir, 300*time.Millisecond, func() { e.Reload(ctx) })
			if err != nil && ctx.Err() == nil {
				e.log.Error("watch rules dir", "dir", e.cfg.RulesDir, "err", err)
			}
		}()
	}
	for {
		runCtx, cancel := context.WithCancel(ctx)
		var wg sync.WaitGroup
		e.startChecks(runCtx, &wg)
		select {
		case <-ctx.Done():
			cancel()
			wg.Wait()
			return nil
		case <-e.restart:
			cancel()
			wg.Wait()
		}
	}
}

func (e *Engine) startChecks(ctx context.Context, wg *sync.WaitGroup) {
	byRunner := map[string][]*rules.Rule{}
	for _, r := range e.Rules().Enabled() {
		if !r.Applies(e.cfg.Group, e.cfg.Role) {
			continue
		}
		c, ok := e.cfg.Checks.Get(r.Check)
		if !ok {
			continue
		}
		switch c := c.(type) {
		case checks.Runner:
			byRunner[r.Check] = append(byRunner[r.Check], &r)
		case checks.Poller:
			wg.Add(1)
			go func(r rules.Rule) {
				defer wg.Done()
				e.poll(ctx, c, &r)
			}(r)
		}
	}
	for kind, rs := range byRunner {
		c, _ := e.cfg.Checks.Get(kind)
		wg.Add(1)
		go func() {
			defer wg.Done()
			e.runRunner(ctx, c.(checks.Runner), rs)
		}()
	}
}

// PollTimeout bounds one evaluation of a rule.
const PollTimeout = 60 * time.Second

// pollSlot serialises scheduled polls: at most one check evaluates at a
// time, so the agent's CPU use stays within one core's share however many
// rules fire together (event-driven Runners are bounded by their own
// worker pools).
var pollSlot = make(chan struct{}, 1)

// poll runs a Poller at start and then on the rule's interval, inside its
// time windows. Posture transitions are remembered, so a restart repeats
// nothing but the selftest's liveness finding, which then also marks the
// agent's start.
func (e *Engine) poll(ctx context.Context, c checks.Poller, r *rules.Rule) {
	interval := r.Schedule.Interval
	if interval <= 0 {
		interval = c.DefaultInterval()
	}
	t := time.NewTicker(interval)
	defer t.Stop()
	first := true
	for {
		if !first {
			select {
			case <-ctx.Done():
				return
			case <-t.C:
			}
		}
		first = false
		if !r.ActiveAt(e.cfg.Now()) {
			continue
		}
		select {
		case pollSlot <- struct{}{}:
		case <-ctx.Done():
			return
		}
		err := RunPoll(ctx, c, r, e.Emit)
		<-pollSlot
		if err != nil && ctx.Err() == nil {
			e.log.Warn("check failed", "rule", r.ID, "err", err)
			// A failure to record it is logged and counted by Emit; the next
			// poll fails and tries again.
			_, _, _ = e.Emit(ctx, r, ErrorObservation(r, err))
		}
	}
}

// RunPoll evaluates a rule once with PollTimeout, turning a panic into an
// error: a broken check must never take the agent down.
func RunPoll(ctx context.Context, c checks.Poller, r *rules.Rule, emit checks.Emit) (err error) {
	ctx, cancel := context.WithTimeout(ctx, PollTimeout)
	defer cancel()
	defer func() {
		if p := recover(); p != nil {
			err = fmt.Errorf("check %s panicked: %v", r.Check, p)
		}
	}()
	err = c.Poll(ctx, r, emit)
	if err == nil && ctx.Err() == context.DeadlineExceeded {
		err = fmt.Errorf("check %s timed out after %v", r.Check, PollTimeout)
	}
	return err
}

// ErrorObservation reports a failed, timed-out or panicked check. Its key
// makes repeats within the dedupe window collapse into one finding.
func ErrorObservation(r *rules.Rule, err error) checks.Observation {
	return checks.Observation{Status: "error", Key: "check-error", Message: fmt.Sprintf("check %s for rule %s failed: %v", r.Check, r.ID, err),
		Details: map[string]any{"error": err.Error()}}
}

// runRunner keeps an event-driven check running, restarting it after a
// failure or panic with a pause, and reporting each failure.
func (e *Engine) runRunner(ctx context.Context, c checks.Runner, rs []*rules.Rule) {
	for ctx.Err() == nil {
		err := func() (err error) {
			defer func() {
				if p := recover(); p != nil {
					err = fmt.Errorf("panicked: %v", p)
				}
			}()
			return c.Run(ctx, rs, e.Emit)
		}()
		if ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		e.log.Error("check stopped; restarting in 30s", "kind", c.Kind(), "err", err)
		for _, r := range rs {
			// Logged and counted by Emit when it fails; the restart after the
			// pause reports the next failure again.
			_, _, _ = e.Emit(ctx, r, ErrorObservation(r, err))
		}
		select {
		case <-ctx.Done():
		case <-time.After(30 * time.Second):
		}
	}
}
