package match

import (
	"path"
	"strings"

	"github.com/vigil-safeguarding/vigil/rules"
)

// Keyword libraries travel in rules bundles under keywords/: registering
// them as data files makes the rules loader carry and validate them, so an
// invalid library edit is refused like an invalid rule (last good set kept).
func init() {
	inKeywords := func(p, ext string) bool {
		return strings.HasPrefix(p, "keywords/") && path.Ext(p) == ext
	}
	rules.RegisterData(rules.DataKind{
		Match: func(p string) bool { return inKeywords(p, ".txt") },
		Validate: func(display string, data []byte) rules.Errors {
			_, errs := ParseLibrary(display, data)
			return errs
		},
	})
	rules.RegisterData(rules.DataKind{
		Match: func(p string) bool { return inKeywords(p, ".cases") },
		Validate: func(display string, data []byte) rules.Errors {
			_, errs := ParseCases(display, data)
			return errs
		},
	})
}
