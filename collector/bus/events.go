package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Device events: front-ends publish the agent messages that change a device
// record (vigilv1.DeviceEvent) to the stream EventsStream; the store-owning
// collector consumes them in order and applies them to its records.
const (
	EventsStream  = "VIGIL_DEVICE_EVENTS"
	EventsPrefix  = "vigil.devices"
	eventsMaxSize = 1 << 30
)

// EventSubject is the subject of one device's events.
func EventSubject(school, device string) string {
	if school == "" {
		school = DefaultSchool
	}
	return EventsPrefix + "." + subjectToken(school) + "." + subjectToken(device)
}

// EnsureEvents creates or updates the events stream (retried while a
// cluster elects its meta leader).
func (b *Bus) EnsureEvents(ctx context.Context) error {
	sc := jetstream.StreamConfig{Name: EventsStream, Subjects: []string{EventsPrefix + ".>"}, Storage: jetstream.FileStorage,
		Replicas: b.cfg.Replicas, Retention: jetstream.WorkQueuePolicy, Discard: jetstream.DiscardOld, MaxBytes: eventsMaxSize}
	return untilReady(ctx, "create stream "+EventsStream, func(ctx context.Context) error {
		_, err := b.js.CreateOrUpdateStream(ctx, sc)
		return err
	})
}

// EventPublisher is a front-end's server.DeviceEventSink.
type EventPublisher struct {
	JS jetstream.JetStream
	// SchoolOf: as for Publisher, events go under the device's school.
	SchoolOf SchoolOf
	// InFlight: as for Publisher. A refused event is dropped (logged by
	// the server): the device's next heartbeat carries its state again.
	InFlight *InFlight

	own InFlight
}

// DeviceEvent publishes ev and waits for the PubAck.
func (p *EventPublisher) DeviceEvent(ctx context.Context, ev *vigilv1.DeviceEvent) error {
	data, err := proto.Marshal(ev)
	if err != nil {
		return fmt.Errorf("bus: encode device event of %s: %w", ev.GetDeviceId(), err)
	}
	school, err := p.SchoolOf.of(ev.GetDeviceId())
	if err != nil {
		return err
	}
	err = p.InFlight.or(&p.own).do(ctx, "device event of "+ev.GetDeviceId(), func() error {
		_, err := p.JS.Publish(ctx, EventSubject(school, ev.GetDeviceId()), data, jetstream.WithExpectStream(EventsStream))
		return err
	})
	if err != nil {
		return fmt.Errorf("bus: publish device event of %s: %w", ev.GetDeviceId(), err)
	}
	return nil
}

// EventApplier applies one event to the store's records
// (server.ApplyDeviceEvent).
type EventApplier func(*vigilv1.DeviceEvent) error

// RemotePresence is the store-owning collector's view of which devices a
// front-end holds, from the events it applied: a device is held from its
// hello until its stream's end or goodbye, and no longer than StaleAfter
// after its last event (a front-end killed -9 sends no end).
type RemotePresence struct {
	StaleAfter time.Duration
	mu         sync.Mutex
	last       map[string]time.Time // device -> last event, while held
}

// Connected reports whether a front-end holds the device's stream.
func (r *RemotePresence) Connected(id string) bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	t, ok := r.last[id]
	return ok && time.Since(t) < r.StaleAfter
}

func (r *RemotePresence) note(ev *vigilv1.DeviceEvent) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.last == nil {
		r.last = map[string]time.Time{}
	}
	switch ev.GetEvent().(type) {
	case *vigilv1.DeviceEvent_Hello, *vigilv1.DeviceEvent_Heartbeat, *vigilv1.DeviceEvent_UpgradeReport:
		r.last[ev.GetDeviceId()] = ev.GetAt().AsTime()
	default:
		delete(r.last, ev.GetDeviceId())
	}
}

// RunEvents consumes one school's events with one durable consumer, one
// message at a time so that a device's events are applied in the order
// they were published, until ctx ends. An event whose subject does not
// name the device's recorded school is refused (terminated, onRefused
// told), as the storer refuses findings.
func RunEvents(ctx context.Context, js jetstream.JetStream, school string, records Records, apply EventApplier, presence *RemotePresence,
	onRefused func(school, reason string), log *slog.Logger) error {
	if school == "" {
		school = DefaultSchool
	}
	if records == nil {
		return errors.New("bus: device events need the store's device records to check each message's school")
	}
	refuse := func(m jetstream.Msg, why string, err error) {
		log.Error("device events: message refused, not applied", "school", school, "subject", m.Subject(), "reason", why, "err", err)
		if onRefused != nil {
			onRefused(school, why)
		}
		m.Term()
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, EventsStream, jetstream.ConsumerConfig{
		Durable: "devices_" + subjectToken(school), FilterSubject: EventsPrefix + "." + subjectToken(school) + ".>",
		AckPolicy: jetstream.AckExplicitPolicy, AckWait: 30 * time.Second, MaxAckPending: 1, MaxDeliver: -1,
	})
	if err != nil {
		return fmt.Errorf("bus: create device events consumer: %w", err)
	}
	cc, err := cons.Consume(func(m jetstream.Msg) {
		var ev vigilv1.DeviceEvent
		if err := proto.Unmarshal(m.Data(), &ev); err != nil {
			refuse(m, RefusedUndecodable, err)
			return
		}
		if why := checkSubject(records, EventsPrefix, m.Subject(), ev.GetDeviceId()); why != "" {
			refuse(m, why, fmt.Errorf("event of device %q", ev.GetDeviceId()))
			return
		}
		if err := apply(&ev); err != nil {
			log.Warn("device events: apply failed; redelivered", "device", ev.GetDeviceId(), "err", err)
			m.NakWithDelay(time.Second)
			return
		}
		if presence != nil {
			presence.note(&ev)
		}
		m.Ack()
	}, jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		log.Debug("device events: pull interrupted", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("bus: consume device events: %w", err)
	}
	<-ctx.Done()
	cc.Stop()
	<-cc.Closed()
	return nil
}
