package match

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestLanguagePacks runs the language packs in rules/keywords/lang/<tag>/
// through the same checks as the published English libraries, and the
// conventions docs/keywords.md sets for them: each library declares its
// pack's language, has at least ten '+' and ten '-' cases, and every term
// is matched by at least one '+' case (a term nobody tested is a guess).
func TestLanguagePacks(t *testing.T) {
	dirs, err := os.ReadDir("../keywords/lang")
	if err != nil {
		t.Fatal(err)
	}
	packs := 0
	for _, d := range dirs {
		if !d.IsDir() {
			continue
		}
		tag := d.Name()
		dir := filepath.Join("../keywords/lang", tag)
		t.Run(tag, func(t *testing.T) {
			libs, cases, errs := LoadDir(dir)
			if errs != nil {
				t.Fatal(errs)
			}
			if errs := CheckDir(dir); errs != nil {
				for _, e := range errs {
					t.Error(e)
				}
			}
			m, err := Compile(libs...)
			if err != nil {
				t.Fatal(err)
			}
			for _, lib := range libs {
				if lib.Lang != tag && !strings.HasPrefix(lib.Lang, tag+"-") {
					t.Errorf("%s: #! lang: %s in pack %s", lib.File, lib.Lang, tag)
				}
				if !strings.HasPrefix(lib.RuleID, "keywords-"+tag+"-") {
					t.Errorf("%s: rule id %s, want keywords-%s-...", lib.File, lib.RuleID, tag)
				}
				pos, neg := 0, 0
				hit := map[string]bool{}
				for _, c := range cases[lib.File] {
					if !c.Positive {
						neg++
						continue
					}
					pos++
					for _, x := range m.Find(c.Text) {
						if x.RuleID == lib.RuleID {
							hit[x.Term] = true
						}
					}
				}
				if pos < 10 || neg < 10 {
					t.Errorf("%s: %d positive and %d negative cases, want at least 10 of each", lib.File, pos, neg)
				}
				for _, term := range lib.Terms {
					if !hit[term.Text] {
						t.Errorf("%s:%d: term %q is matched by no '+' case", lib.File, term.Pos.Line, term.Text)
					}
				}
			}
			packs++
		})
	}
	if packs < 3 {
		t.Fatalf("%d language packs, want at least Welsh, Polish and one in a non-Latin script", packs)
	}
}
