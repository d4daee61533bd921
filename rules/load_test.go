package rules

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

func ruleYAML(id string) string {
	return fmt.Sprintf("apiVersion: vigil/v1\nid: %s\nname: N\nrationale: R\nseverity: low\ncategory: c\ncheck: selftest\n", id)
}

func writeFiles(t *testing.T, dir string, files map[string]string) {
	t.Helper()
	for name, content := range files {
		p := filepath.Join(dir, filepath.FromSlash(name))
		if err := os.MkdirAll(filepath.Dir(p), 0o755); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(content), 0o644); err != nil {
			t.Fatal(err)
		}
	}
}

func TestLoadDir(t *testing.T) {
	dir := t.TempDir()
	writeFiles(t, dir, map[string]string{
		"b.yaml":             ruleYAML("zeta"),
		"a.yml":              ruleYAML("alpha") + "---\n" + ruleYAML("mid") + "enabled: false\n",
		"sub/deep/c.yaml":    ruleYAML("beta"),
		"README.md":          "not a rule",
		".hidden.yaml":       "garbage: [",
		".git/config.yaml":   "garbage: [",
		"sub/notes.txt":      "x",
		"sub/.#lock.yaml":    "garbage",
		"sub/deep/empty.yml": "# nothing yet\n",
	})
	set, errs := LoadDir(dir, testKinds)
	if errs != nil {
		t.Fatalf("errors: %v", errs)
	}
	var ids []string
	for _, r := range set.Rules {
		ids = append(ids, r.ID)
	}
	if got := strings.Join(ids, ","); got != "alpha,beta,mid,zeta" {
		t.Errorf("ids = %s", got)
	}
	var enabled []string
	for _, r := range set.Enabled() {
		enabled = append(enabled, r.ID)
	}
	if got := strings.Join(enabled, ","); got != "alpha,beta,zeta" {
		t.Errorf("enabled = %s", got)
	}
	if len(set.Files) != 4 || set.Files["sub/deep/c.yaml"] == nil || set.Files["sub/deep/empty.yml"] == nil {
		t.Errorf("files = %v", keys(set.Files))
	}
	if set.Hash != HashFiles(set.Files) || !strings.HasPrefix(set.Hash, "sha256:") || len(set.Hash) != 7+64 {
		t.Errorf("hash = %q", set.Hash)
	}
	if set.Version != "" {
		t.Errorf("version = %q", set.Version)
	}
	if p := set.Rules[1].Pos; p.File != filepath.Join(dir, "sub", "deep", "c.yaml") || p.Line != 1 {
		t.Errorf("pos = %v", p)
	}
	// A bundle round-trips through LoadFiles with the same hash and rules.
	set2, errs := LoadFiles(set.Files, testKinds)
	if errs != nil || set2.Hash != set.Hash || len(set2.Rules) != len(set.Rules) {
		t.Fatalf("round trip: %v %v", set2, errs)
	}
}

func keys(m map[string][]byte) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}

func TestLoadDirErrors(t *testing.T) {
	dir := t.TempDir()
	rel := filepath.Base(dir)
	writeFiles(t, dir, map[string]string{
		// Order is by forward-slash path: "a.yaml" < "a/b.yaml" < "z.yaml".
		"a/b.yaml": ruleYAML("dup"),
		"a.yaml":   "\n" + ruleYAML("dup"),
		"z.yaml":   ruleYAML("ok") + "bogus: 1\n",
		"big.yaml": strings.Repeat("#", MaxFileSize+1),
	})
	// Use a relative dir "as given" to check positions are dir-joined.
	t.Chdir(filepath.Dir(dir))
	set, errs := LoadDir(rel+"/", testKinds)
	if set != nil {
		t.Error("set must be nil on error")
	}
	got := errs.Error()
	exp := strings.Join([]string{
		rel + "/a/b.yaml:2:5: duplicate id \"dup\" (first defined at " + rel + "/a.yaml:3)",
		rel + fmt.Sprintf("/big.yaml:1:1: file is %d bytes; the limit is %d", MaxFileSize+1, MaxFileSize),
		rel + "/z.yaml:8:1: unknown key \"bogus\" in rule",
	}, "\n")
	if got != exp {
		t.Errorf("got:\n%s\nwant:\n%s", got, exp)
	}
}

