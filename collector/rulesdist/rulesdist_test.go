package rulesdist

import (
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

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
