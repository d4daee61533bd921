package bus

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/nats-io/nats.go"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// DefaultMaxInFlight bounds the publishes one publisher has waiting for a
// PubAck. Each waiting publish holds its agent's batch (and a goroutine)
// in memory; with the cluster behind (an R3 stream fsyncing every write on
// a busy machine) they piled up until a front-end held 1.7-1.9 GB for
// 6,000 streams (docs/benchmarks.md, 2026-12-06).
const DefaultMaxInFlight = 2048

// InFlight bounds publishes waiting for their PubAck. A publish that finds
// every slot taken, or whose PubAck does not come in time, is refused with
// store.ErrOverloaded: the gRPC server answers RESOURCE_EXHAUSTED with a
// retry delay, as it does when Badger is behind, and the agent keeps the
// batch in its spool and sends it again later. The zero value holds
// DefaultMaxInFlight.
type InFlight struct {
	Max int

	once  sync.Once
	slots chan struct{}
}

func (l *InFlight) init() {
	l.once.Do(func() {
		n := l.Max
		if n <= 0 {
			n = DefaultMaxInFlight
		}
		l.slots = make(chan struct{}, n)
	})
}

// or is l, or own when l is nil (a publisher's bound of its own).
func (l *InFlight) or(own *InFlight) *InFlight {
	if l != nil {
		return l
	}
	return own
}

// do runs publish in a slot.
func (l *InFlight) do(ctx context.Context, what string, publish func() error) error {
	l.init()
	select {
	case l.slots <- struct{}{}:
	default:
		return fmt.Errorf("%w: %d publishes already wait for NATS (%s)", store.ErrOverloaded, cap(l.slots), what)
	}
	defer func() { <-l.slots }()
	err := publish()
	if err != nil && ctx.Err() == nil && (errors.Is(err, context.DeadlineExceeded) || errors.Is(err, nats.ErrTimeout)) {
		// The PubAck did not come in time: the cluster is behind, not
		// this agent's batch at fault.
		return fmt.Errorf("%w: NATS did not acknowledge in time (%s): %v", store.ErrOverloaded, what, err)
	}
	return err
}

// Waiting is the number of publishes waiting for their PubAck.
func (l *InFlight) Waiting() int {
	l.init()
	return len(l.slots)
}
