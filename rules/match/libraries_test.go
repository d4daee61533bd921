package match

import "testing"

// TestPublishedLibraries runs every test case of the default keyword
// libraries in rules/keywords through the matcher the agent uses: each '+'
// line must match its library, each '-' line must not.
func TestPublishedLibraries(t *testing.T) {
	libs, cases, errs := LoadDir("../keywords")
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	if len(libs) < 11 {
		t.Fatalf("%d libraries, want the 11 default ones", len(libs))
	}
	n := 0
	for _, cs := range cases {
		n += len(cs)
	}
	if errs := CheckDir("../keywords"); len(errs) > 0 {
		t.Fatal(errs)
	}
	t.Logf("%d libraries, %d cases pass", len(libs), n)
}
