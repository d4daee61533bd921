package bus

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/collector/rulesdist"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
)

// TestRulesBundlesReachFrontEnds: the store-owning collector's RulesMirror
// puts every bundle its real rulesdist.Distributor composed (the trust's
// pack, a school's override, its generated file) into the rules bucket of
// a real node, and a front-end's RulesCache, which has no rules folder,
// serves each school exactly that bundle: an override edited at the
// store-owning collector arrives, an unchanged bundle is not put again, a
// damaged entry is ignored, and a deleted school's bundles go (Sync and
// ForgetSchool) without touching the others'.
func TestRulesBundlesReachFrontEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	storerBus, frontBus := storerAndFront(t, ctx)
	skv, err := storerBus.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fkv, err := frontBus.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}

	base := t.TempDir()
	sdir := filepath.Join(base, rulesdist.SchoolRulesDir)
	var mu sync.Mutex
	schools := []string{"default", "oak"}
	d, err := rulesdist.New(filepath.Join(base, "rules"), slog.New(slog.NewTextHandler(io.Discard, nil)),
		rulesdist.WithSchools(func() ([]string, error) { mu.Lock(); defer mu.Unlock(); return append([]string(nil), schools...), nil }, sdir))
	if err != nil {
		t.Fatal(err)
	}
	override := func(body string) {
		t.Helper()
		if err := os.MkdirAll(filepath.Join(sdir, "oak"), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(sdir, "oak", "local.yaml"), []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
		if err := d.Reload(); err != nil {
			t.Fatal(err)
		}
	}
	override("# oak's own rules, none yet\n")
	d.SetExtra(func(school, _ string) map[string][]byte {
		return map[string][]byte{"keywords/school-bullying.txt": []byte("#! rule: keywords-school-bullying\n#! category: bullying\n#! severity: medium\n#! name: t\n" + school + "nick ; severity=high # r\n")}
	})
	d.Refresh()
	m := &RulesMirror{KV: skv, Source: d}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	c := &RulesCache{}
	changes := make(chan struct{}, 64)
	go c.Run(ctx, fkv, func() { changes <- struct{}{} }, testLogger())
	wait := func(what string, cond func() bool) { t.Helper(); waitChanged(t, changes, time.Minute, what, cond) }
	same := func(school, group string) bool {
		got, want := c.Bundle(school, group), d.Bundle(school, group)
		return got != nil && want != nil && got.Hash == want.Hash && got.Version == want.Version
	}
	wait("every bundle at the front-end", func() bool { return same("oak", "pupils") && same("default", "pupils") })
	if !same("", "staff") {
		t.Error(`school "" is not the default school, or a group without a folder is not the default group's`)
	}
	oak := c.Bundle("oak", "pupils")
	if oak.Files["local.yaml"] == nil || !strings.Contains(string(oak.Files["keywords/school-bullying.txt"]), "oaknick") {
		t.Errorf("Oak's bundle at the front-end lacks its override or its terms: %v", len(oak.Files))
	}
	if c.Bundle("default", "pupils").Files["local.yaml"] != nil || strings.Contains(string(c.Bundle("default", "pupils").Files["keywords/school-bullying.txt"]), "oak") {
		t.Error("Oak's files reached the default school")
	}
	if c.Bundle("elm", "pupils") != nil {
		t.Error("a school not mirrored got another school's bundle")
	}

	key := RulesKey("oak", rulesdist.DefaultGroup)
	rev := func() uint64 {
		e, err := fkv.Get(ctx, key)
		if err != nil {
			t.Fatal(err)
		}
		return e.Revision()
	}
	before := rev()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if rev() != before {
		t.Error("an unchanged bundle was put again")
	}

	// Oak's technician edits its override at the store-owning collector.
	override("# oak's own rules, edited\n")
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	wait("Oak's edited override", func() bool {
		return same("oak", "pupils") && strings.Contains(string(c.Bundle("oak", "pupils").Files["local.yaml"]), "edited")
	})

	// A damaged entry is ignored; a good one after it proves it was read.
	bad, _ := proto.Marshal(&vigilv1.RulesBundle{Hash: "sha256:00", Files: map[string][]byte{"x.yaml": []byte("x")}})
	if _, err := skv.Put(ctx, key, bad); err != nil {
		t.Fatal(err)
	}
	probe, _ := proto.Marshal(&vigilv1.RulesBundle{Hash: rules.HashFiles(nil)})
	if _, err := skv.Put(ctx, "probe.default", probe); err != nil {
		t.Fatal(err)
	}
	wait("the probe entry", func() bool { return c.Bundle("probe", "default") != nil })
	if !same("oak", "default") {
		t.Error("a damaged entry replaced Oak's bundle")
	}

	// Oak leaves: its bundles go, the default school's stay.
	forgot, err := storerBus.ForgetSchool(ctx, "oak")
	if err != nil {
		t.Fatal(err)
	}
	_ = forgot
	wait("Oak's bundles removed", func() bool { return c.Bundle("oak", "pupils") == nil })
	if !same("default", "pupils") {
		t.Error("the default school's bundle went with Oak's")
	}
	mu.Lock()
	schools = []string{"default"}
	mu.Unlock()
	if err := os.RemoveAll(filepath.Join(sdir, "oak")); err != nil {
		t.Fatal(err)
	}
	if err := d.Reload(); err != nil {
		t.Fatal(err)
	}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := skv.Get(ctx, key); err == nil {
		t.Error("Sync put a deleted school's bundle back")
	}
}
