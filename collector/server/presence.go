package server

import (
	"context"
	"errors"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// errGoodbye ends a stream cleanly after the agent's Goodbye.
var errGoodbye = errors.New("agent said goodbye")

var goodbyeReasons = map[vigilv1.GoodbyeReason]string{
	vigilv1.GoodbyeReason_GOODBYE_REASON_STOP:      "stop",
	vigilv1.GoodbyeReason_GOODBYE_REASON_UNINSTALL: "uninstall",
}

var exitKinds = map[vigilv1.ExitKind]string{
	vigilv1.ExitKind_EXIT_KIND_FIRST_START: "first_start",
	vigilv1.ExitKind_EXIT_KIND_CLEAN:       "clean",
	vigilv1.ExitKind_EXIT_KIND_UNCLEAN:     "unclean",
}

// helloPresence records what a Hello says for coverage: the device is back
// (its last goodbye no longer explains anything), how its last run ended.
func helloPresence(p *store.Presence, h *vigilv1.Hello, now time.Time) {
	p.Goodbye, p.GoodbyeAt = "", time.Time{}
	p.Seen(now)
	if r := h.GetDeviceRole(); r != "" {
		p.Role = limit(r, 64)
	}
	lc := h.GetLifecycle()
	if lc == nil {
		// An older agent: nothing known about how it last ended.
		p.PreviousExit, p.StartsInWindow, p.UncleanStartsInWindow, p.WindowSeconds = "", 0, 0, 0
		return
	}
	p.PreviousExit = exitKinds[lc.GetPreviousExit()]
	if t := lc.GetStartedAt(); t.CheckValid() == nil {
		p.StartedAt = t.AsTime()
	}
	// Bounded by the agent (its record keeps 64 starts); clamp anyway.
	p.StartsInWindow = int(min(max(lc.GetStartsInWindow(), 0), 1000))
	p.UncleanStartsInWindow = int(min(max(lc.GetUncleanStartsInWindow(), 0), 1000))
	p.WindowSeconds = int(min(max(lc.GetWindowSeconds(), 0), 7*24*3600))
}

// sessionHelperRule is the sessionwatch posture check's rule: failing, a
// graphical session on the device has no session helper reporting.
const sessionHelperRule = "session-helper-missing"

// notePresenceFindings keeps the latest session-helper posture of a device
// from a batch just stored.
func (s *Server) notePresenceFindings(device string, b *vigilv1.FindingBatch) {
	var last *vigilv1.Finding
	for _, f := range b.GetFindings() {
		if f.GetRuleId() == sessionHelperRule && (f.GetStatus() == "fail" || f.GetStatus() == "pass") {
			last = f
		}
	}
	if last == nil {
		return
	}
	missing := last.GetStatus() == "fail"
	s.cfg.Store.UpdateDevice(device, func(d *store.Device) {
		if missing && !d.Presence.SessionHelperMissing {
			d.Presence.SessionHelperMissingSince = s.cfg.Now()
		}
		d.Presence.SessionHelperMissing = missing
		if !missing {
			d.Presence.SessionHelperMissingSince = time.Time{}
		}
	})
}

// applyHello, applyHeartbeat, applyGoodbye and applyEnded are what a
// device's own messages change in its record, whether the stream is held
// by this process or by a front-end that forwarded them (ApplyDeviceEvent).
func applyHello(d *store.Device, hello *vigilv1.Hello, now time.Time) {
	d.LastSeen, d.Connected = now, true
	// Same bounds as enrollment and heartbeats: the record is kept in
	// memory and rewritten on every flush.
	d.AgentVersion, d.RulesHash = limit(hello.GetAgentVersion(), 64), limit(hello.GetRulesHash(), 80)
	if hello.GetHostname() != "" {
		d.Hostname = limit(hello.GetHostname(), 255)
	}
	helloPresence(&d.Presence, hello, now)
}

func applyHeartbeat(d *store.Device, hb *vigilv1.Heartbeat, now time.Time) {
	d.LastSeen = now
	d.Presence.Seen(d.LastSeen)
	d.AgentVersion, d.RulesHash = limit(hb.GetAgentVersion(), 64), limit(hb.GetRulesHash(), 80)
	d.SpoolDepth, d.SpoolBytes, d.DroppedTotal = hb.GetSpoolDepth(), hb.GetSpoolBytes(), hb.GetDroppedTotal()
	d.CPUPercent, d.RSSBytes = hb.GetCpuPercent(), hb.GetRssBytes()
	d.RejectedTotal, d.SpoolWriteFailures = hb.GetRejectedTotal(), hb.GetSpoolWriteFailures()
	d.LastError = limit(hb.GetLastError(), maxLastError)
}

func applyGoodbye(d *store.Device, reason string, now time.Time) {
	d.Presence.Goodbye, d.Presence.GoodbyeAt = reason, now
}

// DeviceEventSink receives what changes device records, for a process
// that does not hold the store (a front-end publishing to the bus).
type DeviceEventSink interface {
	DeviceEvent(ctx context.Context, ev *vigilv1.DeviceEvent) error
}

// deviceEvent forwards ev when this server has a sink. Only a goodbye must
// not be lost (it is sent with an error path of its own); a missed hello,
// heartbeat or end is made good by the next one.
func (s *Server) deviceEvent(ev *vigilv1.DeviceEvent) {
	if s.cfg.Events == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := s.cfg.Events.DeviceEvent(ctx, ev); err != nil {
		s.log.Warn("device event not forwarded", "device", ev.GetDeviceId(), "err", err)
	}
}

// DeviceRecords is what ApplyDeviceEvent changes; *store.Store is one.
type DeviceRecords interface {
	GetDevice(id string) (store.Device, bool)
	UpdateDevice(id string, fn func(*store.Device)) error
	FlushDevices() error
}

// ApplyDeviceEvent applies an event forwarded by a front-end to the
// store's device record, with the functions used for streams held here.
// An event for a device the store does not know is dropped (it was
// deleted, or the event is not for this store).
func ApplyDeviceEvent(st DeviceRecords, ev *vigilv1.DeviceEvent) error {
	now := ev.GetAt().AsTime()
	var fn func(*store.Device)
	switch e := ev.GetEvent().(type) {
	case *vigilv1.DeviceEvent_Hello:
		fn = func(d *store.Device) { applyHello(d, e.Hello, now) }
	case *vigilv1.DeviceEvent_Heartbeat:
		fn = func(d *store.Device) { applyHeartbeat(d, e.Heartbeat, now) }
	case *vigilv1.DeviceEvent_Goodbye:
		reason := goodbyeReasons[e.Goodbye.GetReason()]
		if reason == "" {
			return nil
		}
		fn = func(d *store.Device) { applyGoodbye(d, reason, now) }
	case *vigilv1.DeviceEvent_Ended:
		fn = func(d *store.Device) { d.Connected = false }
	default:
		return nil
	}
	if _, ok := st.GetDevice(ev.GetDeviceId()); !ok {
		return nil
	}
	if err := st.UpdateDevice(ev.GetDeviceId(), fn); err != nil {
		return err
	}
	if _, ok := ev.GetEvent().(*vigilv1.DeviceEvent_Goodbye); ok {
		return st.FlushDevices()
	}
	return nil
}