func TestLoadDirMissing(t *testing.T) {
	_, errs := LoadDir(filepath.Join(t.TempDir(), "nope"), testKinds)
	if len(errs) != 1 || !strings.Contains(errs[0].Msg, "cannot read rules directory") {
		t.Errorf("errs = %v", errs)
	}
	f := filepath.Join(t.TempDir(), "f.yaml")
	os.WriteFile(f, []byte(ruleYAML("x")), 0o644)
	if _, errs := LoadDir(f, testKinds); len(errs) != 1 || errs[0].Msg != "not a directory" {
		t.Errorf("errs = %v", errs)
	}
}

func TestLoadDirTooManyFiles(t *testing.T) {
	dir := t.TempDir()
	for i := 0; i <= MaxFiles; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("r%04d.yaml", i)), []byte(ruleYAML(fmt.Sprintf("r%d", i))), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, errs := LoadDir(dir, testKinds)
	if len(errs) != 1 || errs[0].Error() != dir+": more than 2000 rule files" {
		t.Errorf("errs = %v", errs)
	}
	os.Remove(filepath.Join(dir, "r0000.yaml"))
	if set, errs := LoadDir(dir, testKinds); errs != nil || len(set.Rules) != MaxFiles {
		t.Errorf("2000 files must load: %v", errs)
	}
}

