package engine

import (
	"context"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/hostinfo"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
)

// Once evaluates every enabled rule of set that applies to group and role,
// once, without spool or collector, passing each finding to out: the
// technician's `vigil-agent check --once`. kinds are the constructed
// checks (agent/checks/all.New). Every observation is reported
// (no transition filtering); a failing, timed-out or panicking check becomes
// a finding with status "error".
func Once(ctx context.Context, kinds *checks.Registry, set *rules.Set, group, role string, out func(*vigilv1.Finding)) {
	meta := FindingMeta{Group: group, User: hostinfo.LoggedInUser(), RulesHash: set.Hash}
	for _, r := range set.Enabled() {
		if !r.Applies(group, role) {
			continue
		}
		c, ok := kinds.Get(r.Check)
		if !ok {
			continue
		}
		p, ok := c.(checks.Poller)
		if !ok {
			continue
		}
		emit := func(_ context.Context, rule *rules.Rule, obs ...checks.Observation) (uint64, uint64, error) {
			for _, o := range obs {
				meta.Now = time.Now()
				f, _ := NewFinding(meta, rule, o)
				out(f)
			}
			return 0, 0, nil
		}
		if err := RunPoll(ctx, p, &r, emit); err != nil {
			emit(ctx, &r, ErrorObservation(&r, err))
		}
	}
}
