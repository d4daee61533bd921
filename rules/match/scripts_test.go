package match

import (
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// Lookalike letters fold to Latin only where they are homoglyphs: inside a
// word that mixes scripts, or a wholly Cyrillic (Greek) word in a Latin
// line without any real Cyrillic (Greek) letter. Real Cyrillic and Greek
// text is kept.
func TestNormalizeScripts(t *testing.T) {
	for _, tc := range []struct{ in, want string }{
		{"kіll", "kI"},           // Cyrillic і inside a Latin word
		{"кіll", "kI"},           // Cyrillic к і, Latin ll
		{"mуself", "myseIf"},     // Cyrillic у
		{"ΚΙLL", "kI"},           // Greek capitals with Latin letters
		{"ѕеχ", "sex"},           // Cyrillic ѕ е with Greek χ: mixed lookalike scripts
		{"ѕех chat", "sex chat"}, // whole-Cyrillic lookalike word in a Latin line
		{"рау", "рау"},           // alone: read as Cyrillic
		{"привет", "привет"},     // Russian: kept
		{"Как дела", "как дела"}, // lookalikes kept: д л are real Cyrillic
		{"Ноты: сборник нот", "ноты сборник нот"},  // н о т kept: ы б и are real Cyrillic
		{"Привіт, як справи?", "привіт як справи"}, // Ukrainian і kept
		{"ёлка Ёж", "елка еж"},                     // ё → е (decomposition)
		{"Όχι, ευχαριστώ", "οχι ευχαριστω"},        // Greek: accents dropped, letters kept
		{"ΘΑΝΑΤΟΣ", "θανατοσ"},                     // Greek capitals, final sigma
		{"привет кіll", "привет kI"},               // a mixed word folds even in a Cyrillic line
		// Arabic script: tashkeel, tatweel, hamza carriers, letter variants.
		{"أُرِيدُ أَنْ أَمُوتَ", "اريد ان اموت"},
		{"أريـــد", "اريد"},
		{"إنتحار آخر", "انتحار اخر"},
		{"خودکشی", "خودكشي"},           // Urdu keheh and Farsi yeh → Arabic kaf and yeh
		{"خودكشى", "خودكشي"},           // alef maksura → yeh
		{"ﺧﻮﺩﻛﺸﻲ", "خودكشي"},           // presentation forms
		{"مدرسة مدرسہ", "مدرسه مدرسه"}, // teh marbuta, heh goal → heh
		// Polish: diacritics and ł fold, so text typed without them matches.
		{"Zabiję się", "zabIje sIe"},
		{"Łódź żółć", "Iodz zoIc"},
		// Welsh: circumflexes drop; ll and dd squash like any repeat.
		{"Dŵr lladd", "dwr Iad"},
	} {
		if got := Normalize(tc.in); got != tc.want {
			t.Errorf("Normalize(%q) = %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestMixedScriptMatching(t *testing.T) {
	m := compile(t,
		lib(t, "latin", "kill myself # t", "sex chat # t", "hot # t", "oxi # t", "pay ; exact # t"),
		lib(t, "cyr", "убить себя # Russian: kill oneself", "як померти # Ukrainian: how to die", "нет # t"),
		lib(t, "greek", "θανατος # t"),
	)
	for _, tc := range []struct {
		text string
		want []string
	}{
		// Homoglyph attacks on Latin terms are still caught.
		{"i want to кіll mуself", []string{"кіll mуself"}},
		{"KІLL MYSЕLF - Google Search", []string{"KІLL MYSЕLF"}},
		{"ѕех chat - free", []string{"ѕех chat"}},
		{"привет, кіll myself", []string{"кіll myself"}},
		// Real Cyrillic and Greek text is not mangled into Latin words.
		{"Ноты: сборник нот для фортепиано", nil},
		{"Όχι, ευχαριστώ", nil},
		{"рау", nil},
		// Cyrillic and Greek terms match Cyrillic and Greek text.
		{"как убить себя - Поиск в Google", []string{"убить себя"}},
		{"УБИТЬ СЕБЯ", []string{"УБИТЬ СЕБЯ"}},
		{"як померти швидко", []string{"як померти"}},
		{"Нет, спасибо", []string{"Нет"}},
		{"ΘΑΝΑΤΟΣ", []string{"ΘΑΝΑΤΟΣ"}},
		// ... and not their Latin lookalikes.
		{"het", nil},
		{"ubit sebya", nil},
	} {
		got := find(t, m, tc.text)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.text, got, tc.want)
		}
	}
}

func TestArabicScriptMatching(t *testing.T) {
	m := compile(t,
		lib(t, "ar", "أريد أن أموت # Arabic: I want to die"),
		lib(t, "ur", "خودکشی # Urdu: suicide", "مرنا چاہتا ہوں # Urdu: I want to die"),
	)
	for _, tc := range []struct {
		text string
		want []string
	}{
		{"اريد ان اموت", []string{"اريد ان اموت"}},
		{"أُرِيدُ أَنْ أَمُوتَ", []string{"أُرِيدُ أَنْ أَمُوت"}}, // the span ends at the last letter
		{"أريـــد أن أمـوت", []string{"أريـــد أن أمـوت"}},
		{"خودكشي كيسے كريں", []string{"خودكشي"}},
		{"ﺧﻮﺩﻛﺸﻲ", []string{"ﺧﻮﺩﻛﺸﻲ"}},
		{"میں مرنا چاهتا هوں", []string{"مرنا چاهتا هوں"}},
		{"خودکشی‌ها", nil}, // ZWNJ joins: one word, not the term
		{"أريد أن أعيش", nil},
	} {
		got := find(t, m, tc.text)
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: got %q, want %q", tc.text, got, tc.want)
		}
	}
}

// The prefilter reads every lookalike as Latin while verification decides
// per word: random mixed-script text must give the same matches with and
// without it.
func TestMixedScriptPrefilter(t *testing.T) {
	m := compile(t,
		lib(t, "latin", "kill myself # t", "hot # t", "nude pics # t", "sex chat ; gap=1 # t", "pay ; exact # t"),
		lib(t, "cyr", "убить себя # t", "нет # t", "сосна # t"),
		lib(t, "greek", "θανατος # t", "ναι # t", "ηλιος ; prefix # t"),
	)
	pieces := []string{"kill", "кіll", "кill", "myself", "mуsеlf", "hot", "нот", "ΗΟΤ", "Ηοt", "nude", "ηude", "pics", "рісs",
		"sex", "ѕех", "chat", "сhат", "pay", "рау", "убить", "УБИТЬ", "себя", "нет", "НЕТ", "Нет", "сосна", "СОСНА",
		"θανατος", "ΘΑΝΑΤΟΣ", "ΘΑΝνΑΤΟΣ", "ναι", "ΝΑΙ", "Ναι", "ηλιος", "ΗΛΙΟΣ", "ηλιοσ", "ы", "д", "σ", "a", " ", " ", "-", "\n", "k1ll", "Νν", "νΝ"}
	rng := rand.New(rand.NewPCG(1, 2))
	for range 20000 {
		var sb strings.Builder
		for range 1 + rng.IntN(8) {
			sb.WriteString(pieces[rng.IntN(len(pieces))])
			if rng.IntN(3) > 0 {
				sb.WriteByte(' ')
			}
		}
		text := sb.String()
		if got, ref := m.Find(text), m.findEveryLine(text); !slices.Equal(got, ref) {
			t.Fatalf("Find(%q) = %v, reference without prefilter = %v", text, got, ref)
		}
	}
}

// With every published library and language pack, the prefilter finds
// exactly what verifying every line finds, on the benchmark corpora
// (English, and with other languages mixed in) and on the packs' own cases.
func TestPrefilterPublishedLibraries(t *testing.T) {
	libs, cases, errs := LoadDir("../keywords")
	if errs != nil {
		t.Fatal(errs)
	}
	m := compile(t, libs...)
	texts := []string{benchOnce()[:200<<10], benchMultilingual()[:200<<10]}
	var sb strings.Builder
	for _, cs := range cases {
		for _, c := range cs {
			sb.WriteString(c.Text + "\n")
		}
	}
	texts = append(texts, sb.String())
	for i, text := range texts {
		got, ref := m.Find(text), m.findEveryLine(text)
		if !slices.Equal(got, ref) {
			t.Errorf("text %d: prefilter found %d matches, verifying every line %d", i, len(got), len(ref))
		}
	}
}
