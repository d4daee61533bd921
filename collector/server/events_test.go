package server

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// eventLog is a DeviceEventSink keeping what it was sent.
type eventLog struct {
	mu  sync.Mutex
	evs []*vigilv1.DeviceEvent
}

func (l *eventLog) DeviceEvent(_ context.Context, ev *vigilv1.DeviceEvent) error {
	l.mu.Lock()
	l.evs = append(l.evs, ev)
	l.mu.Unlock()
	return nil
}

func (l *eventLog) all() []*vigilv1.DeviceEvent {
	l.mu.Lock()
	defer l.mu.Unlock()
	return append([]*vigilv1.DeviceEvent(nil), l.evs...)
}

// TestDeviceEventsReproduceRecord: the events a server forwards for a
// stream (hello, heartbeat, goodbye, end), applied to another store's copy
// of the device, give that record what the server's own store recorded.
func TestDeviceEventsReproduceRecord(t *testing.T) {
	sink := &eventLog{}
	e := newEnv(t, Config{Events: sink}, store.Options{})
	d := e.enrollDevice(t)
	as := d.mustStream(t, "ev")
	if err := as.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: &vigilv1.Heartbeat{
		AgentVersion: "t3", SpoolDepth: 7, CpuPercent: 1.5, LastError: "disk"}}}); err != nil {
		t.Fatal(err)
	}
	if err := as.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Goodbye{Goodbye: &vigilv1.Goodbye{
		Reason: vigilv1.GoodbyeReason_GOODBYE_REASON_STOP}}}); err != nil {
		t.Fatal(err)
	}
	for { // the collector ends the stream once it has recorded the goodbye
		if _, err := as.recv(); err != nil {
			break
		}
	}
	deadline := time.Now().Add(rpcTimeout)
	for e.srv.Connected(d.id) || len(sink.all()) < 4 {
		if time.Now().After(deadline) {
			t.Fatalf("events %v", sink.all())
		}
		time.Sleep(5 * time.Millisecond)
	}
	want, _ := e.st.GetDevice(d.id)

	other, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { other.Close() })
	enrolled := want
	enrolled.Presence, enrolled.LastSeen, enrolled.AgentVersion, enrolled.SpoolDepth = store.Presence{}, time.Time{}, "", 0
	if err := other.PutDevice(enrolled); err != nil {
		t.Fatal(err)
	}
	for _, ev := range sink.all() {
		if err := ApplyDeviceEvent(other, ev); err != nil {
			t.Fatal(err)
		}
	}
	got, _ := other.GetDevice(d.id)
	if got.AgentVersion != "t3" || got.SpoolDepth != 7 || got.CPUPercent != 1.5 || got.LastError != "disk" || got.Connected ||
		got.Presence.Goodbye != "stop" || !got.LastSeen.Equal(want.LastSeen) || got.Presence.SeenHours != want.Presence.SeenHours ||
		got.Presence.StartedAt != want.Presence.StartedAt || got.Presence.Goodbye != want.Presence.Goodbye {
		t.Fatalf("applied events give\n%+v\nthe server's own store has\n%+v", got, want)
	}
	// An event for a device this store does not know is dropped.
	if err := ApplyDeviceEvent(other, &vigilv1.DeviceEvent{DeviceId: "unknown", Event: &vigilv1.DeviceEvent_Ended{Ended: true}}); err != nil {
		t.Fatal(err)
	}
}
