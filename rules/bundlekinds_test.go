package rules

import (
	"errors"
	"path/filepath"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"
)

// needsFile is a BundleKinds whose selftest rules need the file their
// params name in the set.
type needsFile struct{ KindMap }

func (needsFile) ValidateBundle(kind string, params *yaml.Node, files map[string][]byte) error {
	if params == nil {
		return nil
	}
	v := params.Content[1]
	if _, ok := files[v.Value]; !ok {
		return &Error{Pos: Pos{Line: v.Line, Col: v.Column}, Msg: "needs " + v.Value}
	}
	return nil
}

// TestBundleKinds: a set whose rules parse is refused when a rule's check
// finds a file it needs missing from the set, at the position the check
// gives, in the rule's file; the set loads once the file is there.
func TestBundleKinds(t *testing.T) {
	kinds := needsFile{KindMap{"selftest": nil}}
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{"a.yaml": ruleYAML("a") + "params:\n  file: other.yaml\n"})
	_, errs := LoadDir(dir, kinds)
	want := filepath.Join(dir, "a.yaml") + ":9:9: needs other.yaml"
	if len(errs) != 1 || errs[0].Error() != want {
		t.Fatalf("errors %v, want %q", errs, want)
	}
	writeFiles(t, dir, map[string]string{"other.yaml": ruleYAML("b")})
	if _, errs := LoadDir(dir, kinds); errs != nil {
		t.Fatal(errs)
	}
	// A plain error is reported at the rule.
	plain := plainErr{KindMap{"selftest": nil}}
	_, errs = LoadFiles(map[string][]byte{"a.yaml": []byte(ruleYAML("a"))}, plain)
	if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "a.yaml:1:1: invalid params: nope") {
		t.Fatalf("errors %v", errs)
	}
}

type plainErr struct{ KindMap }

func (plainErr) ValidateBundle(string, *yaml.Node, map[string][]byte) error {
	return errors.New("nope")
}
