// Package screenwatch is the `screen` check: the active window's title (and
// process) from each user's session helper is matched against the rule's
// keyword libraries; a match becomes a finding with its context and a
// downscaled screenshot encrypted on the device to the collector's
// evidence key. A rule can also enable OCR (off by default): the helper
// then reads the screen's text with tesseract, and each line is matched
// the same way.
package screenwatch

import (
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/agent/session"
	"github.com/vigil-safeguarding/vigil/internal/contract"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
	"github.com/vigil-safeguarding/vigil/rules/exclusions"
	"github.com/vigil-safeguarding/vigil/rules/match"
)

// Kind is the rule kind.
const Kind = "screen"

// Params of a screen rule.
type Params struct {
	// Libraries are globs over the bundle's paths (default keywords/*.txt:
	// the English libraries).
	Libraries []string `yaml:"libraries"`
	// Languages are the language packs loaded as well, by tag ("cy", "pl",
	// "ur"): every library in keywords/lang/<tag>/ of the bundle. None by
	// default; a school enables the languages its pupils write.
	Languages []string `yaml:"languages"`
	// Screenshot: capture evidence on a match (default true).
	Screenshot *bool `yaml:"screenshot"`
	// ScreenshotWidth: evidence is downscaled to at most this many pixels
	// wide (default 960): enough to read, less to hold.
	ScreenshotWidth int `yaml:"screenshot_width"`
	// RepeatAfter: one finding per window and term per this interval; the
	// repeats in between are counted in the next finding (default 10m).
	RepeatAfter checks.Duration `yaml:"repeat_after"`
	// OCR: also read the text on the screen (tesseract, run by the session
	// helper) and match it line by line. Off by default: it costs CPU on
	// the pupil's device (docs/screen.md) and sees everything on screen.
	OCR OCRParams `yaml:"ocr"`
}

// OCRParams configure reading the screen's text.
type OCRParams struct {
	Enabled bool `yaml:"enabled"`
	// On: "title_change" (default) reads after the active window or its
	// title changes; "interval" reads every Interval whatever the titles.
	On string `yaml:"on"`
	// Interval between reads with on: interval (default 60s).
	Interval checks.Duration `yaml:"interval"`
	// MinInterval: never two reads on one desktop closer than this
	// (default 10s): the bound on OCR's CPU cost.
	MinInterval checks.Duration `yaml:"min_interval"`
}

// OCR triggers.
const (
	OCROnTitleChange = "title_change"
	OCROnInterval    = "interval"
)

func (p *Params) defaults() {
	if len(p.Libraries) == 0 {
		p.Libraries = []string{"keywords/*.txt"}
	}
	if p.Screenshot == nil {
		t := true
		p.Screenshot = &t
	}
	if p.ScreenshotWidth == 0 {
		p.ScreenshotWidth = 960
	}
	if p.RepeatAfter == 0 {
		p.RepeatAfter = checks.Duration(10 * time.Minute)
	}
	if p.OCR.On == "" {
		p.OCR.On = OCROnTitleChange
	}
	if p.OCR.Interval == 0 {
		p.OCR.Interval = checks.Duration(time.Minute)
	}
	if p.OCR.MinInterval == 0 {
		p.OCR.MinInterval = checks.Duration(10 * time.Second)
	}
}

// Check is the screen check; its state lives in the Hub the daemon
// constructs and hands to the session server.
type Check struct {
	hub *Hub
}

// New returns the check feeding h. A zero Check validates rules and polls
// (compiles them) but matches nothing: no helper reports to it.
func New(h *Hub) Check { return Check{hub: h} }

// Kind implements checks.Check.
func (Check) Kind() string { return Kind }

