package rulesdist

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
	"github.com/vigil-safeguarding/vigil/rules/exclusions"
)

// TestExtraFilesInEveryBundle: generated files join every group's bundle,
// the hash covers them, approving an exclusion changes the hash (Refresh
// reports it), an unchanged list keeps the bundle, and invalid generated
// files are left out.
func TestExtraFilesInEveryBundle(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "rules")
	d, err := New(dir, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.MkdirAll(filepath.Join(dir, "staff"), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(dir, "staff", "empty.yaml"), []byte("# no rules yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	plain := map[string]string{DefaultGroup: d.Bundle("", DefaultGroup).Hash, "staff": d.Bundle("", "staff").Hash}

	var mu sync.Mutex
	var approved []exclusions.Exclusion
	d.SetExtra(func(_, group string) map[string][]byte {
		mu.Lock()
		defer mu.Unlock()
		return map[string][]byte{exclusions.Path: exclusions.Marshal(approved)}
	})
	if !d.Refresh() {
		t.Error("adding the (empty) exclusions file did not change the bundles")
	}
	before := map[string]string{}
	for _, g := range []string{DefaultGroup, "staff", "no-such-folder"} {
		b := d.Bundle("", g)
		if string(b.Files[exclusions.Path]) != string(exclusions.Marshal(nil)) {
			t.Errorf("%s: bundle lacks %s: %q", g, exclusions.Path, b.Files[exclusions.Path])
		}
		if b.Hash != rules.HashFiles(b.Files) {
			t.Errorf("%s: hash does not cover the files", g)
		}
		if g != "no-such-folder" && b.Hash == plain[g] {
			t.Errorf("%s: hash unchanged by the extra file", g)
		}
		before[g] = b.Hash
	}
	if d.Refresh() {
		t.Error("Refresh without a change reported one")
	}

	now := time.Now().UTC()
	mu.Lock()
	approved = append(approved, exclusions.Exclusion{ID: "x1", LibraryRuleID: "keywords-self-harm", Term: "cut myself",
		Reason: "drama project", ApprovedBy: "dsl1", ApprovedAt: now, ExpiresAt: now.Add(24 * time.Hour)})
	mu.Unlock()
	if !d.Refresh() {
		t.Fatal("approving an exclusion did not change the bundles")
	}
	for _, g := range []string{DefaultGroup, "staff"} {
		b := d.Bundle("", g)
		if b.Hash == before[g] {
			t.Errorf("%s: hash unchanged after approval", g)
		}
		list, err := exclusions.Parse(b.Files[exclusions.Path])
		if err != nil || len(list) != 1 || list[0].Term != "cut myself" {
			t.Errorf("%s: exclusions %+v %v", g, list, err)
		}
		// The agent's loader accepts the bundle as sent.
		if _, errs := rules.LoadFiles(b.Files, anyKind{}); errs != nil {
			t.Errorf("%s: bundle does not load: %v", g, errs)
		}
	}
	// A folder edit keeps the generated file.
	if err := os.WriteFile(filepath.Join(dir, "staff", "more.yaml"), []byte("# still none\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if _, ok := d.Bundle("", "staff").Files["more.yaml"]; !ok || d.Bundle("", "staff").Files[exclusions.Path] == nil {
		t.Error("reload lost the folder edit or the generated file")
	}
	// Invalid generated files are left out rather than breaking the bundle.
	d.SetExtra(func(_, _ string) map[string][]byte { return map[string][]byte{exclusions.Path: []byte("{")} })
	d.Refresh()
	if b := d.Bundle("", DefaultGroup); b.Files[exclusions.Path] != nil || b.Hash != plain[DefaultGroup] {
		t.Error("invalid generated file was included")
	}
}

// TestSchoolBundlesLayered: each school's bundle is the trust's pack, its
// own overrides by path, then its generated files; one school's overrides
// and generated files never reach another school's bundle; a school with
// nothing of its own gets the trust's pack byte for byte; a school not yet
// listed gets its own bundle at its first request, not another's; an
// override that does not validate keeps the school's previous overrides;
// and the history records each school's bundle under its school.
func TestSchoolBundlesLayered(t *testing.T) {
	base := t.TempDir()
	dir, sdir := filepath.Join(base, "rules"), filepath.Join(base, SchoolRulesDir)
	schools := []string{"default", "oak-primary", "elm-academy"}
	var mu sync.Mutex
	h, err := store.Open(filepath.Join(base, "badger"), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { h.Close() })
	d, err := New(dir, slog.New(slog.NewTextHandler(io.Discard, nil)), WithHistory(h),
		WithSchools(func() ([]string, error) { mu.Lock(); defer mu.Unlock(); return append([]string(nil), schools...), nil }, sdir))
	if err != nil {
		t.Fatal(err)
	}
	trust := d.Bundle("", DefaultGroup)
	pack, err := os.ReadFile(filepath.Join(dir, DefaultGroup, "bluetooth.yaml"))
	if err != nil {
		t.Fatal(err)
	}
	// Oak switches the trust's Bluetooth rules off and adds a file.
	off := strings.ReplaceAll(string(pack), "enabled: true", "enabled: false")
	if off == string(pack) {
		t.Fatal("the default pack's bluetooth.yaml has no enabled: true to override")
	}
	writeFile(t, filepath.Join(sdir, "oak-primary", "bluetooth.yaml"), off)
	writeFile(t, filepath.Join(sdir, "oak-primary", "local.yaml"), "# oak's own rules, none yet\n")
	// Each school's generated file names the school.
	d.SetExtra(func(school, _ string) map[string][]byte {
		if school == "default" {
			return nil
		}
		return map[string][]byte{"keywords/school-bullying.txt": []byte("#! rule: keywords-school-bullying\n#! category: bullying\n#! severity: medium\n#! name: t\n" + school + "secret ; severity=high # r\n")}
	})
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	oak, elm, def := d.Bundle("oak-primary", "pupils"), d.Bundle("elm-academy", "pupils"), d.Bundle("default", "pupils")
	if string(oak.Files["bluetooth.yaml"]) != off || oak.Files["local.yaml"] == nil {
		t.Errorf("oak's overrides are not in its bundle: %q", oak.Files["bluetooth.yaml"][:80])
	}
	if string(elm.Files["bluetooth.yaml"]) != string(pack) || elm.Files["local.yaml"] != nil {
		t.Error("oak's overrides reached elm's bundle")
	}
	if def.Hash != trust.Hash {
		t.Errorf("the default school, with nothing of its own, does not get the trust's pack byte for byte")
	}
	for name, b := range map[string]*vigilv1.RulesBundle{"oak": oak, "elm": elm, "default": def} {
		for p, data := range b.Files {
			for _, other := range []string{"oak-primary", "elm-academy"} {
				if !strings.HasPrefix(other, name) && strings.Contains(string(data), other+"secret") {
					t.Errorf("%s's bundle carries %s's generated term in %s", name, other, p)
				}
			}
		}
		if b.Hash != rules.HashFiles(b.Files) {
			t.Errorf("%s: hash does not cover the files", name)
		}
	}
	if !strings.Contains(string(oak.Files["keywords/school-bullying.txt"]), "oak-primarysecret") {
		t.Error("oak's generated file is not in its bundle")
	}

	// A school added since the last rebuild: its own bundle at once.
	ash := d.Bundle("ash-college", "pupils")
	if ash == nil || !strings.Contains(string(ash.Files["keywords/school-bullying.txt"]), "ash-collegesecret") {
		t.Errorf("a school not yet listed did not get its own bundle: %v", ash)
	}

	// An override that does not validate keeps oak's previous overrides.
	writeFile(t, filepath.Join(sdir, "oak-primary", "local.yaml"), "apiVersion: vigil/v1\nid: [\n")
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if got := d.Bundle("oak-primary", "pupils"); got.Hash != oak.Hash {
		t.Error("a broken override changed oak's bundle; it should keep the last good one")
	}

	last, _ := h.LastRulesChanges()
	for _, k := range []string{"default", "oak-primary/default", "elm-academy/default", "ash-college/default"} {
		c, ok := last[k]
		if !ok {
			t.Errorf("no rules history for %s (have %v)", k, keysOf(last))
			continue
		}
		if school, _, _ := strings.Cut(k, "/"); strings.Contains(k, "/") && c.School != school {
			t.Errorf("%s recorded under school %q", k, c.School)
		}
	}
	if c := last["oak-primary/default"]; c.Files["bluetooth.yaml"] == last["default"].Files["bluetooth.yaml"] {
		t.Error("oak's history does not show its override")
	}
}

func writeFile(t *testing.T, p, data string) {
	t.Helper()
	if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(p, []byte(data), 0o600); err != nil {
		t.Fatal(err)
	}
}

func keysOf(m map[string]store.RulesChange) []string {
	var out []string
	for k := range m {
		out = append(out, k)
	}
	return out
}
