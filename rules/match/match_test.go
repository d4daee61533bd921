package match

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"sync"
	"testing"

	"github.com/vigil-safeguarding/vigil/rules"
)

// lib builds a library from term lines (library format without header).
func lib(t testing.TB, rule string, lines ...string) *Library {
	t.Helper()
	src := "#! rule: " + rule + "\n#! category: test\n#! severity: medium\n" + strings.Join(lines, "\n") + "\n"
	l, errs := ParseLibrary(rule+".txt", []byte(src))
	if errs != nil {
		t.Fatalf("parse: %v", errs)
	}
	return l
}

func compile(t testing.TB, libs ...*Library) *Matcher {
	t.Helper()
	m, err := Compile(libs...)
	if err != nil {
		t.Fatal(err)
	}
	return m
}

// find returns the original substrings matched, checking them against the
// reference (no prefilter) and the spans' invariants.
func find(t testing.TB, m *Matcher, text string) []string {
	t.Helper()
	ms := m.Find(text)
	checkMatches(t, text, ms)
	if ref := m.findEveryLine(text); !slices.Equal(ms, ref) {
		t.Fatalf("Find(%q) = %v, reference without prefilter = %v", text, ms, ref)
	}
	var out []string
	for _, x := range ms {
		out = append(out, x.Text)
	}
	return out
}

func checkMatches(t testing.TB, text string, ms []Match) {
	t.Helper()
	for i, x := range ms {
		if x.Start < 0 || x.End > len(text) || x.Start >= x.End {
			t.Fatalf("bad span %d-%d in %q", x.Start, x.End, text)
		}
		if !isBoundary(text, x.Start) || !isBoundary(text, x.End) {
			t.Fatalf("span %d-%d not on rune boundaries in %q", x.Start, x.End, text)
		}
		if x.Text != text[x.Start:x.End] {
			t.Fatalf("Text %q != text[%d:%d]", x.Text, x.Start, x.End)
		}
		if i > 0 && ms[i-1].Start > x.Start {
			t.Fatalf("not sorted: %v", ms)
		}
	}
}

func TestNormalize(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"KILL", "kI"},
		{"ｋｉｌｌ", "kI"},                  // NFKC fullwidth
		{"𝐤𝐢𝐥𝐥", "kI"},                  // mathematical bold
		{"kíll", "kI"},                  // diacritics
		{"ki\u0301ll", "kI"},            // combining mark
		{"kіll", "kI"},                  // Cyrillic і
		{"ΚΙLL", "kI"},                  // Greek capitals
		{"gοal", "goaI"},                // Greek omicron
		{"рау now", "pay now"},          // Cyrillic р а у in a Latin line
		{"k1ll", "kI"},                  // leet 1
		{"ki11", "kI"},                  // leet 1 as l
		{"k!ll", "kI"},                  // ! inside a word
		{"k|ll", "kI"},                  // | inside a word
		{"@ss", "as"},                   // @ leading a word
		{"$h1t", "shIt"},                // $ leading a word
		{"h0t", "hot"},                  // 0
		{"3v4", "eva"},                  // 3, 4
		{"5+4b8", "stab"},               // 5 + 4 8
		{"kiiiilll", "kI"},              // repeats squashed
		{"shoooot", "shot"},             // repeats squashed
		{"k i l l", "kI"},               // spaced letters joined
		{"k.i.l.l", "kI"},               // dotted
		{"k-i-l-l", "kI"},               // hyphens
		{"k_i_l_l", "kI"},               // underscores
		{"k  i  l  l", "kI"},            // two separators still join
		{"k i l l   m e", "kI me"},      // a wider gap separates words
		{"k\u200bill", "kI"},            // zero-width space ignored
		{"kill!!", "kI"},                // trailing ! is punctuation
		{"don't", "dont"},               // apostrophe inside a word
		{"don’t", "dont"},               // typographic apostrophe
		{"rock 'n' roll", "rock n roI"}, // quotes around a word
		{"straße", "strase"},            // ß
		{"Kill myself", "kI myseIf"},
		{"", ""},
	} {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestObfuscationOffsets(t *testing.T) {
	m := compile(t, lib(t, "r", "kill ; except=whale # test"))
	for _, tc := range []struct{ text, want string }{
		{"I will KILL you", "KILL"},
		{"ｋｉｌｌ it", "ｋｉｌｌ"},
		{"just kíll", "kíll"},
		{"kі\u0301ll", "kі\u0301ll"},
		{"to kіll.", "kіll"},
		{"k1ll", "k1ll"},
		{"ki11", "ki11"},
		{"k!ll them", "k!ll"},
		{"KIIIILLLL", "KIIIILLLL"},
		{"go k i l l now", "k i l l"},
		{"k.i.l.l", "k.i.l.l"},
		{"(k-i-l-l)", "k-i-l-l"},
		{"k_i_l_l", "k_i_l_l"},
		{"k\u200bill", "k\u200bill"},
		{"«kill»", "kill"},
	} {
		got := find(t, m, tc.text)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%q: got %q, want [%q]", tc.text, got, tc.want)
		}
	}
}

