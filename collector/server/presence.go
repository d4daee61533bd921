package server

import (
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
