package screenwatch

import (
	"context"
	"strings"
	"testing"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/agent/session"
	"github.com/vigil-safeguarding/vigil/rules"
)

const langRule = `apiVersion: vigil/v1
id: screen-keywords
name: Safeguarding keywords on screen
rationale: test
severity: high
category: safeguarding
check: screen
params:
  screenshot: false
  languages: [%s]
`

const englishLib = "#! rule: keywords-test\n#! category: self_harm\n#! severity: high\n#! help: childline, how to help a friend\nself harm # t\n"
const welshLib = "#! rule: keywords-cy-test\n#! category: self_harm\n#! severity: high\n#! lang: cy\nlladd fy hun ; severity=critical # Welsh: kill myself\n"
const polishLib = "#! rule: keywords-pl-test\n#! category: self_harm\n#! severity: high\n#! lang: pl\nzabije sie ; severity=critical # Polish: I will kill myself\n"

func langFiles(langs string) map[string][]byte {
	return map[string][]byte{
		"screen.yaml":               []byte(strings.Replace(langRule, "%s", langs, 1)),
		"keywords/test.txt":         []byte(englishLib),
		"keywords/lang/cy/test.txt": []byte(welshLib),
		"keywords/lang/pl/test.txt": []byte(polishLib),
	}
}

// TestLanguagePacks: a rule loads English plus the packs it lists, and
// only those.
func TestLanguagePacks(t *testing.T) {
	for _, tc := range []struct {
		langs string
		text  string
		want  bool
	}{
		{"", "self harm", true},
		{"", "lladd fy hun", false},
		{"cy", "lladd fy hun", true},
		{"cy", "zabiję się", false},
		{"cy, pl", "zabiję się", true},
	} {
		set, errs := rules.LoadFiles(langFiles(tc.langs), checks.MustRegistry(Check{}))
		if errs != nil {
			t.Fatalf("[%s]: %v", tc.langs, errs)
		}
		ar, err := compile(&set.Rules[0])
		if err != nil {
			t.Fatal(err)
		}
		if got := len(ar.matcher.Find(tc.text)) > 0; got != tc.want {
			t.Errorf("languages [%s], %q: matched %v, want %v", tc.langs, tc.text, got, tc.want)
		}
	}
}

// TestLanguagePackValidation: `rules check` refuses a pack the set does not
// carry, a bad tag, a duplicate, and a pack whose library says it is in
// another language, at the line and column of the entry.
func TestLanguagePackValidation(t *testing.T) {
	for _, tc := range []struct {
		langs string
		files map[string][]byte
		want  string
	}{
		{"ur", nil, `screen.yaml:10:15: language pack "ur" is not in the rules set (no library in keywords/lang/ur/)`},
		{"cy, Welsh!", nil, `screen.yaml:10:19: languages: invalid language tag "Welsh!"`},
		{"cy, cy", nil, `screen.yaml:10:19: languages: "cy" listed twice`},
		{"ro, cy, ur", nil, "screen.yaml:10:15: language pack \"ro\" is not in the rules set (no library in keywords/lang/ro/)\nscreen.yaml:10:23: language pack \"ur\""},
		{"pl", map[string][]byte{"keywords/lang/pl/x.txt": []byte(strings.Replace(polishLib, "pl-test", "pl-x", 1) + "")}, ""},
		{"cy", map[string][]byte{"keywords/lang/cy/x.txt": []byte("#! rule: keywords-x\n#! category: c\n#! severity: high\n#! lang: pl\nx # t\n")}, `language pack "cy": keywords/lang/cy/x.txt says it is in "pl"`},
	} {
		files := langFiles(tc.langs)
		for k, v := range tc.files {
			files[k] = v
		}
		_, errs := rules.LoadFiles(files, checks.MustRegistry(Check{}))
		switch {
		case tc.want == "" && errs != nil:
			t.Errorf("[%s]: %v", tc.langs, errs)
		case tc.want != "" && (errs == nil || !strings.Contains(errs.Error(), tc.want)):
			t.Errorf("[%s]: got %v, want %q", tc.langs, errs, tc.want)
		}
	}
}

