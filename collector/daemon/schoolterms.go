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

// schoolTermsExtra supplies the school terms' library files for every
// group's rules bundle (none while there are no terms); if the store cannot
// be read the last good files stay.
func schoolTermsExtra(st *store.Store, log *slog.Logger) func(string) map[string][]byte {
	var mu sync.Mutex
	var last map[string][]byte
	return func(string) map[string][]byte {
		mu.Lock()
		defer mu.Unlock()
		files, err := schoolterms.BundleFiles(st)
		if err != nil {
			log.Error("rules bundles: school terms not refreshed", "err", err)
			files = last
		}
		last = files
		return files
	}
}

// generatedRules merges the generated files of each source (their paths
// do not overlap: exclusions.Path and keywords/school-*).
func generatedRules(srcs ...func(string) map[string][]byte) func(string) map[string][]byte {
	return func(group string) map[string][]byte {
		var out map[string][]byte
		for _, src := range srcs {
			for p, b := range src(group) {
				if out == nil {
					out = map[string][]byte{}
				}
				out[p] = b
			}
		}
		return out
	}
}
