package match

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"testing/fstest"
)

func TestExampleLibraries(t *testing.T) {
	if errs := CheckDir("testdata/keywords"); errs != nil {
		t.Fatalf("example libraries:\n%v", errs)
	}
	libs, cases, errs := LoadDir("testdata/keywords")
	if errs != nil {
		t.Fatal(errs)
	}
	if len(libs) != 3 {
		t.Fatalf("got %d libraries, want 3", len(libs))
	}
	for _, lib := range libs {
		if len(cases[lib.File]) == 0 {
			t.Errorf("%s: no cases", lib.File)
		}
		if !strings.HasPrefix(lib.File, filepath.Join("testdata", "keywords")) {
			t.Errorf("File = %q", lib.File)
		}
	}
}

func TestCheckCasesReportsFailures(t *testing.T) {
	fsys := fstest.MapFS{
		"k/a.txt":   {Data: []byte("#! rule: r-a\n#! category: c\n#! severity: low\nkill myself # why\n")},
		"k/a.cases": {Data: []byte("+ nothing here\n- i will kill myself\n+ kill myself\n")},
	}
	errs := CheckFS(fsys, "k")
	if len(errs) != 2 {
		t.Fatalf("got %v, want 2 problems", errs)
	}
	if errs[0].Line != 1 || !strings.Contains(errs[0].Msg, "expected a match") {
		t.Errorf("first problem: %v", errs[0])
	}
	if errs[1].Line != 2 || !strings.Contains(errs[1].Msg, "unexpected match") {
		t.Errorf("second problem: %v", errs[1])
	}
}

func TestLoadErrors(t *testing.T) {
	fsys := fstest.MapFS{
		"k/a.txt":        {Data: []byte("#! rule: same\n#! category: c\n#! severity: low\nkill myself # why\n")},
		"k/b.txt":        {Data: []byte("#! rule: same\n#! category: c\n#! severity: low\nend it all # why\n")},
		"k/orphan.cases": {Data: []byte("+ x\n")},
		"k/bad.txt":      {Data: []byte("#! rule: bad\n#! category: c\n#! severity: low\nkill myself\n")},
	}
	_, _, errs := LoadFS(fsys, "k")
	msg := errs.Error()
	for _, want := range []string{"k/b.txt:1:1: rule id \"same\" is also used by k/a.txt", "k/orphan.cases: test cases without a library", "k/bad.txt:4:12: missing rationale"} {
		if !strings.Contains(msg, want) {
			t.Errorf("errors lack %q:\n%s", want, msg)
		}
	}
}

func TestLoadDirPositions(t *testing.T) {
	dir := t.TempDir()
	if err := os.WriteFile(filepath.Join(dir, "x.txt"), []byte("#! rule: x\n#! category: c\n#! severity: nope\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	_, _, errs := LoadDir(dir)
	if len(errs) != 1 || errs[0].File != filepath.Join(dir, "x.txt") || errs[0].Line != 3 || errs[0].Col != 14 {
		t.Fatalf("got %#v", errs)
	}
}
