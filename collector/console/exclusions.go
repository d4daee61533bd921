package console

import (
	"fmt"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/rules/exclusions"
)

// ExclusionsFile is the content of the bundle file exclusions.Path for
// school's devices: the approved exclusions in force at now that apply
// there (the school's own and the trust-wide ones; seed 002 §12.2: each
// with its reason, approver and expiry), or nil when there are none. The
// collector adds it to every group's rules bundle of the school; agents drop matches of an excluded
// (library, term) until its expiry. Expired ones are left out, so the
// bundle changes (and is pushed again) when an exclusion expires. With none
// in force the file is left out altogether: the bundle is then exactly the
// rules folder's (the embedded defaults keep their hash, and agents do not
// reload rules for an empty list).
func ExclusionsFile(st ExclusionLister, school string, now time.Time) ([]byte, error) {
	list, err := st.Exclusions()
	if err != nil {
		return nil, fmt.Errorf("read exclusions: %w", err)
	}
	var out []exclusions.Exclusion
	for _, x := range list {
		if x.Status != "approved" || !appliable(x) || !now.Before(x.ExpiresAt) || !x.AppliesIn(school) {
			continue
		}
		out = append(out, exclusions.Exclusion{ID: x.ID, LibraryRuleID: x.Library, Term: x.Term,
			Reason: x.ApprovalReason, ApprovedBy: x.ApprovedBy, ApprovedAt: x.ApprovedAt, ExpiresAt: x.ExpiresAt})
	}
	if len(out) == 0 {
		return nil, nil
	}
	return exclusions.Marshal(out), nil
}

// ExclusionLister is what ExclusionsFile reads (*store.Store is one).
type ExclusionLister interface {
	Exclusions() ([]store.Exclusion, error)
}

// appliable: agents match exclusions by keyword library and term, which
// every screen alert names.
func appliable(x store.Exclusion) bool { return x.Library != "" && x.Term != "" }
