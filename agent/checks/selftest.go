package checks

import (
	"context"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/rules"
)

// SelfTest is the synthetic check: on its schedule, and on demand through
// `vigil-agent trigger-test` or a collector request, it emits findings
// through the same path real findings take, so a school can prove that
// monitoring works end to end.
type SelfTest struct{}

// Kind implements Check.
func (SelfTest) Kind() string { return "selftest" }

// ValidateParams accepts no parameters.
func (SelfTest) ValidateParams(params *yaml.Node) error {
	if params != nil && len(params.Content) > 0 {
		return &rules.Error{Pos: rules.Pos{Line: params.Content[0].Line, Col: params.Content[0].Column}, Msg: "selftest takes no params"}
	}
	return nil
}

// DefaultInterval implements Poller.
func (SelfTest) DefaultInterval() time.Duration { return 24 * time.Hour }

// Poll emits the scheduled liveness finding.
func (SelfTest) Poll(ctx context.Context, rule *rules.Rule, emit Emit) error {
	_, _, err := emit(ctx, rule, Observation{Message: "scheduled self-test: monitoring is running", Details: map[string]any{"trigger": "schedule"}})
	return err
}

// Trigger emits n on-demand self-test findings in one transaction; nonce
// ties them to the request that asked (tests check the exact set).
func (SelfTest) Trigger(ctx context.Context, rule *rules.Rule, emit Emit, n int, source, nonce string) (first, last uint64, err error) {
	obs := make([]Observation, n)
	for i := range obs {
		obs[i] = Observation{
			Message: "self-test finding: monitoring pipeline works end to end",
			Details: map[string]any{"trigger": source, "nonce": nonce, "index": i},
		}
	}
	return emit(ctx, rule, obs...)
}
