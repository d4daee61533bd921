package bus

import (
	"context"
	"sync"

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
