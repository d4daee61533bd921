package daemon

import (
	"log/slog"
	"sync"

	"github.com/vigil-safeguarding/vigil/collector/schoolterms"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// rulesChanged asks the bundle refresh loop to rebuild the generated
// files (exclusions, school terms) and push changed bundles to agents.
func (c *collector) rulesChanged() {
	select {
	case c.exclC <- struct{}{}:
	default:
	}
}

// schoolTermsExtra supplies the library files of the terms in force in a
// school (its own and the trust's it has not suppressed) for every group's
// rules bundle of that school (none while there are none); if the store
// cannot be read the school's last good files stay.
func schoolTermsExtra(st *store.Store, log *slog.Logger) func(school, group string) map[string][]byte {
	var mu sync.Mutex
	last := map[string]map[string][]byte{}
	return func(school, _ string) map[string][]byte {
		mu.Lock()
		defer mu.Unlock()
		files, err := schoolterms.BundleFiles(st, school)
		if err != nil {
			log.Error("rules bundles: school terms not refreshed", "school", school, "err", err)
			files = last[school]
		}
		last[school] = files
		return files
	}
}

// generatedRules merges the generated files of each source (their paths
// do not overlap: exclusions.Path and keywords/school-*).
func generatedRules(srcs ...func(school, group string) map[string][]byte) func(school, group string) map[string][]byte {
	return func(school, group string) map[string][]byte {
		var out map[string][]byte
		for _, src := range srcs {
			for p, b := range src(school, group) {
				if out == nil {
					out = map[string][]byte{}
				}
				out[p] = b
			}
		}
		return out
	}
}
