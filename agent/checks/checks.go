// Package checks defines what a rule kind (a check) is and the Registry of
// the kinds an agent evaluates. Each check lives in its own package
// (platform parts in _linux.go, _windows.go, _darwin.go), like
// node_exporter's collectors, and is constructed with its dependencies by
// agent/checks/all.
package checks

import (
	"context"
	"fmt"
	"sort"
	"time"

	"gopkg.in/yaml.v3"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
)

// Observation is what a check reports; the engine turns it into a Finding
// by adding the rule, device, user, time and sequence number.
type Observation struct {
	// Status is "pass" or "fail" for posture checks, empty for events.
	// In run mode the engine records a posture observation only when the
	// status for (rule, Key) changes, and remembers it across restarts.
	Status string
	// Key names the subject: for posture, what the status is about (an
	// adapter, a product; empty for the device as a whole); for events, the
	// deduplication key (e.g. path and SHA-256): the engine drops an event
	// whose (rule, Key) was recorded within the rule's dedupe window.
	Key     string
	Message string
	// User overrides the device's logged-in user (a session helper knows
	// exactly whose screen it watches).
	User string
	// Severity and Category override the rule's when set (a keyword match
	// carries its library's category and its term's severity).
	Severity rules.Severity
	Category string
	Details  map[string]any
	// ScreenMatch is set by the screen check on a keyword match: the typed
	// match that makes the finding a safeguarding alert at the collector.
	ScreenMatch *vigilv1.ScreenMatch
	Evidence    []*vigilv1.EvidenceRef
	// EvidenceData holds the encrypted bytes for Evidence, carried in the
	// spool with the finding and stored apart by the collector.
	EvidenceData []*vigilv1.EvidenceBlob
}

// Emit records observations for rule durably (one spool transaction) and
// returns the sequence numbers they were given.
type Emit func(ctx context.Context, rule *rules.Rule, obs ...Observation) (first, last uint64, err error)

// Check is a rule kind.
type Check interface {
	Kind() string
	// ValidateParams checks a rule's params node (nil when absent); errors
	// should carry the node's position (see rules.Error).
	ValidateParams(params *yaml.Node) error
}

// Poller is implemented by every check: Poll evaluates the rule once
// (`vigil-agent check --once` and scheduled runs). It must honour ctx: the
// engine gives each poll a timeout and turns errors, timeouts and panics
// into findings.
type Poller interface {
	Check
	DefaultInterval() time.Duration
	Poll(ctx context.Context, rule *rules.Rule, emit Emit) error
}

// Runner checks also watch continuously (OS events) for every enabled rule
// of their kind. In run mode the engine calls Run instead of scheduling
// Poll; Run returns when ctx ends and is restarted on a rules change.
type Runner interface {
	Poller
	Run(ctx context.Context, rules []*rules.Rule, emit Emit) error
}

// Registry holds the check kinds one agent can evaluate. The daemon (and
// the CLI) builds it with every check constructed from its dependencies
// (agent/checks/all), so nothing is registered from init or kept in package
// globals, and a test builds one with just the checks it needs.
type Registry struct {
	kinds map[string]Check
}

// NewRegistry returns a registry of cs; two checks of one kind is an error
// (the second would silently shadow the first).
func NewRegistry(cs ...Check) (*Registry, error) {
	r := &Registry{kinds: make(map[string]Check, len(cs))}
	for _, c := range cs {
		if _, dup := r.kinds[c.Kind()]; dup {
			return nil, fmt.Errorf("checks: kind %q given twice", c.Kind())
		}
		r.kinds[c.Kind()] = c
	}
	return r, nil
}

// MustRegistry is NewRegistry for fixed lists (tests and the wiring in
// agent/checks/all), where a duplicate is a programming error.
func MustRegistry(cs ...Check) *Registry {
	r, err := NewRegistry(cs...)
	if err != nil {
		panic(err)
	}
	return r
}

// Get returns the check for kind.
func (r *Registry) Get(kind string) (Check, bool) {
	c, ok := r.kinds[kind]
	return c, ok
}

// KindNames lists the kinds, sorted.
func (r *Registry) KindNames() []string {
	out := make([]string, 0, len(r.kinds))
	for k := range r.kinds {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// All returns the checks, sorted by kind (to build a registry with more).
func (r *Registry) All() []Check {
	out := make([]Check, 0, len(r.kinds))
	for _, k := range r.KindNames() {
		out = append(out, r.kinds[k])
	}
	return out
}

// Known implements rules.Kinds.
func (r *Registry) Known(kind string) bool { _, ok := r.Get(kind); return ok }

// ValidateParams implements rules.Kinds.
func (r *Registry) ValidateParams(kind string, params *yaml.Node) error {
	c, ok := r.Get(kind)
	if !ok {
		return fmt.Errorf("unknown check kind %q", kind)
	}
	return c.ValidateParams(params)
}

var _ rules.Kinds = (*Registry)(nil)

// BundleChecker is implemented by checks whose rules depend on other files
// of the rules set (the screen check's keyword libraries and language packs).
type BundleChecker interface {
	ValidateBundle(params *yaml.Node, files map[string][]byte) error
}

// ValidateBundle implements rules.BundleKinds.
func (r *Registry) ValidateBundle(kind string, params *yaml.Node, files map[string][]byte) error {
	c, ok := r.Get(kind)
	if !ok {
		return nil
	}
	if bc, ok := c.(BundleChecker); ok {
		return bc.ValidateBundle(params, files)
	}
	return nil
}

var _ rules.BundleKinds = (*Registry)(nil)