func TestWordBoundaries(t *testing.T) {
	m := compile(t,
		lib(t, "a", "rapist # t", "cunt # t", "sex # t", "kill # t", "ass ; exact # t"),
	)
	for _, text := range []string{
		"my therapist", "Scunthorpe", "Essex", "Sussex", "Middlesex", "skill", "skills",
		"killer whale", "a skill lesson", "pass the ball", "p a s s", "class", "assess", "as",
		"the sexton", "kills", "i k i l l",
	} {
		if got := find(t, m, text); len(got) != 0 {
			t.Errorf("%q: unexpected %q", text, got)
		}
	}
	for _, tc := range []struct{ text, want string }{
		{"the rapist", "rapist"},
		{"sex", "sex"},
		{"Essex sex", "sex"},
		{"kill", "kill"},
		{"kill-er", "kill"},
		{"s kill", "kill"}, // a lone letter is a word of its own
		{"kil", "kil"},     // documented: squashing and the i/l class make "kil" equal "kill"
		{"ass", "ass"},
		{"ASS", "ASS"},
	} {
		got := find(t, m, tc.text)
		if len(got) != 1 || got[0] != tc.want {
			t.Errorf("%q: got %q, want [%q]", tc.text, got, tc.want)
		}
	}
}

func TestPhrasesAndGaps(t *testing.T) {
	m := compile(t,
		lib(t, "p", "kill myself # t", "want to die ; gap=1 # t", "our little secret ; gap=2 # t"),
		lib(t, "q", "kill my self # written split: also matches joined"),
	)
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"i will kill myself", []string{"kill myself", "kill myself"}},
		{"killmyself", []string{"killmyself", "killmyself"}},
		{"kill-myself", []string{"kill-myself", "kill-myself"}},
		{"kill my self", []string{"kill my self"}},
		{"kill\tmyself!", []string{"kill\tmyself", "kill\tmyself"}},
		{"k i l l m y s e l f", []string{"k i l l m y s e l f", "k i l l m y s e l f"}},
		{"k i l l   m y s e l f", []string{"k i l l   m y s e l f", "k i l l   m y s e l f"}},
		{"kill literally myself", nil},
		{"kill\nmyself", nil}, // lines are separate
		{"i want to die", []string{"want to die"}},
		{"i want to really die", []string{"want to really die"}},
		{"i want really to die", []string{"want really to die"}},
		{"i want to really truly die", nil},
		{"i wantto die", nil}, // documented: joining made a repeat ("tt") that the term's words lack
		{"this is our little secret ok", []string{"our little secret"}},
		{"our very little big secret", []string{"our very little big secret"}},
		{"skill myself", nil},
		{"kill myselfish", nil},
	} {
		got := find(t, m, tc.text)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestExcept(t *testing.T) {
	m := compile(t,
		lib(t, "v", "shoot ; except=basketball,photo,hoops,goal,film # t", "cut ; except=hair,paper,price cut # t"),
	)
	for _, tc := range []struct {
		text string
		n    int
	}{
		{"i will shoot him", 1},
		{"basketball: how to shoot a three", 0},
		{"photo shoot tomorrow", 0},
		{"photos shoot", 0}, // except words match as prefixes
		{"shoot on goal", 0},
		{"we will shoot the film on monday", 0},
		{"shoot one two three four five six basketball", 1}, // outside ±5 words
		{"basketball one two three four shoot", 0},          // the 5th word before: inside
		{"basketball one two three four five shoot", 1},     // the 6th: outside
		{"she got a hair cut", 0},
		{"cut the paper", 0},
		{"a big price cut today", 0},
		{"a big price of cut", 1}, // phrase words must be adjacent
		{"i cut myself", 1},
		{"basketball\nshoot", 1}, // context stays on the line
	} {
		if got := find(t, m, tc.text); len(got) != tc.n {
			t.Errorf("%q: got %q, want %d matches", tc.text, got, tc.n)
		}
	}
}

func TestSeverityAndFields(t *testing.T) {
	l := lib(t, "keywords-x", "kill myself ; severity=critical # t", "end it all # t")
	m := compile(t, l)
	ms := m.Find("end it all, kill myself")
	if len(ms) != 2 {
		t.Fatalf("got %v", ms)
	}
	want := []Match{
		{RuleID: "keywords-x", Category: "test", Severity: rules.Medium, Term: "end it all", Start: 0, End: 10, Text: "end it all"},
		{RuleID: "keywords-x", Category: "test", Severity: rules.Critical, Term: "kill myself", Start: 12, End: 23, Text: "kill myself"},
	}
	if !slices.Equal(ms, want) {
		t.Fatalf("got %+v\nwant %+v", ms, want)
	}
}

func TestPrefixAndExact(t *testing.T) {
	m := compile(t,
		lib(t, "p", "suicid ; prefix # t", "anorex ; prefix ; exact # t"),
		lib(t, "e", "sex ; exact # t", "ass ; exact # t"),
	)
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"suicidal thoughts", []string{"suicidal"}},
		{"suicide", []string{"suicide"}},
		{"SU1C1DAL", []string{"SU1C1DAL"}},
		{"nonsuicidal", nil},
		{"suici", nil},
		{"anorexia", []string{"anorexia"}},
		{"an0rexia", nil}, // exact: no leet
		{"sex", []string{"sex"}},
		{"s e x", []string{"s e x"}}, // spacing still folded
		{"SEX", []string{"SEX"}},
		{"5ex", nil},
		{"$ex", nil},
		{"sexx", nil},
		{"ѕех", nil}, // Cyrillic lookalikes: not folded in exact mode
		{"as", nil},  // loose "as" == "ass", exact rejects
		{"asss", nil},
		{"ass", []string{"ass"}},
	} {
		got := find(t, m, tc.text)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestDedupeAndOverlap(t *testing.T) {
	a := lib(t, "a", "kill # t", "kill myself # t")
	b := lib(t, "b", "kill # t")
	m := compile(t, a, b)
	ms := m.Find("kill myself")
	var got []string
	for _, x := range ms {
		got = append(got, fmt.Sprintf("%s:%s:%d-%d", x.RuleID, x.Term, x.Start, x.End))
	}
	want := []string{"a:kill:0-4", "b:kill:0-4", "a:kill myself:0-11"}
	if !slices.Equal(got, want) {
		t.Fatalf("got %v want %v", got, want)
	}
	// FindAppend keeps dst.
	dst := m.FindAppend([]Match{{Term: "x"}}, "kill")
	if len(dst) != 3 || dst[0].Term != "x" {
		t.Fatalf("FindAppend: %v", dst)
	}
}

func TestCompileErrors(t *testing.T) {
	for _, tm := range []Term{
		{Text: "!!!"},
		{Text: "kill", Gap: 2},
		{Text: "kill me", Gap: 4},
		{Text: "kill", Prefix: true},
		{Text: "a b c d e", Gap: 1},
	} {
		if _, err := Compile(&Library{RuleID: "r", Terms: []Term{tm}}); err == nil {
			t.Errorf("Compile(%+v): no error", tm)
		}
	}
}

// TestPrefilterAgreesWithReference compares Find with the reference path
// (every line normalised and verified) on random obfuscated text.
func TestPrefilterAgreesWithReference(t *testing.T) {
	m := compile(t, benchLibrary(benchTerms300()),
		lib(t, "x", "kill myself # t", "want to die ; gap=2 # t", "suicid ; prefix # t", "sex ; exact # t", "ass ; exact # t", "shoot ; except=photo # t", "self harm # t"))
	r := rand.New(rand.NewPCG(7, 8))
	pieces := []string{"kill", "myself", "k i l l", "m y s e l f", "want", "to", "die", "d1e", "suicidal", "sex", "s.e.x",
		"ass", "pass", "shoot", "photo", "self", "harm", "selfharm", "kіll", "ki11", "KILL", "@ss", "$elf", "h4rm", "'", "!", " ", "  ",
		"\n", "-", ".", "é", "\u0301", "\u200b", "ｋｉｌｌ", "lol", "the", "a", "i", "l", "1", "|", "+", "’", "\xff", "x"}
	for n := 0; n < 3000; n++ {
		var sb strings.Builder
		for range 1 + r.IntN(25) {
			sb.WriteString(pieces[r.IntN(len(pieces))])
			if r.IntN(3) > 0 {
				sb.WriteByte(' ')
			}
		}
		find(t, m, sb.String())
	}
	// Long text: exercises the interleaved lanes.
	text := benchText(64 << 10)
	got := m.Find(text)
	if ref := m.findEveryLine(text); !slices.Equal(got, ref) {
		t.Fatalf("long text: %d matches, reference %d", len(got), len(ref))
	}
	if len(got) == 0 {
		t.Fatal("no matches in benchmark text")
	}
}

func TestConcurrentFind(t *testing.T) {
	m := compile(t, lib(t, "r", "kill myself # t"))
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 200 {
				text := strings.Repeat("x ", g+i%7) + "kill myself"
				if ms := m.Find(text); len(ms) != 1 || ms[0].Text != "kill myself" {
					t.Errorf("got %v", ms)
					return
				}
			}
		}()
	}
	wg.Wait()
}

func TestFindAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("sync.Pool drops items at random under the race detector")
	}
	m := compile(t, benchLibrary(benchTerms300()))
	text := benchText(32 << 10)
	dst := m.FindAppend(nil, text)
	allocs := testing.AllocsPerRun(20, func() { dst = m.FindAppend(dst[:0], text) })
	if allocs > 1 {
		t.Errorf("%v allocations per FindAppend", allocs)
	}
}
