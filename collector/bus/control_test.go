package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// heldAgents stands in for a front-end's gRPC server: the devices it holds
// answer with their kind echoed; blocking ones wait for their context.
type heldAgents struct {
	held     map[string]bool
	blocking bool
	waited   chan time.Duration
}

func (h *heldAgents) Connected(id string) bool { return h.held[id] }

func (h *heldAgents) Request(ctx context.Context, id, kind string, _ map[string]any) (*vigilv1.RequestResult, error) {
	if h.blocking {
		dl, _ := ctx.Deadline()
		h.waited <- time.Until(dl)
		<-ctx.Done()
		return nil, ctx.Err()
	}
	return &vigilv1.RequestResult{Ok: true, Error: kind + " by " + id}, nil
}

// TestControlReachesHoldingFrontEnd: of two front-ends subscribed to the
// same device (one that no longer holds its stream), the holder answers;
// a released device has no responder; the front-end waits no longer than
// the requester.
func TestControlReachesHoldingFrontEnd(t *testing.T) {
	node, err := StartNode(Config{Dir: t.TempDir(), ServerName: "solo", ClientListen: "127.0.0.1:-1", Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(node.Close)
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	conn := func(name string) *Bus {
		b, err := Connect(ctx, []string{node.ClientURL()}, Config{ServerName: name, Logger: testLogger()})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(b.Close)
		return b
	}
	storer, fe1, fe2 := conn("storer"), conn("fe1"), conn("fe2")
	a1 := &heldAgents{held: map[string]bool{"dev-a": true}}
	a2 := &heldAgents{held: map[string]bool{"dev-a": true}}
	c1 := &ControlServer{NC: fe1.Conn(), Agents: a1, Logger: testLogger()}
	c2 := &ControlServer{NC: fe2.Conn(), Agents: a2, Logger: testLogger()}
	c1.Held("dev-a")
	c2.Held("dev-a")
	a2.held["dev-a"] = false // its stream moved to fe1; fe2 not told yet
	fe1.Conn().Flush()
	fe2.Conn().Flush()
	client := &ControlClient{NC: storer.Conn()}
	for i := 0; i < 20; i++ {
		res, err := client.Request(ctx, "dev-a", &vigilv1.Request{Kind: "selftest"})
		if err != nil || !res.Ok || res.Error != "selftest by dev-a" {
			t.Fatalf("request %d: %v %v", i, res, err)
		}
	}

	c1.Released("dev-a")
	c2.Released("dev-a")
	fe1.Conn().Flush()
	fe2.Conn().Flush()
	if _, err := client.Request(ctx, "dev-a", &vigilv1.Request{Kind: "selftest"}); !errors.Is(err, ErrNotHeld) {
		t.Fatalf("request to a released device: %v, want ErrNotHeld", err)
	}

	a1.blocking, a1.waited = true, make(chan time.Duration, 1)
	c1.Held("dev-a")
	fe1.Conn().Flush()
	short, cancelShort := context.WithTimeout(ctx, 3*time.Second)
	defer cancelShort()
	// The requester gives up at its deadline; the front-end, waiting as
	// long, may still answer first (the two deadlines are microseconds
	// apart), but never with success.
	if res, err := client.Request(short, "dev-a", &vigilv1.Request{Kind: "slow"}); err == nil && (res.Ok || res.Error == "") {
		t.Fatalf("a request the agent never answered came back as %v", res)
	}
	if w := <-a1.waited; w > 3*time.Second || w <= 0 {
		t.Fatalf("front-end would wait %v for a requester that waits 3s", w)
	}
}