// TestHelpContextInFinding: a help-seeking phrase near a term lowers the
// finding's severity and the finding says why.
func TestHelpContextInFinding(t *testing.T) {
	set, errs := rules.LoadFiles(langFiles(""), checks.MustRegistry(Check{}))
	if errs != nil {
		t.Fatal(errs)
	}
	ar, err := compile(&set.Rules[0])
	if err != nil {
		t.Fatal(err)
	}
	h := NewHub()
	rec := &recorder{ch: make(chan checks.Observation, 4)}
	h.activate([]*activeRule{ar}, rec.emit)
	peer := session.Peer{UID: 1000, Username: "pupil1"}
	h.Observe(context.Background(), peer, screen.Window{ID: 1, Title: "how to help a friend with self harm - Google Search", Process: "firefox"})
	o := rec.next(t, "help-seeking title")
	if o.Severity != rules.Medium || o.Details[KeyHelpContext] != "how to help a friend" || o.Details[KeySeverityBeforeHelp] != "high" {
		t.Errorf("severity %v details %+v", o.Severity, o.Details)
	}
	m := o.Details["matches"].([]any)[0].(map[string]any)
	if m[KeyHelpContext] != "how to help a friend" || m["severity"] != "medium" {
		t.Errorf("match entry %+v", m)
	}
	h.Observe(context.Background(), peer, screen.Window{ID: 2, Title: "self harm - Google Search", Process: "firefox"})
	if o := rec.next(t, "plain title"); o.Severity != rules.High || o.Details[KeyHelpContext] != nil {
		t.Errorf("severity %v details %+v", o.Severity, o.Details)
	}
}

// TestDefaultBundleCarriesPacks: the embedded default bundle (what the
// collector seeds a school's folders with) carries every language pack, the
// default rule loads none, and enabling them in the rule makes their terms
// match, with all of them and the English libraries compiled together.
func TestDefaultBundleCarriesPacks(t *testing.T) {
	files := map[string][]byte{}
	for name, data := range rules.Defaults() {
		// Only the screen rule: the other checks are not registered here.
		if name == "screen.yaml" || strings.HasPrefix(name, "keywords/") {
			files[name] = data
		}
	}
	for _, tag := range []string{"cy", "pl", "ur", "ar"} {
		found := false
		for name := range files {
			found = found || strings.HasPrefix(name, PackDir(tag))
		}
		if !found {
			t.Fatalf("no %s pack in the default bundle", tag)
		}
	}
	titles := []string{"dw i eisiau lladd fy hun", "chcę umrzeć", "main marna chahta hoon", "میں مرنا چاہتا ہوں", "أريد أن أموت"}
	screenRule := func(set *rules.Set) *rules.Rule {
		for i := range set.Rules {
			if set.Rules[i].Check == Kind {
				return &set.Rules[i]
			}
		}
		t.Fatal("no screen rule in the defaults")
		return nil
	}
	set, errs := rules.LoadFiles(files, checks.MustRegistry(Check{}))
	if errs != nil {
		t.Fatal(errs)
	}
	ar, err := compile(screenRule(set))
	if err != nil {
		t.Fatal(err)
	}
	for _, title := range titles {
		if ms := ar.matcher.Find(title); len(ms) != 0 {
			t.Errorf("default rule (English only) matched %q: %v", title, ms)
		}
	}
	const off = "  languages: []\n"
	y := string(files["screen.yaml"])
	if strings.Count(y, off) != 1 {
		t.Fatalf("rules/default/screen.yaml: want exactly one %q", off)
	}
	files["screen.yaml"] = []byte(strings.Replace(y, off, "  languages: [cy, pl, ur, ar]\n", 1))
	set, errs = rules.LoadFiles(files, checks.MustRegistry(Check{}))
	if errs != nil {
		t.Fatal(errs)
	}
	if ar, err = compile(screenRule(set)); err != nil {
		t.Fatal(err)
	}
	for _, title := range titles {
		if ms := ar.matcher.Find(title); len(ms) == 0 {
			t.Errorf("with every pack enabled, %q did not match", title)
		}
	}
	if ms := ar.matcher.Find("kill myself"); len(ms) == 0 {
		t.Error("English libraries not loaded alongside the packs")
	}
}
