package bus

import (
	"context"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

var protoUnmarshal = proto.Unmarshal

// countingStore adds up what the store reported for the storer's commits.
type countingStore struct {
	FindingStore
	mu           sync.Mutex
	stored, dups int
}

func (c *countingStore) CommitFindings(ctx context.Context, fs []*vigilv1.Finding) (int, int, error) {
	s, d, err := c.FindingStore.CommitFindings(ctx, fs)
	c.mu.Lock()
	c.stored += s
	c.dups += d
	c.mu.Unlock()
	return s, d, err
}

func (c *countingStore) totals() (int, int) {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stored, c.dups
}

// storerAndFront starts a standalone node (as `nats-node` runs it) and
// connects a store-owning collector's bus and a front-end's to it by URL.
func storerAndFront(t *testing.T, ctx context.Context) (storer, front *Bus) {
	t.Helper()
	node, err := StartNode(Config{Dir: t.TempDir(), ServerName: "solo", ClientListen: "127.0.0.1:-1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	for _, b := range []struct {
		name string
		into **Bus
	}{{"storer", &storer}, {"front", &front}} {
		bus, err := Connect(ctx, []string{node.ClientURL()}, Config{ServerName: b.name, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(bus.Close)
		*b.into = bus
	}
	return storer, front
}

// waitChanged waits up to within for cond, checking it after each change
// a cache reports and at least every 100 ms.
func waitChanged(t *testing.T, changes <-chan struct{}, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.After(within)
	for !cond() {
		select {
		case <-changes:
		case <-time.After(100 * time.Millisecond):
		case <-deadline:
			t.Fatalf("timed out: %s", what)
		}
	}
}
