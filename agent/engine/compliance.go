package engine

import (
	"sort"
	"strings"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Compliance is the current posture of every check: the last status per
// (rule, subject) the engine recorded, with the check each rule runs. An
// audit reports it as the device's compliance state.
func (e *Engine) Compliance() []*vigilv1.ComplianceState {
	checkOf := map[string]string{}
	if set := e.Rules(); set != nil {
		for _, r := range set.Rules {
			checkOf[r.ID] = r.Check
		}
	}
	e.mem.mu.Lock()
	out := make([]*vigilv1.ComplianceState, 0, len(e.mem.posture))
	for k, st := range e.mem.posture {
		rule, key, _ := strings.Cut(k, "\x00")
		out = append(out, &vigilv1.ComplianceState{RuleId: rule, Check: checkOf[rule], Key: key, Status: st})
	}
	e.mem.mu.Unlock()
	sort.Slice(out, func(i, j int) bool {
		if out[i].RuleId != out[j].RuleId {
			return out[i].RuleId < out[j].RuleId
		}
		return out[i].Key < out[j].Key
	})
	return out
}

// LastSelftest is when a selftest finding last entered the spool (zero if
// none since the agent started).
func (e *Engine) LastSelftest() time.Time {
	if n := e.lastSelftest.Load(); n != 0 {
		return time.Unix(0, n)
	}
	return time.Time{}
}