// ValidateParams implements checks.Check.
func (Check) ValidateParams(n *yaml.Node) error {
	var p Params
	if err := checks.DecodeParams(n, &p); err != nil {
		return err
	}
	for _, g := range p.Libraries {
		if _, err := path.Match(g, ""); err != nil {
			return checks.ParamError(n, "libraries: bad glob %q", g)
		}
	}
	seen := map[string]bool{}
	for i, tag := range p.Languages {
		at := paramNode(n, "languages", i)
		if !match.ValidLang(tag) {
			return checks.ParamError(at, "languages: invalid language tag %q (want e.g. cy, pl, ur)", tag)
		}
		if seen[tag] {
			return checks.ParamError(at, "languages: %q listed twice", tag)
		}
		seen[tag] = true
	}
	if p.ScreenshotWidth < 0 || p.ScreenshotWidth > 4096 {
		return checks.ParamError(n, "screenshot_width must be 1..4096")
	}
	switch p.OCR.On {
	case "", OCROnTitleChange, OCROnInterval:
	default:
		return checks.ParamError(n, "ocr.on must be %s or %s", OCROnTitleChange, OCROnInterval)
	}
	if p.OCR.MinInterval != 0 && time.Duration(p.OCR.MinInterval) < time.Second {
		return checks.ParamError(n, "ocr.min_interval must be at least 1s")
	}
	if p.OCR.Interval != 0 && time.Duration(p.OCR.Interval) < time.Second {
		return checks.ParamError(n, "ocr.interval must be at least 1s")
	}
	return nil
}

// ValidateBundle implements checks.BundleChecker: the libraries and every
// language pack the rule names must be in its rules set, and a pack's
// libraries must say they are in its language (`#! lang:`), so that
// `rules check` refuses a rule that would load nothing, or the wrong pack.
func (Check) ValidateBundle(n *yaml.Node, files map[string][]byte) error {
	var p Params
	if err := checks.DecodeParams(n, &p); err != nil {
		return err
	}
	p.defaults()
	_, err := selectLibraries(n, p, files)
	return err
}

// PackDir is the folder of the language pack for tag, in a rules bundle.
func PackDir(tag string) string { return "keywords/lang/" + tag + "/" }

