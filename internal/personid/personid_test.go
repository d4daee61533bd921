package personid

import (
	"strings"
	"testing"
)

// identityForms are spellings of the account dsl1 that devices, the MIS
// and people produce; every one must be the same person. The console's
// TestSelfExclusionEveryIdentityForm drives a subset through every path.
var identityForms = map[string]string{
	"plain":                "dsl1",
	"upper":                "DSL1",
	"mixed":                "Dsl1",
	"netbios domain":       `SCHOOL\dsl1`,
	"netbios domain upper": `SCHOOL\DSL1`,
	"upn":                  "dsl1@school.example",
	"upn upper":            "DSL1@SCHOOL.EXAMPLE",
	"both forms":           `SCHOOL\dsl1@school.example`,
	"zero width space":     "dsl\u200b1",
	"zero width joiner":    "ds\u200dl1",
	"zero width non-join":  "d\u200csl1",
	"bom":                  "\ufeffdsl1",
	"soft hyphen":          "dsl\u00ad1",
	"word joiner":          "dsl\u20601",
	"bidi override":        "\u202edsl1\u202c",
	"variation selector":   "dsl\ufe0f1",
	"hangul filler":        "dsl\u31641",
	"fullwidth":            "ｄｓｌ１",
	"fullwidth upper":      "ＤＳＬ１",
	"fullwidth backslash":  "SCHOOL＼dsl1",
	"fullwidth at":         "dsl1＠school.example",
	"small reverse solid.": "SCHOOL\ufe68dsl1",
	"mathematical bold":    "𝐝𝐬𝐥𝟏",
	"circled digit":        "dsl\u2460", // ① is 1 under NFKC
	"trailing spaces":      "dsl1   ",
	"leading tab":          "\tdsl1",
	"nbsp":                 "dsl1\u00a0",
	"ideographic space":    "\u3000dsl1",
	"inner space":          "dsl 1",
	"newline":              "dsl1\r\n",
	"nul":                  "dsl1\x00",
	"invalid utf-8":        "dsl1\xff",
	"everything":           " \u200bＳＣＨＯＯＬ＼Ｄ\u00adＳ\u200dＬ１@School.Example\ufeff ",
}

func TestCanonicalForms(t *testing.T) {
	for name, form := range identityForms {
		if got := Canonical(form); got != "dsl1" {
			t.Errorf("%s: Canonical(%q) = %q, want dsl1", name, form, got)
		}
		if !Same(form, "dsl1") {
			t.Errorf("%s: Same(%q, dsl1) is false", name, form)
		}
	}
}

func TestCanonicalKeepsPeopleApart(t *testing.T) {
	for _, pair := range [][2]string{
		{"dsl1", "dsl2"},
		{"dsl1", "dsl11"},
		{"jsmith", "j.smith"},
		{"jsmith", "jsmith2@school.example"},
		{"dsl1", "dѕl1"}, // Cyrillic ѕ: a different account to the OS (see Canonical)
		{"josé", "jose"}, // accents are letters, not decoration
		{"dsl1", "dsl1x@school.example"},
	} {
		if Same(pair[0], pair[1]) {
			t.Errorf("Same(%q, %q): two people matched as one (%q)", pair[0], pair[1], Canonical(pair[0]))
		}
	}
}

func TestCanonicalNobody(t *testing.T) {
	for _, s := range []string{"", "   ", "\u200b\u200d\ufeff", `SCHOOL\`, "@school.example", "\u00ad"} {
		if got := Canonical(s); got != "" {
			t.Errorf("Canonical(%q) = %q, want nobody", s, got)
		}
		if Same(s, s) {
			t.Errorf("Same(%q, itself): nobody matched nobody", s)
		}
	}
}

func TestCanonicalUnicodeCase(t *testing.T) {
	// Full folding, not just lower-casing: ß and ẞ, final sigma, Kelvin sign.
	for _, pair := range [][2]string{{"straße", "STRASSE"}, {"ΣΟΦΙΑ", "σοφια"}, {"σοφιας", "ΣΟΦΙΑΣ"}, {"\u212aim", "kim"}, {"İ", "i̇"}} {
		if !Same(pair[0], pair[1]) {
			t.Errorf("Same(%q, %q) false: %q vs %q", pair[0], pair[1], Canonical(pair[0]), Canonical(pair[1]))
		}
	}
	// Canonical is idempotent, so a stored canonical key matches its source.
	for _, form := range identityForms {
		c := Canonical(form)
		if Canonical(c) != c {
			t.Errorf("Canonical not idempotent on %q: %q then %q", form, c, Canonical(c))
		}
	}
	if c := Canonical(strings.Repeat("Ａ", 100)); c != strings.Repeat("a", 100) {
		t.Errorf("long fullwidth: %q", c)
	}
}

func BenchmarkCanonical(b *testing.B) {
	for _, bc := range []struct{ name, s string }{{"ascii", `SCHOOL\JSmith`}, {"unicode", "ｊｓｍｉｔｈ\u200b@school.example"}} {
		b.Run(bc.name, func(b *testing.B) {
			for b.Loop() {
				Canonical(bc.s)
			}
		})
	}
}
