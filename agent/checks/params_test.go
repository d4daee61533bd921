package checks

import (
	"errors"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/rules"
)

type testParams struct {
	MaxAge  time.Duration `yaml:"max_signature_age"`
	Paths   []string      `yaml:"paths"`
	Entries []struct {
		Hash string `yaml:"sha256"`
	} `yaml:"allow"`
}

func node(t *testing.T, src string) *yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

func TestDecodeParams(t *testing.T) {
	var p testParams
	if err := DecodeParams(node(t, "max_signature_age: 72h\npaths: [/tmp]\nallow:\n  - sha256: ab\n"), &p); err != nil {
		t.Fatal(err)
	}
	if p.MaxAge != 72*time.Hour || len(p.Paths) != 1 || p.Entries[0].Hash != "ab" {
		t.Fatalf("decoded %+v", p)
	}
	for src, wantLine := range map[string]int{
		"paths: [/tmp]\nbogus: 1\n":          2,
		"allow:\n  - sha256: ab\n    x: 1\n": 3,
	} {
		err := DecodeParams(node(t, src), &testParams{})
		var re *rules.Error
		if !errors.As(err, &re) || re.Line != wantLine {
			t.Errorf("%q: error %v, want one at line %d", src, err, wantLine)
		}
	}
	if err := DecodeParams(node(t, "paths: 3\n"), &testParams{}); err == nil {
		t.Error("wrong type accepted")
	}
	if err := DecodeParams(nil, &testParams{}); err != nil {
		t.Error(err)
	}
}

func TestDuration(t *testing.T) {
	var p struct {
		Age Duration `yaml:"age"`
	}
	if err := DecodeParams(node(t, "age: 3d\n"), &p); err != nil || time.Duration(p.Age) != 72*time.Hour {
		t.Fatalf("3d: %v %v", p.Age, err)
	}
	err := DecodeParams(node(t, "\nage: 3 days\n"), &p)
	var re *rules.Error
	if !errors.As(err, &re) || re.Line != 2 || re.Col != 6 {
		t.Fatalf("bad duration error %v", err)
	}
}
