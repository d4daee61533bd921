package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// ControlPrefix names the per-device control subjects
// vigil.control.SCHOOL.DEVICE. Only the front-end holding a device's stream
// subscribes to its subject, so a request published there reaches that
// agent whichever front-end holds it, and a device no front-end holds has
// no responder (answered at once, not after a timeout). These are core
// NATS request/reply, not JetStream: a request means something only to a
// connected agent, and the requester waits for the answer, as it does for
// an agent on its own port.
const ControlPrefix = "vigil.control"

// ControlSubject is the subject of one device's control requests.
func ControlSubject(school, device string) string {
	if school == "" {
		school = DefaultSchool
	}
	return ControlPrefix + "." + subjectToken(school) + "." + subjectToken(device)
}

// waitHeader carries how long the requester waits (a Go duration).
const waitHeader = "Vigil-Wait"

// ErrNotHeld: no front-end holds the device's stream.
var ErrNotHeld = errors.New("no front-end holds this device's stream")

// ControlClient sends requests to agents held by front-ends (the store-
// owning collector's side; server.Config.Remote).
type ControlClient struct {
	NC *nats.Conn
	// SchoolOf names the device's school, whose control subject the
	// request goes to (nil: the default school).
	SchoolOf SchoolOf
}

// Request sends req to the device's front-end and waits (until ctx ends)
// for the agent's result.
func (c *ControlClient) Request(ctx context.Context, deviceID string, req *vigilv1.Request) (*vigilv1.RequestResult, error) {
	data, err := proto.Marshal(req)
	if err != nil {
		return nil, fmt.Errorf("bus: encode request for %s: %w", deviceID, err)
	}
	school, err := c.SchoolOf.of(deviceID)
	if err != nil {
		// A device without a record (not enrolled, or its school deleted)
		// has no stream any front-end would accept.
		return nil, fmt.Errorf("device %s: %w (%v)", deviceID, ErrNotHeld, err)
	}
	msg := nats.NewMsg(ControlSubject(school, deviceID))
	msg.Data = data
	if dl, ok := ctx.Deadline(); ok {
		// The front-end waits for the agent no longer than this requester.
		msg.Header.Set(waitHeader, time.Until(dl).String())
	}
	m, err := c.NC.RequestMsgWithContext(ctx, msg)
	if errors.Is(err, nats.ErrNoResponders) {
		return nil, fmt.Errorf("device %s: %w", deviceID, ErrNotHeld)
	}
	if err != nil {
		return nil, fmt.Errorf("bus: request to %s: %w", deviceID, err)
	}
	var res vigilv1.RequestResult
	if err := proto.Unmarshal(m.Data, &res); err != nil {
		return nil, fmt.Errorf("bus: decode result from %s: %w", deviceID, err)
	}
	return &res, nil
}

// Agents is what a front-end's control subscriptions hand requests to: its
// gRPC server.
type Agents interface {
	Connected(deviceID string) bool
	Request(ctx context.Context, deviceID, kind string, params map[string]any) (*vigilv1.RequestResult, error)
}

// ControlServer subscribes a front-end to the control subjects of the
// devices whose streams it holds (Held when a stream is welcomed, Released
// when it ends).
type ControlServer struct {
	NC *nats.Conn
	// SchoolOf names the held device's school (its control subject; nil:
	// the default school).
	SchoolOf SchoolOf
	Agents   Agents
	// MaxWait bounds how long a request waits for the agent (default 10m;
	// the requester usually gives up sooner).
	MaxWait time.Duration
	Logger  *slog.Logger

	mu   sync.Mutex
	subs map[string]*nats.Subscription
}

// Held subscribes to deviceID's subject.
func (c *ControlServer) Held(deviceID string) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.subs == nil {
		c.subs = map[string]*nats.Subscription{}
	}
	if c.subs[deviceID] != nil {
		return
	}
	school, err := c.SchoolOf.of(deviceID)
	if err != nil {
		c.logger().Warn("control: device's school unknown; requests will not reach this device", "device", deviceID, "err", err)
		return
	}
	sub, err := c.NC.Subscribe(ControlSubject(school, deviceID), func(m *nats.Msg) { go c.serve(deviceID, m) })
	if err != nil {
		c.logger().Warn("control: subscribe failed; requests will not reach this device", "device", deviceID, "err", err)
		return
	}
	c.subs[deviceID] = sub
	if !c.Agents.Connected(deviceID) {
		// The stream ended before it was announced here (Released ran
		// first): do not keep answering for it.
		delete(c.subs, deviceID)
		sub.Unsubscribe()
	}
}

// Released unsubscribes from deviceID's subject.
func (c *ControlServer) Released(deviceID string) {
	c.mu.Lock()
	sub := c.subs[deviceID]
	delete(c.subs, deviceID)
	c.mu.Unlock()
	if sub != nil {
		sub.Unsubscribe()
	}
}

func (c *ControlServer) logger() *slog.Logger {
	if c.Logger == nil {
		return slog.Default()
	}
	return c.Logger
}

func (c *ControlServer) serve(deviceID string, m *nats.Msg) {
	if !c.Agents.Connected(deviceID) {
		// Not held here (any more): stay silent, so that the answer comes
		// from the front-end that holds it, or the requester times out.
		return
	}
	var req vigilv1.Request
	res := &vigilv1.RequestResult{}
	if err := proto.Unmarshal(m.Data, &req); err != nil {
		res.Error = "front-end could not decode the request: " + err.Error()
	} else {
		wait := c.MaxWait
		if wait <= 0 {
			wait = 10 * time.Minute
		}
		if d, err := time.ParseDuration(m.Header.Get(waitHeader)); err == nil && d > 0 && d < wait {
			wait = d
		}
		ctx, cancel := context.WithTimeout(context.Background(), wait)
		defer cancel()
		r, err := c.Agents.Request(ctx, deviceID, req.GetKind(), req.GetParams().AsMap())
		if err != nil {
			res.Error = err.Error()
		} else {
			res = r
		}
	}
	data, err := proto.Marshal(res)
	if err == nil {
		err = m.Respond(data)
	}
	if err != nil {
		c.logger().Warn("control: answer not sent", "device", deviceID, "err", err)
	}
}
