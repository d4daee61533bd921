package match

import (
	"strings"
	"testing"

	"github.com/vigil-safeguarding/vigil/rules"
)

func TestHelpSeekingContext(t *testing.T) {
	src := `#! rule: h
#! category: self_harm
#! severity: high
#! help: childline, how to help a friend, support for, helpline
self harm                     # t
kill myself ; severity=critical ; help=none  # first person: help words change nothing
want to die ; help=suppress   # t
`
	l, errs := ParseLibrary("h.txt", []byte(src))
	if errs != nil {
		t.Fatal(errs)
	}
	m := compile(t, l)
	for _, tc := range []struct {
		text     string
		n        int
		sev      rules.Severity
		help     string
		baseline rules.Severity
	}{
		{"self harm tips", 1, rules.High, "", 0},
		{"how to help a friend with self harm", 1, rules.Medium, "how to help a friend", rules.High},
		{"Self-harm support for young people - Childline", 1, rules.Medium, "childline", rules.High},
		{"self harm helplines near me", 1, rules.Medium, "helpline", rules.High},
		{"i will kill myself - childline", 1, rules.Critical, "", 0},
		{"i want to die", 1, rules.High, "", 0},
		{"i want to die childline", 0, 0, "", 0},
		// Beyond ContextWords words the phrase is not context.
		{"how to help a friend one two three four five six self harm", 1, rules.High, "", 0},
	} {
		ms := m.Find(tc.text)
		if len(ms) != tc.n {
			t.Errorf("%q: %d matches %v, want %d", tc.text, len(ms), ms, tc.n)
			continue
		}
		if tc.n == 0 {
			continue
		}
		if x := ms[0]; x.Severity != tc.sev || x.Help != tc.help || x.BaseSeverity != tc.baseline {
			t.Errorf("%q: severity %v help %q base %v, want %v %q %v", tc.text, x.Severity, x.Help, x.BaseSeverity, tc.sev, tc.help, tc.baseline)
		}
	}
}

func TestHelpSuppressLibrary(t *testing.T) {
	src := "#! rule: h\n#! category: drugs\n#! severity: medium\n#! help: talk to frank\n#! help-action: suppress\nbuy weed # t\nbuy coke ; help=lower # t\n"
	l, errs := ParseLibrary("h.txt", []byte(src))
	if errs != nil {
		t.Fatal(errs)
	}
	m := compile(t, l)
	if ms := m.Find("talk to frank: if you buy weed"); len(ms) != 0 {
		t.Errorf("suppressed term matched: %v", ms)
	}
	if ms := m.Find("talk to frank: buy coke"); len(ms) != 1 || ms[0].Severity != rules.Low || ms[0].Help != "talk to frank" {
		t.Errorf("help=lower on a suppressing library: %v", ms)
	}
}

func TestHelpParseErrors(t *testing.T) {
	head := "#! rule: h\n#! category: c\n#! severity: high\n"
	for _, tc := range []struct{ src, want string }{
		{head + "#! help-action: ignore\nx # r\n", "4:17: unknown help-action \"ignore\""},
		{head + "#! help:\nx # r\n", "empty help list"},
		{head + "#! help: a,,b\nx # r\n", "empty entry in help list"},
		{head + "x ; help=maybe # r\n", "4:10: unknown help action \"maybe\""},
		{"#! help: childline\n" + head + "x ; help # r\n", "unknown help action \"\""},
	} {
		_, errs := ParseLibrary("x.txt", []byte(tc.src))
		if errs == nil || !strings.Contains(errs.Error(), tc.want) {
			t.Errorf("%q: got %v, want %q", tc.src, errs, tc.want)
		}
	}
}
