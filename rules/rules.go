// Package rules implements Vigil's versioned rule-file format: parsing and
// strict validation of YAML rule files, rule sets and their bundles (the exact
// file bytes plus a stable hash), the embedded default pack, and a debounced
// directory watcher used by the agent to reload rules.
//
// Rule files are untrusted input (the agent validates them with
// `vigil-agent rules check DIR`), so parsing never panics and is bounded in
// time and memory: files are size-limited, must be valid UTF-8, YAML
// anchors and aliases are rejected outright, and nesting is limited to
// MaxDepth levels. Every reported problem carries a file:line:col position.
package rules

import (
	"errors"
	"fmt"
	"strings"
	"time"

	"gopkg.in/yaml.v3"
)

// APIVersion is the only accepted value of a rule document's apiVersion key.
const APIVersion = "vigil/v1"

// Limits applied to untrusted rule input.
const (
	MaxFileSize  = 256 << 10 // bytes per rule file: yaml.v3 builds a whole tree, ~160 bytes per byte of hostile input
	MaxFiles     = 2000      // rule files per directory or bundle
	MaxTotalSize = 16 << 20  // bytes across all rule files of a directory or bundle
	MaxDepth     = 32        // nesting levels of YAML collections in one document
)

// Severity of a rule's finding. The zero value means unspecified.
type Severity uint8

// Severities, in increasing order.
const (
	Info Severity = iota + 1
	Low
	Medium
	High
	Critical
)

var severityNames = [...]string{"unspecified", "info", "low", "medium", "high", "critical"}

// String returns the lower-case name used in rule files ("unspecified" for 0).
func (s Severity) String() string {
	if int(s) < len(severityNames) {
		return severityNames[s]
	}
	return fmt.Sprintf("Severity(%d)", uint8(s))
}

// ParseSeverity parses a severity name as written in rule files
// (info, low, medium, high, critical).
func ParseSeverity(s string) (Severity, bool) {
	for i := Info; i <= Critical; i++ {
		if severityNames[i] == s {
			return i, true
		}
	}
	return 0, false
}

// MarshalText implements encoding.TextMarshaler.
func (s Severity) MarshalText() ([]byte, error) {
	if s > Critical {
		return nil, fmt.Errorf("rules: invalid severity %d", uint8(s))
	}
	return []byte(s.String()), nil
}

// UnmarshalText implements encoding.TextUnmarshaler.
func (s *Severity) UnmarshalText(b []byte) error {
	if string(b) == "unspecified" {
		*s = 0
		return nil
	}
	v, ok := ParseSeverity(string(b))
	if !ok {
		return fmt.Errorf("rules: unknown severity %q", b)
	}
	*s = v
	return nil
}

// Pos is a position in a rule file. Line and Col are 1-based; Line 0 means
// the problem concerns the file (or directory) as a whole.
type Pos struct {
	File      string
	Line, Col int
}

// String formats the position as "FILE:LINE:COL" (or just FILE when Line is 0).
func (p Pos) String() string {
	if p.Line <= 0 {
		return p.File
	}
	if p.File == "" {
		return fmt.Sprintf("%d:%d", p.Line, p.Col)
	}
	return fmt.Sprintf("%s:%d:%d", p.File, p.Line, p.Col)
}

// Error is one problem found in rule input.
type Error struct {
	Pos
	Msg string
}

// Error returns "FILE:LINE:COL: msg" ("FILE: msg" for whole-file problems).
func (e Error) Error() string {
	p := e.Pos.String()
	if p == "" {
		return e.Msg
	}
	return p + ": " + e.Msg
}

// Errors is a list of problems; it implements error with one problem per line.
// Functions in this package return a nil Errors when there is no problem.
type Errors []Error

func (es Errors) Error() string {
	lines := make([]string, len(es))
	for i, e := range es {
		lines[i] = e.Error()
	}
	return strings.Join(lines, "\n")
}

// Err returns es as an error, or nil if es is empty (avoiding the typed-nil
// interface pitfall).
func (es Errors) Err() error {
	if len(es) == 0 {
		return nil
	}
	return es
}

// Window is a weekly time window. From and To are minutes since midnight;
// To may be less than From for an overnight window, which then belongs to
// the day it starts on (Days[Fri] with 22:00-06:00 covers Friday 22:00 to
// Saturday 06:00). To may be 1440 ("24:00"). A window with no day set is
// never active; the parser sets every day when "days" is absent.
type Window struct {
	Days     [7]bool // indexed by time.Weekday
	From, To int     // minutes since midnight
}

// Contains reports whether minute-of-day m on weekday wd is inside w.
func (w Window) Contains(wd time.Weekday, m int) bool {
	if wd < time.Sunday || wd > time.Saturday {
		return false
	}
	if w.From < w.To {
		return w.Days[wd] && m >= w.From && m < w.To
	}
	if w.From == w.To {
		return false
	}
	// Overnight: the part after midnight belongs to the previous day.
	if m >= w.From {
		return w.Days[wd]
	}
	if m < w.To {
		return w.Days[(wd+6)%7]
	}
	return false
}

