// Package checks is the registry of rule kinds the agent can evaluate. Each
// check lives in its own file (platform parts in _linux.go, _windows.go,
// _darwin.go) and registers itself from init, like node_exporter's
// collectors.
package checks

import (
	"context"
	"fmt"
	"sort"
	"sync"
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

var (
	mu       sync.RWMutex
	registry = map[string]Check{}
)

// Register adds a check; registering a kind twice is a programming error.
func Register(c Check) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := registry[c.Kind()]; dup {
		panic(fmt.Sprintf("checks: kind %q registered twice", c.Kind()))
	}
	registry[c.Kind()] = c
}

// Get returns the check for kind.
func Get(kind string) (Check, bool) {
	mu.RLock()
	defer mu.RUnlock()
	c, ok := registry[kind]
	return c, ok
}

// KindNames lists the registered kinds, sorted.
func KindNames() []string {
	mu.RLock()
	defer mu.RUnlock()
	out := make([]string, 0, len(registry))
	for k := range registry {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}

// Kinds adapts the registry to the rules package's validator.
type Kinds struct{}

// Known implements rules.Kinds.
func (Kinds) Known(kind string) bool { _, ok := Get(kind); return ok }

// ValidateParams implements rules.Kinds.
func (Kinds) ValidateParams(kind string, params *yaml.Node) error {
	c, ok := Get(kind)
	if !ok {
		return fmt.Errorf("unknown check kind %q", kind)
	}
	return c.ValidateParams(params)
}

var _ rules.Kinds = Kinds{}
