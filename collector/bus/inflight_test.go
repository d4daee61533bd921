package bus

import (
	"context"
	"errors"
	"testing"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// With every publish slot taken (the cluster behind), a batch or a device
// event is refused at once with store.ErrOverloaded (RESOURCE_EXHAUSTED
// to the agent, which keeps the batch), nothing is published, and a freed
// slot publishes again; findings and events share the one bound.
func TestPublishesInFlightBounded(t *testing.T) {
	b := startBus(t, Config{Dir: t.TempDir()})
	if err := b.EnsureEvents(context.Background()); err != nil {
		t.Fatal(err)
	}
	lim := &InFlight{Max: 2}
	pub := &Publisher{JS: b.JetStream(), InFlight: lim}
	events := &EventPublisher{JS: b.JetStream(), InFlight: lim}
	ev := &vigilv1.DeviceEvent{DeviceId: "devA", At: timestamppb.Now(), Event: &vigilv1.DeviceEvent_Heartbeat{Heartbeat: &vigilv1.Heartbeat{AgentVersion: "t"}}}
	ctx := context.Background()
	if n, _, err := pub.CommitFindings(ctx, batch("devA", 1, 3)); err != nil || n != 3 {
		t.Fatalf("publish with free slots: %d %v", n, err)
	}
	lim.init()
	lim.slots <- struct{}{} // two publishes waiting on a cluster that is behind
	lim.slots <- struct{}{}
	if lim.Waiting() != 2 {
		t.Fatalf("waiting %d", lim.Waiting())
	}
	if _, _, err := pub.CommitFindings(ctx, batch("devA", 4, 3)); !errors.Is(err, store.ErrOverloaded) {
		t.Fatalf("publish with every slot taken: %v, want ErrOverloaded", err)
	}
	if err := events.DeviceEvent(ctx, ev); !errors.Is(err, store.ErrOverloaded) {
		t.Fatalf("event with every slot taken: %v, want ErrOverloaded", err)
	}
	if got := streamMsgs(t, b); got != 1 {
		t.Fatalf("stream holds %d messages, want only the first batch", got)
	}
	<-lim.slots
	if n, _, err := pub.CommitFindings(ctx, batch("devA", 4, 3)); err != nil || n != 3 {
		t.Fatalf("publish once a slot is free: %d %v", n, err)
	}
	if err := events.DeviceEvent(ctx, ev); err != nil {
		t.Fatalf("event once a slot is free: %v", err)
	}
	if lim.Waiting() != 1 {
		t.Errorf("slots not given back: %d waiting", lim.Waiting())
	}
}
