package match

import (
	"slices"
	"strings"
	"testing"
)

func TestGapAnchor(t *testing.T) {
	common := commonAnchorWords()
	for _, c := range []struct {
		term string
		want int
	}{
		{"send noods", 1},       // the verb is common, the object is not
		{"want to die", 2},      // want and to are common
		{"you are ugly", 2},     // the only uncommon word
		{"fight the kuffar", 2}, // fight is common here
		{"paracetamol to die", 0},
		{"meet me dont tell", 2}, // all common: the longest after squashing (meet is met)
		{"get out of", 0},        // all common, same length: the first
	} {
		if got := gapAnchor(termPieces(c.term), common); got != c.want {
			t.Errorf("gapAnchor(%q) = %d, want %d", c.term, got, c.want)
		}
	}
}

// TestGapAnchorLosesNothing runs every gap term of the published libraries
// in the spellings the matcher accepts (words spaced, gap words between
// them, words joined, spaced-out letters) and checks that the prefiltered
// Find gives exactly what verifying every line gives: anchoring a gap term
// on a later word must never lose a match, in particular when that word is
// joined to the one before it.
func TestGapAnchorLosesNothing(t *testing.T) {
	libs, _, errs := LoadDir("../keywords")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	m, err := Compile(libs...)
	if err != nil {
		t.Fatal(err)
	}
	n, found := 0, 0
	for _, l := range libs {
		for _, term := range l.Terms {
			if term.Gap == 0 {
				continue
			}
			ws := strings.Fields(term.Text)
			var texts []string
			texts = append(texts, strings.Join(ws, " "), strings.Join(ws, " really "), strings.Join(ws, ""),
				strings.Join(ws, "-"), strings.Join(strings.Split(strings.Join(ws, ""), ""), " "))
			for k := 1; k < len(ws); k++ { // words k-1 and k joined, the rest spaced with a gap word
				v := append([]string{}, ws...)
				v[k-1] += v[k]
				v = slices.Delete(v, k, k+1)
				texts = append(texts, strings.Join(v, " so "), "x "+strings.Join(v, " ")+" y")
			}
			for _, text := range texts {
				n++
				got, want := m.Find(text), m.findEveryLine(text)
				if !slices.Equal(got, want) {
					t.Errorf("%s: %q: prefilter lost or added matches:\n got %v\nwant %v", term.Pos, text, got, want)
				}
				for _, x := range want {
					if x.Term == term.Text {
						found++
						break
					}
				}
			}
		}
	}
	if found == 0 {
		t.Fatal("no gap term matched any spelling: the test checks nothing")
	}
	t.Logf("%d spellings of gap terms, %d matched their term", n, found)
}

// FuzzFindLibraries is FuzzFind with the published libraries, whose gap
// terms are anchored on later words (anchor.go).
func FuzzFindLibraries(f *testing.F) {
	for _, s := range []string{"send me noods", "sendnoods", "s e n d n o o d s", "i want to really die", "wanttodie",
		"cut is fatty", "cutfatty", "you are so ugly", "youareugly", "fight the kuffar", "fightthekuffar"} {
		f.Add(s)
	}
	libs, _, errs := LoadDir("../keywords")
	if len(errs) > 0 {
		f.Fatal(errs)
	}
	m, err := Compile(libs...)
	if err != nil {
		f.Fatal(err)
	}
	f.Fuzz(func(t *testing.T, text string) {
		if got, want := m.Find(text), m.findEveryLine(text); !slices.Equal(got, want) {
			t.Fatalf("prefilter lost or added matches:\n got %v\nwant %v", got, want)
		}
	})
}