func TestLoadDirTooBig(t *testing.T) {
	dir := t.TempDir()
	chunk := []byte(strings.Repeat("# padding padding padding\n", (MaxFileSize-100)/26))
	for i := 0; i*len(chunk) <= MaxTotalSize; i++ {
		if err := os.WriteFile(filepath.Join(dir, fmt.Sprintf("r%02d.yaml", i)), chunk, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	_, errs := LoadDir(dir, testKinds)
	if len(errs) != 1 || errs[0].Error() != dir+": rule files total more than 16777216 bytes" {
		t.Errorf("errs = %v", errs)
	}
}

func TestLoadFiles(t *testing.T) {
	files := map[string][]byte{
		"x/one.yaml": []byte(ruleYAML("one")),
		"two.yml":    []byte(ruleYAML("two")),
	}
	set, errs := LoadFiles(files, testKinds)
	if errs != nil {
		t.Fatal(errs)
	}
	h := set.Hash
	files["two.yml"][0] = 'X' // the set keeps its own copy
	if HashFiles(set.Files) != h || set.Files["two.yml"][0] != 'a' {
		t.Error("set shares caller's bytes")
	}

	_, errs = LoadFiles(map[string][]byte{"a.yaml": []byte(ruleYAML("same")), "b/c.yaml": []byte(ruleYAML("same"))}, testKinds)
	if errs.Error() != `b/c.yaml:2:5: duplicate id "same" (first defined at a.yaml:2)` {
		t.Errorf("dup: %v", errs)
	}

	for _, bad := range []string{"/abs.yaml", "../up.yaml", "a/../b.yaml", "./a.yaml", "a\\b.yaml", "c:x.yaml", "a.json", "", ".hidden.yaml", "d/.x/a.yaml", "a//b.yaml"} {
		_, errs := LoadFiles(map[string][]byte{bad: []byte(ruleYAML("x"))}, testKinds)
		if len(errs) != 1 || !strings.HasPrefix(errs[0].Error(), "<bundle>: invalid file name ") {
			t.Errorf("%q: %v", bad, errs)
		}
	}
	big := map[string][]byte{"a.yaml": bytes.Repeat([]byte("#"), MaxFileSize+1)}
	if _, errs := LoadFiles(big, testKinds); errs.Error() != fmt.Sprintf("a.yaml:1:1: file is %d bytes; the limit is %d", MaxFileSize+1, MaxFileSize) {
		t.Errorf("big: %v", errs)
	}
	many := map[string][]byte{}
	for i := 0; i <= MaxFiles; i++ {
		many[fmt.Sprintf("%d.yaml", i)] = nil
	}
	if _, errs := LoadFiles(many, testKinds); len(errs) != 1 {
		t.Errorf("many: %v", errs)
	}
	total := map[string][]byte{}
	for i := 0; i <= MaxTotalSize/MaxFileSize; i++ {
		total[fmt.Sprintf("%d.yaml", i)] = make([]byte, MaxFileSize)
	}
	if _, errs := LoadFiles(total, testKinds); len(errs) != 1 || errs[0].Msg != "rule files total more than 16777216 bytes" {
		t.Errorf("total: %v", errs)
	}
}

func TestHashFiles(t *testing.T) {
	var hashes []string
	for i := 0; i < 20; i++ {
		m := map[string][]byte{}
		// Insert in varying orders; map iteration is randomised anyway.
		names := []string{"a.yaml", "b/c.yaml", "d.yml", "e.yaml"}
		for j := range names {
			n := names[(i+j)%len(names)]
			m[n] = []byte("content of " + n)
		}
		hashes = append(hashes, HashFiles(m))
	}
	for _, h := range hashes {
		if h != hashes[0] {
			t.Fatalf("unstable hash: %s vs %s", h, hashes[0])
		}
	}
	base := map[string][]byte{"a.yaml": []byte("x: 1\n")}
	variants := []map[string][]byte{
		{"a.yaml": []byte("x: 2\n")},
		{"b.yaml": []byte("x: 1\n")},
		{"a.yaml": []byte("x: 1\n"), "b.yaml": nil},
		{"a.yam": []byte("lx: 1\n")}, // same concatenation, different split
		{},
	}
	h := HashFiles(base)
	seen := map[string]bool{h: true}
	for _, v := range variants {
		hv := HashFiles(v)
		if seen[hv] {
			t.Errorf("collision for %v", keys(v))
		}
		seen[hv] = true
	}
	// Known value: guards against accidental changes to the encoding,
	// which would make agents and servers disagree.
	if got := HashFiles(map[string][]byte{"a.yaml": []byte("x")}); got != knownHash {
		t.Errorf("HashFiles changed: %s", got)
	}
}

const knownHash = "sha256:369577d1e0d79013eb8c19fa13d59d519405106549280cabbc11661fb099eebf"

func TestDefaults(t *testing.T) {
	files := Defaults()
	if files["selftest.yaml"] == nil {
		t.Fatalf("default pack: %v", keys(files))
	}
	// Only the selftest file here: the other default files belong to check
	// kinds registered by the agent (agent/checks/all tests the whole pack).
	set, errs := LoadFiles(map[string][]byte{"selftest.yaml": files["selftest.yaml"]}, KindMap{"selftest": NoParams})
	if errs != nil {
		t.Fatal(errs)
	}
	if len(set.Rules) != 1 {
		t.Fatalf("rules: %v", set.Rules)
	}
	r := set.Rules[0]
	if r.ID != "selftest" || r.Check != "selftest" || r.Severity != Info || r.Category != "selftest" || !r.Enabled ||
		r.Schedule.Interval != 24*time.Hour || r.Params == nil || len(r.Params.Content) != 0 || len(r.Rationale) < 50 {
		t.Errorf("selftest rule: %+v", r)
	}
	// Unknown to a registry without the selftest kind.
	if _, errs := LoadFiles(files, KindMap{}); errs == nil {
		t.Error("want unknown kind error")
	}
	files["selftest.yaml"][0] = '!'
	if Defaults()["selftest.yaml"][0] == '!' {
		t.Error("Defaults must return a fresh copy")
	}
}
