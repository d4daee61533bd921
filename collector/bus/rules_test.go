package bus

import (
	"context"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
)

// TestRulesFilesReachFrontEnds: the store-owning collector's RulesMirror
// puts each school's generated rules files into the rules bucket of a real
// node, and a front-end's RulesCache serves them: each school its own, a
// change pushed (changed called) within the wait, unchanged files not put
// again, a deleted school's entry removed, and an entry that does not match
// its hash ignored (the previous files stay).
func TestRulesFilesReachFrontEnds(t *testing.T) {
	node, err := StartNode(Config{Dir: t.TempDir(), ServerName: "solo", ClientListen: "127.0.0.1:-1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	storerBus, err := Connect(ctx, []string{node.ClientURL()}, Config{ServerName: "storer", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(storerBus.Close)
	frontBus, err := Connect(ctx, []string{node.ClientURL()}, Config{ServerName: "front", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(frontBus.Close)
	skv, err := storerBus.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fkv, err := frontBus.Rules(ctx)
	if err != nil {
		t.Fatal(err)
	}

	var mu sync.Mutex
	schools := []string{"default", "oak"}
	terms := map[string]string{"default": "ashnick", "oak": "oaknick"}
	m := &RulesMirror{KV: skv,
		Schools: func() ([]string, error) { mu.Lock(); defer mu.Unlock(); return append([]string(nil), schools...), nil },
		Files: func(sc string) map[string][]byte {
			mu.Lock()
			defer mu.Unlock()
			return map[string][]byte{"keywords/school-bullying.txt": []byte(terms[sc] + "\n")}
		}}
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	c := &RulesCache{}
	changes := make(chan struct{}, 16)
	go c.Run(ctx, fkv, func() { changes <- struct{}{} }, testLogger())
	wait := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.After(time.Minute)
		for !cond() {
			select {
			case <-changes:
			case <-time.After(100 * time.Millisecond):
			case <-deadline:
				t.Fatalf("timed out: %s", what)
			}
		}
	}
	lib := func(sc string) string { return string(c.Files(sc, "pupils")["keywords/school-bullying.txt"]) }
	wait("both schools' files", func() bool { return lib("oak") == "oaknick\n" && lib("default") == "ashnick\n" })
	if lib("") != "ashnick\n" {
		t.Error(`school "" is not the default school`)
	}

	rev := func() uint64 {
		e, err := fkv.Get(ctx, "oak")
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
		t.Error("unchanged files were put again")
	}

	mu.Lock()
	terms["oak"] = "oaknick\noakother"
	mu.Unlock()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	wait("oak's change", func() bool { return strings.Contains(lib("oak"), "oakother") })
	if strings.Contains(lib("default"), "oak") {
		t.Error("oak's files reached the default school")
	}

	// A damaged entry is ignored.
	bad, _ := proto.Marshal(&vigilv1.RulesBundle{Hash: "sha256:00", Files: map[string][]byte{"x.yaml": []byte("x")}})
	if _, err := skv.Put(ctx, "oak", bad); err != nil {
		t.Fatal(err)
	}
	// A good entry after it: once the cache has it, it has seen the bad
	// one (the watch delivers in order).
	probe, _ := proto.Marshal(&vigilv1.RulesBundle{Hash: rules.HashFiles(nil), Files: nil})
	if _, err := skv.Put(ctx, "probe", probe); err != nil {
		t.Fatal(err)
	}
	wait("the probe entry", func() bool { c.mu.RLock(); defer c.mu.RUnlock(); _, ok := c.files["probe"]; return ok })
	if !strings.Contains(lib("oak"), "oakother") {
		t.Errorf("a damaged entry replaced oak's files: %q", lib("oak"))
	}
	mu.Lock()
	schools = []string{"default"}
	mu.Unlock()
	if err := m.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	wait("oak's entry removed", func() bool { return c.Files("oak", "") == nil })
	if lib("default") != "ashnick\n" {
		t.Errorf("the default school's files: %q", lib("default"))
	}
}
