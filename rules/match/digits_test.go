package match

import "testing"

// TestDigitsForDoubledLetters pins down why issue 12's "digits standing in
// for doubled letters" needed no matcher change: leetspeak folds each digit
// to its letter and repeat squashing then treats the pair like the doubled
// letter, so "n00dz" is "noodz" and "w33d" is "weed". What the libraries
// lacked was the slang word itself ("noodz" is not "nudes"). 2 and 6 stay
// digits on purpose ("2" is "to" in text-speak, not a letter).
func TestDigitsForDoubledLetters(t *testing.T) {
	for _, c := range [][2]string{
		{"n00dz", "noodz"}, {"w33d", "weed"}, {"b00bs", "boobs"}, {"ki11", "kill"}, {"a55", "ass"},
		{"s3nd n00ds", "send noods"}, {"k3t", "ket"}, {"c0k3", "coke"}, {"bl33d", "bleed"},
	} {
		if a, b := Normalize(c[0]), Normalize(c[1]); a != b {
			t.Errorf("Normalize(%q) = %q, Normalize(%q) = %q: want equal", c[0], a, c[1], b)
		}
	}
	if Normalize("send 2 me") == Normalize("send to me") {
		t.Errorf("2 must stay a digit")
	}
	// And the published libraries catch the digit spellings of their slang.
	libs, _, errs := LoadDir("../keywords")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	m, err := Compile(libs...)
	if err != nil {
		t.Fatal(err)
	}
	for _, text := range []string{"snap me ur n00dz", "s3nd me n00ds", "w33d 4 sale", "anyone got k3t"} {
		if len(m.Find(text)) == 0 {
			t.Errorf("%q: no match", text)
		}
	}
}
