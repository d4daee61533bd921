package match

import (
	"slices"
	"sync"
	"testing"
)

var fuzzMatcher = sync.OnceValue(func() *Matcher {
	m, err := Compile(benchLibrary(benchTerms300()), &Library{RuleID: "f", Category: "f", Severity: 3, Terms: []Term{
		{Text: "kill myself"}, {Text: "want to die", Gap: 2, Except: []string{"lol"}}, {Text: "suicid", Prefix: true},
		{Text: "sex", Exact: true, Except: []string{"education"}}, {Text: "self harm"}, {Text: "our little secret", Gap: 3},
		{Text: "убить себя"}, {Text: "нет"}, {Text: "ναι"}, {Text: "ηλιος", Prefix: true}, {Text: "أريد أن أموت"}, {Text: "no one miss you", Gap: 2},
	}})
	if err != nil {
		panic(err)
	}
	return m
})

// isBoundary reports whether i is a boundary between the runes of text as
// Go decodes it (an invalid byte is a rune of its own).
func isBoundary(text string, i int) bool {
	if i == len(text) {
		return true
	}
	for j := range text {
		if j == i {
			return true
		}
		if j > i {
			break
		}
	}
	return false
}

// FuzzFind checks that Find never panics, that spans are in bounds, on
// rune boundaries and non-empty, and that the prefilter loses nothing.
func FuzzFind(f *testing.F) {
	for _, s := range []string{"kill myself", "k i l l   m y s e l f", "i want to really d1e", "ｓｕｉｃｉｄａｌ", "s.e.x education",
		"therapist Scunthorpe Essex", "$elf-h4rm", "k\u200bill\u0301 my\xffself", "'!|+@$", "a\nb\r\nkill\nmyself",
		"кіll mуself", "Ноты: сборник нот", "ѕех chat", "УБИТЬ СЕБЯ", "ΝΑΙ Νν νΝ", "أُرِيدُ أَنْ أَمُوتَ", "nobody one would miss you"} {
		f.Add(s)
	}
	m := fuzzMatcher()
	f.Fuzz(func(t *testing.T, text string) {
		ms := m.Find(text)
		for _, x := range ms {
			if x.Start < 0 || x.End > len(text) || x.Start >= x.End {
				t.Fatalf("bad span %d-%d", x.Start, x.End)
			}
			if !isBoundary(text, x.Start) || !isBoundary(text, x.End) {
				t.Fatalf("span %d-%d not on rune boundaries", x.Start, x.End)
			}
			if x.Text != text[x.Start:x.End] {
				t.Fatalf("Text mismatch")
			}
		}
		if ref := m.findEveryLine(text); !slices.Equal(ms, ref) {
			t.Fatalf("prefilter lost or added matches:\n got %v\nwant %v", ms, ref)
		}
		_ = Normalize(text)
	})
}