// Schedule says how often a rule's check runs and when the rule is active.
type Schedule struct {
	Interval time.Duration // 0 = the agent's default
	Windows  []Window      // empty = always active
}

// Scope limits which devices and users a rule applies to.
type Scope struct {
	Groups []string // device groups; empty = all groups
	Roles  []string // user roles; empty = all roles
}

// Roles allowed in a rule's scope.
var Roles = []string{"pupil", "staff", "headteacher", "guest"}

// Rule is one validated rule document.
type Rule struct {
	ID        string
	Version   int
	Name      string
	Rationale string
	Severity  Severity
	Category  string
	Check     string
	Enabled   bool
	Scope     Scope
	Schedule  Schedule
	// Params is the params mapping node (nil if absent or null). It keeps
	// positions for the check's own validation. It never contains anchors
	// or aliases.
	Params *yaml.Node
	// Pos is the position of the rule document (its first key).
	Pos Pos
	// Bundle is every file of the set the rule came from (shared, read
	// only), so a check can read data files such as keyword libraries.
	Bundle map[string][]byte
}

// Applies reports whether the rule's scope matches a device group and user
// role. Empty scope lists match everything.
func (r *Rule) Applies(group, role string) bool {
	return matchList(r.Scope.Groups, group) && matchList(r.Scope.Roles, role)
}

func matchList(list []string, v string) bool {
	if len(list) == 0 {
		return true
	}
	for _, s := range list {
		if s == v {
			return true
		}
	}
	return false
}

// ActiveAt reports whether t falls inside any of the rule's schedule windows,
// evaluated in t's location. A rule without windows is always active.
func (r *Rule) ActiveAt(t time.Time) bool {
	if len(r.Schedule.Windows) == 0 {
		return true
	}
	wd, m := t.Weekday(), t.Hour()*60+t.Minute()
	for _, w := range r.Schedule.Windows {
		if w.Contains(wd, m) {
			return true
		}
	}
	return false
}

// Kinds validates rule kinds (the "check" key) and their params. It is
// implemented by the agent's check registry.
//
// ValidateParams receives the params mapping node (nil when absent). It may
// return *Error, Error or Errors carrying positions (File is filled in by the
// caller when empty, a missing Line falls back to the params key) or a plain
// error, which is reported at the params key (or at the check value when
// params is absent). A non-nil but empty Errors counts as no error.
type Kinds interface {
	Known(kind string) bool
	ValidateParams(kind string, params *yaml.Node) error
}

// BundleKinds is a Kinds that also checks a valid rule against the other
// files of its set: a screen rule names the keyword libraries and language
// packs it loads, and a pack the set does not carry must be an error in
// `rules check`, not a surprise on the devices. Errors are reported like
// ValidateParams's (File filled in, a missing Line falls back to the rule).
type BundleKinds interface {
	Kinds
	ValidateBundle(kind string, params *yaml.Node, files map[string][]byte) error
}

// KindFunc validates the params of one rule kind; nil accepts anything.
type KindFunc func(params *yaml.Node) error

// KindMap is a convenience Kinds: the known kinds and their params validators.
type KindMap map[string]KindFunc

// Known implements Kinds.
func (m KindMap) Known(kind string) bool {
	_, ok := m[kind]
	return ok
}

// ValidateParams implements Kinds.
func (m KindMap) ValidateParams(kind string, params *yaml.Node) error {
	if f := m[kind]; f != nil {
		return f(params)
	}
	return nil
}

// NoParams is a KindFunc for kinds that take no parameters: params must be
// absent, null or an empty mapping.
func NoParams(params *yaml.Node) error {
	if params == nil || len(params.Content) == 0 {
		return nil
	}
	k := params.Content[0]
	return &Error{Pos: Pos{Line: k.Line, Col: k.Column}, Msg: fmt.Sprintf("unknown parameter %s (this check takes no parameters)", quote(k.Value))}
}

// kindError converts an error from Kinds.ValidateParams into positioned
// Errors. fallback is used for a missing file or line.
func kindError(err error, fallback Pos) Errors {
	fix := func(e Error) Error {
		if e.File == "" {
			e.File = fallback.File
		}
		if e.Line < 1 {
			e.Line, e.Col = fallback.Line, fallback.Col
		}
		if e.Col < 1 {
			e.Col = 1
		}
		return e
	}
	var (
		es  Errors
		ep  *Error
		ev  Error
		out Errors
	)
	switch {
	case errors.As(err, &es):
		for _, e := range es {
			out = append(out, fix(e))
		}
	case errors.As(err, &ep) && ep != nil:
		out = Errors{fix(*ep)}
	case errors.As(err, &ev):
		out = Errors{fix(ev)}
	default:
		out = Errors{{Pos: fallback, Msg: "invalid params: " + err.Error()}}
	}
	return out
}
