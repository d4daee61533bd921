package schoolterms

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/rules"
	"github.com/vigil-safeguarding/vigil/rules/match"
)

func term(text, cases string) store.SchoolTerm {
	return store.SchoolTerm{ID: "t1", Term: text, Category: "bullying", Severity: "high",
		Rationale: "nickname used to bully a Year 8 pupil", Cases: cases, AddedBy: "dsl1", AddedAt: time.Now()}
}

func TestValidAccepted(t *testing.T) {
	if ps := Validate(term("gobbo gibbs", "+ look at gobbo gibbs lol\n- gibbs free energy revision\n"), nil); ps != nil {
		t.Fatalf("refused: %v", ps)
	}
}

// A bad case is refused with the line of the cases text at fault.
func TestBadCaseRefusedWithItsLine(t *testing.T) {
	for _, tc := range []struct {
		name, cases string
		line        int
		want        string
	}{
		{"positive that does not match", "+ gobbo gibbs again\n# a comment\n+ nothing to see here\n- gibbs free energy\n", 3, "expected a match"},
		{"negative that matches", "+ gobbo gibbs\n- gobbo gibbs is my mate\n", 2, "unexpected match"},
		{"line without a sign", "+ gobbo gibbs\n- gibbs energy\ngobbo\n", 3, "must start with '+'"},
		{"no space after the sign", "+ gobbo gibbs\n-gibbs\n", 2, "want a space"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ps := Validate(term("gobbo gibbs", tc.cases), nil)
			if len(ps) == 0 {
				t.Fatal("accepted")
			}
			p := ps[0]
			if p.Field != "cases" || p.Line != tc.line || !strings.Contains(p.Message, tc.want) {
				t.Fatalf("got %+v, want cases line %d containing %q", ps, tc.line, tc.want)
			}
		})
	}
}

func TestFieldsAtFault(t *testing.T) {
	ok := "+ gobbo gibbs\n- gibbs energy\n"
	for _, tc := range []struct {
		name  string
		mod   func(*store.SchoolTerm)
		field string
	}{
		{"no negative case", func(s *store.SchoolTerm) { s.Cases = "+ gobbo gibbs\n" }, "cases"},
		{"no positive case", func(s *store.SchoolTerm) { s.Cases = "- gibbs\n" }, "cases"},
		{"unknown category", func(s *store.SchoolTerm) { s.Category = "misc" }, "category"},
		{"unknown severity", func(s *store.SchoolTerm) { s.Severity = "urgent" }, "severity"},
		{"empty rationale", func(s *store.SchoolTerm) { s.Rationale = " " }, "rationale"},
		{"rationale with a newline", func(s *store.SchoolTerm) { s.Rationale = "a\n+ b" }, "rationale"},
		{"term with a comment", func(s *store.SchoolTerm) { s.Term = "gobbo #x" }, "term"},
		{"unknown option", func(s *store.SchoolTerm) { s.Term = "gobbo gibbs ; loud" }, "term"},
		{"bad gap", func(s *store.SchoolTerm) { s.Term = "gobbo gibbs ; gap=9" }, "term"},
		{"severity as an option", func(s *store.SchoolTerm) { s.Term = "gobbo ; severity=low" }, "term"},
		{"no letters", func(s *store.SchoolTerm) { s.Term = "!!!" }, "term"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := term("gobbo gibbs", ok)
			tc.mod(&st)
			ps := Validate(st, nil)
			if len(ps) == 0 || ps[0].Field != tc.field {
				t.Fatalf("got %v, want a problem in %s", ps, tc.field)
			}
		})
	}
}

// Beside the terms in force: a duplicate, and a new term that matches an
// existing term's must-not-match case, are refused.
func TestCheckedBesideTermsInForce(t *testing.T) {
	a := term("gobbo gibbs", "+ gobbo gibbs\n- gobbo the clown\n")
	if ps := Validate(term("gobbo gibbs", "+ gobbo gibbs\n- gibbs\n"), []store.SchoolTerm{a}); len(ps) == 0 || !strings.Contains(ps.Error(), "duplicate term") {
		t.Fatalf("duplicate: got %v", ps)
	}
	b := term("gobbo", "+ gobbo\n- gibbs\n")
	b.ID = "t2"
	if ps := Validate(b, []store.SchoolTerm{a}); len(ps) == 0 || ps[0].Field != "cases" || !strings.Contains(ps.Error(), "gobbo the clown") {
		t.Fatalf("clash with another term's case: got %v", ps)
	}
}

// The rendered files are valid bundle files, pass the library checks, and
// the matcher finds the term with the category and severity the DSL chose.
func TestFilesAreALibrary(t *testing.T) {
	a := term("gobbo gibbs", "+ gobbo gibbs\n- gibbs free energy\n")
	b := term("deansgate crew", "+ join the deansgate crew\n- deansgate station\n")
	b.ID, b.Category, b.Severity = "t2", "violence", "medium"
	files := Files([]store.SchoolTerm{a, b})
	if len(files) != 4 {
		t.Fatalf("files: %v", keys(files))
	}
	if errs := checkFiles(files); errs != nil {
		t.Fatal(errs)
	}
	if _, errs := rules.LoadFiles(files, nil); errs != nil {
		t.Fatalf("not valid as bundle data: %v", errs)
	}
	lib, errs := match.ParseLibrary("x", files[LibraryPath("violence")])
	if errs != nil {
		t.Fatal(errs)
	}
	m, _ := match.Compile(lib)
	got := m.Find("Instagram - deansgate crew meetup")
	if len(got) != 1 || got[0].Category != "violence" || got[0].Severity != rules.Medium {
		t.Fatalf("matches: %+v", got)
	}
	if Files(nil) != nil {
		t.Fatal("no terms should give no files")
	}
}

func TestCategoriesFromPublishedLibraries(t *testing.T) {
	cs := Categories()
	if !contains(cs, "bullying") || !contains(cs, "self_harm") || len(cs) < 8 {
		t.Fatalf("categories: %v", cs)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