// selectLibraries returns the bundle paths of the libraries a rule loads:
// those matching its globs, then each language pack's, sorted. n (the
// params node, may be nil) positions errors.
func selectLibraries(n *yaml.Node, p Params, files map[string][]byte) ([]string, error) {
	var names []string
	for name := range files {
		for _, g := range p.Libraries {
			if ok, _ := path.Match(g, name); ok {
				names = append(names, name)
				break
			}
		}
	}
	if len(names) == 0 {
		return nil, checks.ParamError(paramNode(n, "libraries", -1), "no keyword library in the rules set matches %v", p.Libraries)
	}
	var errs rules.Errors
	bad := func(n *yaml.Node, format string, a ...any) {
		errs = append(errs, rules.Error{Pos: rules.Pos{Line: n.Line, Col: n.Column}, Msg: fmt.Sprintf(format, a...)})
	}
	for i, tag := range p.Languages {
		dir := PackDir(tag)
		at := paramNode(n, "languages", i)
		found := 0
		for name, data := range files {
			if !strings.HasPrefix(name, dir) || path.Ext(name) != ".txt" {
				continue
			}
			lib, lerrs := match.ParseLibrary(name, data)
			if len(lerrs) > 0 {
				errs = append(errs, lerrs...)
				continue
			}
			if lib.Lang != tag && !strings.HasPrefix(lib.Lang, tag+"-") {
				bad(at, "language pack %q: %s says it is in %q (#! lang:)", tag, name, lib.Lang)
				continue
			}
			if !slices.Contains(names, name) {
				names = append(names, name)
			}
			found++
		}
		if found == 0 {
			bad(at, "language pack %q is not in the rules set (no library in %s)", tag, dir)
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	sort.Strings(names)
	return names, nil
}

// paramNode returns the node of params key (its i-th item when i >= 0),
// or the closest node that exists, for error positions.
func paramNode(n *yaml.Node, key string, i int) *yaml.Node {
	if n == nil {
		return &yaml.Node{}
	}
	for k := 0; k+1 < len(n.Content); k += 2 {
		if n.Content[k].Value != key {
			continue
		}
		v := n.Content[k+1]
		if i >= 0 && v.Kind == yaml.SequenceNode && i < len(v.Content) {
			return v.Content[i]
		}
		return v
	}
	return n
}

// DefaultInterval implements checks.Poller; the check is event-driven.
func (Check) DefaultInterval() time.Duration { return time.Hour }

// Poll has nothing to sample: observations arrive from session helpers.
func (Check) Poll(ctx context.Context, r *rules.Rule, emit checks.Emit) error {
	_, err := compile(r)
	return err
}

// Run makes the rules active in the Hub until ctx ends.
func (c Check) Run(ctx context.Context, rs []*rules.Rule, emit checks.Emit) error {
	h := c.hub
	if h == nil {
		h = NewHub()
	}
	var active []*activeRule
	for _, r := range rs {
		ar, err := compile(r)
		if err != nil {
			h.record(ctx, emit, r, checks.Observation{Status: "error", Key: "compile", Message: fmt.Sprintf("keyword libraries for %s not usable: %v", r.ID, err)})
			continue
		}
		active = append(active, ar)
	}
	h.activate(active, emit)
	<-ctx.Done()
	h.activate(nil, nil)
	return nil
}

type activeRule struct {
	rule    *rules.Rule
	params  Params
	matcher *match.Matcher
	// excluded: the approved exclusions in the bundle (exclusions/*.json),
	// checked against the clock at every match, so an exclusion stops
	// applying at its expiry even before the collector sends a new bundle.
	excluded *exclusions.Set
}

// compile loads the rule's libraries and the approved exclusions from its
// bundle. An exclusions file that does not parse (the bundle loader has
// already refused such a bundle, so only a hand-built rule can have one) is
// ignored: monitoring goes on without exclusions rather than stopping.
func compile(r *rules.Rule) (*activeRule, error) {
	var p Params
	if err := checks.DecodeParams(r.Params, &p); err != nil {
		return nil, err
	}
	p.defaults()
	names, err := selectLibraries(r.Params, p, r.Bundle)
	if err != nil {
		return nil, err
	}
	var libs []*match.Library
	for _, n := range names {
		lib, errs := match.ParseLibrary(n, r.Bundle[n])
		if len(errs) > 0 {
			return nil, errs
		}
		libs = append(libs, lib)
	}
	m, err := match.Compile(libs...)
	if err != nil {
		return nil, err
	}
	excl, _ := exclusions.FromBundle(r.Bundle)
	return &activeRule{rule: r, params: p, matcher: m, excluded: exclusions.NewSet(excl)}, nil
}

// find returns the matches of title that no approved exclusion covers at now.
func (ar *activeRule) find(title string, now time.Time) []match.Match {
	ms := ar.matcher.Find(title)
	if ar.excluded.Len() == 0 {
		return ms
	}
	kept := ms[:0:0]
	for _, m := range ms {
		if !ar.excluded.Excluded(m.RuleID, m.Term, now) {
			kept = append(kept, m)
		}
	}
	return kept
}

// Hub receives observations from session helpers (session.Handler).
type Hub struct {
	mu        sync.Mutex
	active    []*activeRule
	emit      checks.Emit
	recipient string
	pending   map[string]*pending
	seen      map[string]*seenTerm
	// missed holds, per helper process, the last window reported while no
	// rules were active (before the first rules, during a reload), to be
	// matched once they are.
	missed map[int]missedWindow
	// helpers asks a helper to report its window again (session.Server);
	// nil: missed windows are replayed here, without a screenshot.
	helpers Helpers
	now     func() time.Time
	// EvidenceWait: a match whose screenshot has not arrived by then is
	// recorded without it. The helper reports a screenshot it cannot fit
	// at once, so this only bounds a helper that hangs or dies; it is
	// generous because grabbing, fitting and encrypting on a loaded
	// machine can take seconds. (The end-to-end tests' stalls past 10 s
	// and 30 s were not slowness: a title reported before the rules were
	// active was replayed with no helper to take its screenshot; see
	// activate.)
	EvidenceWait time.Duration
	log          *slog.Logger
}

type pending struct {
	rule  *rules.Rule
	obs   checks.Observation
	timer *time.Timer
}

type seenTerm struct {
	last    time.Time
	repeats int
}

// Helpers are the session helpers attached to the service (session.Server).
type Helpers interface {
	// ReportAgain asks the helper process pid to report its current window
	// again; false when no such helper is attached.
	ReportAgain(pid int) bool
}

// UseHelpers connects the Hub to the session server its reports come from,
// so that a window reported while no rules were active is reported again
// by its helper once they are, and gets its screenshot.
func (h *Hub) UseHelpers(hs Helpers) {
	h.mu.Lock()
	h.helpers = hs
	h.mu.Unlock()
}

// HubOption configures NewHub.
type HubOption func(*Hub)

// WithLogger sets where the Hub logs what it could not record (default
// slog.Default()).
func WithLogger(l *slog.Logger) HubOption { return func(h *Hub) { h.log = l } }

// NewHub returns an empty Hub.
func NewHub(opts ...HubOption) *Hub {
	h := &Hub{pending: map[string]*pending{}, seen: map[string]*seenTerm{}, now: time.Now, EvidenceWait: 30 * time.Second, log: slog.Default()}
	for _, o := range opts {
		o(h)
	}
	return h
}

// record emits obs and logs a failure: a match found while the spool cannot
// take it is reported (the engine counts every failed Emit), never dropped
// unseen.
func (h *Hub) record(ctx context.Context, emit checks.Emit, r *rules.Rule, obs checks.Observation) {
	if _, _, err := emit(ctx, r, obs); err != nil {
		h.log.Error("screen: record finding", "rule", r.ID, "message", obs.Message, "err", err)
	}
}

// SetRecipient sets the collector's evidence recipient (from Welcome).
func (h *Hub) SetRecipient(r string) {
	h.mu.Lock()
	h.recipient = r
	h.mu.Unlock()
}

type missedWindow struct {
	peer session.Peer
	win  screen.Window
}

func (h *Hub) activate(a []*activeRule, emit checks.Emit) {
	h.mu.Lock()
	h.active, h.emit = a, emit
	hs := h.helpers
	var replay []missedWindow
	if emit != nil {
		for _, m := range h.missed {
			replay = append(replay, m)
		}
		h.missed = nil
	}
	h.mu.Unlock()
	// A title that arrived while no rules were active is matched now. Its
	// helper is asked to report again: only a helper waiting for the
	// decision can take the screenshot a match asks for (replaying the
	// title here left a capture request nobody would answer, and the
	// finding waited EvidenceWait to be recorded without it). Replayed
	// here, without a screenshot, only when its helper has gone.
	for _, m := range replay {
		if hs != nil && hs.ReportAgain(m.peer.PID) {
			continue
		}
		h.mu.Lock()
		switch {
		case h.emit == nil: // the rules went again: kept for the next ones
			if h.missed == nil {
				h.missed = map[int]missedWindow{}
			}
			h.missed[m.peer.PID] = m
		default:
			h.matchLocked(context.Background(), m.peer, m.win, m.win.Title, false, false)
		}
		h.mu.Unlock()
	}
}

const maxSeen = 5000

// Observe matches one window's title against the active rules. At most
// one finding per (window, user, rule, term) per repeat interval; a new
// match asks the helper for a screenshot when the rule wants one and a
// recipient is known. The decision also carries the OCR settings.
func (h *Hub) Observe(ctx context.Context, p session.Peer, w screen.Window) (session.Decision, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.emit == nil {
		if w.Title != "" {
			if h.missed == nil {
				h.missed = map[int]missedWindow{}
			}
			if _, ok := h.missed[p.PID]; ok || len(h.missed) < 1000 {
				h.missed[p.PID] = missedWindow{p, w}
			}
		}
		return session.Decision{}, nil
	}
	var d session.Decision
	if w.Title != "" {
		d = h.matchLocked(ctx, p, w, w.Title, false, true)
	}
	h.ocrSettings(&d, true)
	return d, nil
}

// OCR matches the text the helper read on the screen against the rules
// that have OCR enabled, line by line, with the same deduplication as
// titles (a term already reported for this window and user, from its
// title or an earlier read, is a repeat), so a screen read every minute
// raises one finding per repeat interval. A new match asks for the frame
// that was read as its screenshot.
func (h *Hub) OCR(ctx context.Context, p session.Peer, t session.OCRText) (session.Decision, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.emit == nil {
		// Rules reloading: the next read will see the screen again.
		return session.Decision{}, nil
	}
	d := h.matchLocked(ctx, p, t.Window, t.Text, true, true)
	h.ocrSettings(&d, false)
	return d, nil
}

// ocrSettings fills d's OCR settings from the active rules that enable
// OCR: a read now (after a title change, when asked and a rule reads on
// title changes), the shortest schedule of the rules reading on an
// interval, and the longest minimum spacing of all of them.
func (h *Hub) ocrSettings(d *session.Decision, titleChange bool) {
	for _, ar := range h.active {
		o := ar.params.OCR
		if !o.Enabled {
			continue
		}
		d.OCRMinIntervalMS = max(d.OCRMinIntervalMS, time.Duration(o.MinInterval).Milliseconds())
		switch o.On {
		case OCROnInterval:
			if every := time.Duration(o.Interval).Milliseconds(); d.OCREveryMS == 0 || every < d.OCREveryMS {
				d.OCREveryMS = every
			}
		default:
			d.OCR = d.OCR || titleChange
		}
	}
}

// matchLocked matches text (a window title, or OCR text when ocr) and
// records new matches; its decision asks for a screenshot when one is
// wanted and a helper waits for it (live). h.mu is held.
func (h *Hub) matchLocked(ctx context.Context, p session.Peer, w screen.Window, text string, ocr, live bool) session.Decision {
	now := h.now()
	for _, ar := range h.active {
		if ocr && !ar.params.OCR.Enabled {
			continue
		}
		ms := ar.find(text, now)
		if len(ms) == 0 {
			continue
		}
		var fresh []match.Match
		repeats := 0
		for _, m := range ms {
			k := fmt.Sprintf("%d\x00%s\x00%s\x00%s", w.ID, p.Username, ar.rule.ID, m.Term)
			st := h.seen[k]
			if st != nil && now.Sub(st.last) < time.Duration(ar.params.RepeatAfter) {
				st.repeats++
				continue
			}
			if st != nil {
				repeats += st.repeats
			}
			if len(h.seen) >= maxSeen {
				h.pruneSeen(now, time.Duration(ar.params.RepeatAfter))
			}
			h.seen[k] = &seenTerm{last: now}
			fresh = append(fresh, m)
		}
		if len(fresh) == 0 {
			continue
		}
		var obs checks.Observation
		if ocr {
			obs = ocrObservation(p, w, text, fresh, repeats)
		} else {
			obs = observation(p, w, fresh, repeats)
		}
		if !*ar.params.Screenshot || h.recipient == "" || !live {
			if *ar.params.Screenshot && h.recipient != "" {
				obs.Details["evidence"] = "no screenshot: reported while the rules were loading, by a session helper that has gone"
			}
			go h.record(context.WithoutCancel(ctx), h.emit, ar.rule, obs)
			continue
		}
		token := randomID()
		pd := &pending{rule: ar.rule, obs: obs}
		emit := h.emit
		pd.timer = time.AfterFunc(h.EvidenceWait, func() {
			h.mu.Lock()
			_, still := h.pending[token]
			delete(h.pending, token)
			h.mu.Unlock()
			if still {
				pd.obs.Details["evidence"] = "screenshot not received in time"
				h.record(context.Background(), emit, pd.rule, pd.obs)
			}
		})
		h.pending[token] = pd
		// One screenshot per observation is enough: it shows the screen.
		return session.Decision{Capture: true, Token: token, MaxWidth: ar.params.ScreenshotWidth, Recipient: h.recipient, MaxBytes: contract.MaxEvidenceBytes}
	}
	return session.Decision{}
}

func (h *Hub) pruneSeen(now time.Time, keep time.Duration) {
	for k, st := range h.seen {
		if now.Sub(st.last) >= keep {
			delete(h.seen, k)
		}
	}
	for k := range h.seen {
		if len(h.seen) < maxSeen/2 {
			break
		}
		delete(h.seen, k)
	}
}

// Evidence attaches the helper's encrypted screenshot to its pending
// finding and records it. A screenshot the helper could not fit to the
// budget, or that breaks it, is left out and the finding says why
// (evidence_dropped): the alert is what matters.
func (h *Hub) Evidence(ctx context.Context, p session.Peer, token string, ev session.Evidence) error {
	h.mu.Lock()
	pd, ok := h.pending[token]
	delete(h.pending, token)
	emit := h.emit
	h.mu.Unlock()
	if !ok {
		return errors.New("no screenshot was asked for with this token (or it came too late)")
	}
	pd.timer.Stop()
	if emit == nil {
		return errors.New("screen rules are no longer active")
	}
	mediaType := ev.MediaType
	if mediaType == "" {
		mediaType = screen.MediaPNG
	}
	switch {
	case ev.Dropped != "":
		pd.obs.Details[contract.KeyEvidenceDropped] = ev.Dropped
	case len(ev.Data) == 0:
		pd.obs.Details[contract.KeyEvidenceDropped] = "the session helper sent an empty screenshot"
	case len(ev.Data) > contract.MaxEvidenceBytes:
		pd.obs.Details[contract.KeyEvidenceDropped] = fmt.Sprintf("screenshot of %d bytes exceeds the evidence budget of %d", len(ev.Data), contract.MaxEvidenceBytes)
	case mediaType != screen.MediaPNG && mediaType != screen.MediaJPEG:
		pd.obs.Details[contract.KeyEvidenceDropped] = fmt.Sprintf("screenshot of unsupported media type %q", contract.Truncate(mediaType, 64))
	default:
		sum := sha256.Sum256(ev.Data)
		id := randomID()
		pd.obs.Evidence = []*vigilv1.EvidenceRef{{Id: id, MediaType: mediaType, Sha256: hex.EncodeToString(sum[:]), Size: int64(len(ev.Data))}}
		pd.obs.EvidenceData = []*vigilv1.EvidenceBlob{{Id: id, Data: ev.Data}}
		if pd.obs.ScreenMatch != nil {
			pd.obs.ScreenMatch.EvidenceIds = []string{id}
		}
	}
	if _, _, err := emit(context.WithoutCancel(ctx), pd.rule, pd.obs); err != nil {
		h.log.Error("screen: record finding with its screenshot", "rule", pd.rule.ID, "message", pd.obs.Message, "err", err)
		return fmt.Errorf("record finding: %w", err)
	}
	return nil
}

// observation describes the matches: the most severe decides severity and
// category; every match is listed with its span in the title.
func observation(p session.Peer, w screen.Window, ms []match.Match, repeats int) checks.Observation {
	top := ms[0]
	list := make([]any, 0, len(ms))
	for _, m := range ms {
		if m.Severity > top.Severity {
			top = m
		}
		list = append(list, withHelp(map[string]any{"rule_id": m.RuleID, "category": m.Category, "severity": m.Severity.String(), "term": m.Term, "start": m.Start, "end": m.End, "text": m.Text}, m))
	}
	details := map[string]any{
		"source": "window_title", "title": w.Title, "process": w.Process, "window_class": w.Class, "pid": w.PID,
		"term": top.Term, "library": top.RuleID, "matches": list, "context": contextWindow(w.Title, top.Start, top.End),
	}
	if repeats > 0 {
		details["repeats_since_last"] = repeats
	}
	withHelp(details, top)
	keepRaw(details, w)
	return checks.Observation{
		Message:  fmt.Sprintf("%s term %q in the active window title (%s)", top.Category, top.Term, w.Process),
		Severity: top.Severity, Category: top.Category, User: p.Username, Details: details,
		ScreenMatch: &vigilv1.ScreenMatch{Term: top.Term, Library: top.RuleID, Category: top.Category,
			Context: contextWindow(w.Title, top.Start, top.End), WindowTitle: w.Title, Process: w.Process,
			User: p.Username, Source: "window_title"},
	}
}

// ocrObservation describes matches in OCR text: each with the line it was
// read in (its context); the window is the one that was active.
func ocrObservation(p session.Peer, w screen.Window, text string, ms []match.Match, repeats int) checks.Observation {
	top := ms[0]
	list := make([]any, 0, len(ms))
	for _, m := range ms {
		if m.Severity > top.Severity {
			top = m
		}
		line, start, end := lineOf(text, m.Start, m.End)
		list = append(list, withHelp(map[string]any{"rule_id": m.RuleID, "category": m.Category, "severity": m.Severity.String(), "term": m.Term, "start": start, "end": end, "text": m.Text, "context": contextWindow(line, start, end)}, m))
	}
	line, start, end := lineOf(text, top.Start, top.End)
	details := map[string]any{
		"source": "ocr", "title": w.Title, "process": w.Process, "window_class": w.Class, "pid": w.PID,
		"term": top.Term, "library": top.RuleID, "matches": list, "context": contextWindow(line, start, end),
	}
	if repeats > 0 {
		details["repeats_since_last"] = repeats
	}
	withHelp(details, top)
	keepRaw(details, w)
	return checks.Observation{
		Message:  fmt.Sprintf("%s term %q in text on the screen (OCR; active window: %s)", top.Category, top.Term, w.Process),
		Severity: top.Severity, Category: top.Category, User: p.Username, Details: details,
		ScreenMatch: &vigilv1.ScreenMatch{Term: top.Term, Library: top.RuleID, Category: top.Category,
			Context: contextWindow(line, start, end), WindowTitle: w.Title, Process: w.Process,
			User: p.Username, Source: "ocr"},
	}
}

// Details keys of a match whose severity a help-seeking phrase near it
// lowered (docs/screen.md): the phrase as the library writes it, and the
// term's severity without it.
const (
	KeyHelpContext        = "help_context"
	KeySeverityBeforeHelp = "severity_before_help"
)

// withHelp records in d why m's severity was lowered, if it was, and
// returns d.
func withHelp(d map[string]any, m match.Match) map[string]any {
	if m.Help != "" {
		d[KeyHelpContext] = m.Help
		d[KeySeverityBeforeHelp] = m.BaseSeverity.String()
	}
	return d
}

// keepRaw records the helper's escaped originals of a title or process
// name that were not valid UTF-8 (JSON on the session socket replaced
// their bad bytes).
func keepRaw(details map[string]any, w screen.Window) {
	if w.TitleRaw != "" {
		details["title"+contract.RawSuffix] = w.TitleRaw
	}
	if w.ProcessRaw != "" {
		details["process"+contract.RawSuffix] = w.ProcessRaw
	}
}

// lineOf returns the line of text holding [start, end) and the span's
// offsets in it (the matcher never matches across a line break).
func lineOf(text string, start, end int) (string, int, int) {
	from := strings.LastIndexByte(text[:start], '\n') + 1
	to := len(text)
	if i := strings.IndexByte(text[end:], '\n'); i >= 0 {
		to = end + i
	}
	return text[from:to], start - from, end - from
}

// contextWindow keeps at most 80 bytes either side of the match.
func contextWindow(s string, start, end int) string {
	from, to := max(0, start-80), min(len(s), end+80)
	for from > 0 && !validStart(s[from]) {
		from--
	}
	for to < len(s) && !validStart(s[to]) {
		to++
	}
	return s[from:to]
}

func validStart(b byte) bool { return b < 0x80 || b >= 0xC0 }

func randomID() string {
	b := make([]byte, 16)
	rand.Read(b)
	return hex.EncodeToString(b)
}
