package match

import (
	"strings"
	"testing"

	"github.com/vigil-safeguarding/vigil/rules"
)

const header = "#! rule: keywords-test\n#! category: self_harm\n#! severity: high\n"

func TestParseLibrary(t *testing.T) {
	src := header + `#! name: Test library
#! lang: en-GB
# a comment

kill myself ; severity=critical        # direct statement
cut myself ; except=hair, paper,nails  # self-injury
want to die ; gap=1 ; except=lol       # wish to die
suicid ; prefix                        # suicide, suicidal
sex ; exact                            # short term
`
	l, errs := ParseLibrary("x.txt", []byte(src))
	if errs != nil {
		t.Fatal(errs)
	}
	if l.RuleID != "keywords-test" || l.Category != "self_harm" || l.Severity != rules.High || l.Name != "Test library" || l.Lang != "en-GB" || l.File != "x.txt" {
		t.Fatalf("header: %+v", l)
	}
	if len(l.Terms) != 5 {
		t.Fatalf("%d terms", len(l.Terms))
	}
	k := l.Terms[0]
	if k.Text != "kill myself" || k.Severity != rules.Critical || k.Rationale != "direct statement" || k.Pos != (rules.Pos{File: "x.txt", Line: 8, Col: 1}) || k.RuleID != "keywords-test" || k.Category != "self_harm" {
		t.Errorf("term 0: %+v", k)
	}
	if c := l.Terms[1]; c.Severity != rules.High || strings.Join(c.Except, "|") != "hair|paper|nails" {
		t.Errorf("term 1: %+v", c)
	}
	if w := l.Terms[2]; w.Gap != 1 || len(w.Except) != 1 {
		t.Errorf("term 2: %+v", w)
	}
	if !l.Terms[3].Prefix || !l.Terms[4].Exact {
		t.Errorf("flags: %+v %+v", l.Terms[3], l.Terms[4])
	}
}

func TestParseLibraryErrors(t *testing.T) {
	for _, tc := range []struct{ src, want string }{
		{header + "kill myself\n", "x.txt:4:12: missing rationale"},
		{header + "kill myself #\n", "x.txt:4:13: empty rationale"},
		{header + "kill myself ; severity=huge # r\n", "x.txt:4:24: unknown severity \"huge\""},
		{header + "kill myself ; colour=red # r\n", "x.txt:4:15: unknown option \"colour\""},
		{header + "kill myself # r\nKILL  MYSELF # r\n", "x.txt:5:1: duplicate term \"KILL  MYSELF\": same normalised form \"kI myseIf\" as line 4"},
		{header + "k1ll # r\nkill # r\n", "x.txt:5:1: duplicate term"},
		{header + "kill ; prefix # r\n", "x.txt:4:1: prefix term \"kill\": the last word must have at least 5 letters (has 4)"},
		{header + "want to die ; gap=9 # r\n", "x.txt:4:19: invalid gap \"9\""},
		{header + "die ; gap=1 # r\n", "x.txt:4:1: gap=1 needs a phrase"},
		{header + "die ; exact=yes # r\n", "x.txt:4:13: option \"exact\" is a flag"},
		{header + "die ; gap=1 ; gap=2 # r\n", "duplicate option \"gap\""},
		{header + "die ; except= # r\n", "empty except list"},
		{header + "die ; except=a,,b # r\n", "empty entry in except list"},
		{header + "!!! # r\n", "has no letters or digits"},
		{header + " ; severity=low # r\n", "x.txt:4:2: empty term"},
		{header + "die ;; exact # r\n", "x.txt:4:6: empty option"},
		{"#! rule: Bad Id\n#! category: c\n#! severity: low\n", "x.txt:1:10: invalid rule id"},
		{"#! rule: r\n#! category: c\n", "x.txt:1:1: missing header directive \"#! severity: ...\""},
		{"#! rule: r\n#! category: c\n#! severity: low\n#! colour: red\n", "x.txt:4:4: unknown header \"colour\""},
		{"#! rule: r\n#! rule: s\n#! category: c\n#! severity: low\n", "x.txt:2:4: duplicate header \"rule\""},
		{header + "die # r\n#! name: late\n", "x.txt:5:1: header directive after the first term"},
		{header + "#! lang: english\n", "invalid language tag"},
		{"\xff", "x.txt: file is not valid UTF-8"},
	} {
		_, errs := ParseLibrary("x.txt", []byte(tc.src))
		if errs == nil || !strings.Contains(errs.Error(), tc.want) {
			t.Errorf("%q:\n got %v\nwant %q", tc.src, errs, tc.want)
		}
	}
}

func TestParseCases(t *testing.T) {
	src := "# comment\n+ i'm going to kill myself tonight\n  + k i l l   m y s e l f  \n- this homework will kill me\n\n"
	cs, errs := ParseCases("x.cases", []byte(src))
	if errs != nil {
		t.Fatal(errs)
	}
	want := []Case{
		{Text: "i'm going to kill myself tonight", Positive: true, Pos: rules.Pos{File: "x.cases", Line: 2, Col: 3}},
		{Text: "k i l l   m y s e l f", Positive: true, Pos: rules.Pos{File: "x.cases", Line: 3, Col: 5}},
		{Text: "this homework will kill me", Positive: false, Pos: rules.Pos{File: "x.cases", Line: 4, Col: 3}},
	}
	if len(cs) != len(want) {
		t.Fatalf("got %+v", cs)
	}
	for i := range want {
		if cs[i] != want[i] {
			t.Errorf("case %d: got %+v want %+v", i, cs[i], want[i])
		}
	}
	_, errs = ParseCases("x.cases", []byte("* nope\n+\n+x\n"))
	got := errs.Error()
	for _, w := range []string{"x.cases:1:1: case line must start with '+'", "x.cases:2:1: empty case text", "x.cases:3:1: want a space after \"+\""} {
		if !strings.Contains(got, w) {
			t.Errorf("errors lack %q:\n%s", w, got)
		}
	}
}
