package coverage

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Devices is what the watcher needs from the store.
type Devices interface {
	Devices() []store.Device
	GetDevice(id string) (store.Device, bool)
	UpdateDevice(id string, fn func(*store.Device)) error
}

// Mailer e-mails the users of roles that device needs attention
// (notify.Notifier).
type Mailer interface {
	MailCoverage(ctx context.Context, roles []string, device string, escalation bool) (int, error)
}

// Config for NewWatcher.
type Config struct {
	Devices  Devices
	Mailer   Mailer // nil: alarms are recorded and listed, not e-mailed
	Schedule Schedule
	Now      func() time.Time
	// Interval between passes over the fleet (default 30 s).
	Interval time.Duration
	// EscalateAfter: an alarm nobody acknowledged this long after its
	// e-mail goes to the Escalation roles, once (0: never, as for alerts).
	EscalateAfter time.Duration
	// Roles e-mailed: First for every device, also Pupil for pupil
	// devices, and Escalation when unacknowledged.
	First, Pupil, Escalation []string
	Logger                   *slog.Logger
}

// Watcher judges the fleet and raises alarms.
type Watcher struct {
	cfg Config
	log *slog.Logger
}

// NewWatcher returns a Watcher; Run starts it.
func NewWatcher(cfg Config) *Watcher {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.Interval <= 0 {
		cfg.Interval = 30 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	return &Watcher{cfg: cfg, log: cfg.Logger}
}

// Report is a device's judgement with its alarm.
type Report struct {
	Judgement
	Alarm store.CoverageAlarm `json:"alarm,omitzero"`
}

// Judge returns every device's state now, ordered by device ID.
func (w *Watcher) Judge() []Report {
	now := w.cfg.Now()
	devs := w.cfg.Devices.Devices()
	out := make([]Report, 0, len(devs))
	for _, d := range devs {
		out = append(out, Report{Judgement: Classify(d, now, w.cfg.Schedule), Alarm: d.Presence.Alarm})
	}
	return out
}

// JudgeDevice is Judge for one device; false for a device it does not know.
func (w *Watcher) JudgeDevice(id string) (Report, bool) {
	d, ok := w.cfg.Devices.GetDevice(id)
	if !ok {
		return Report{}, false
	}
	return Report{Judgement: Classify(d, w.cfg.Now(), w.cfg.Schedule), Alarm: d.Presence.Alarm}, true
}

// Run checks the fleet every Interval until ctx ends.
func (w *Watcher) Run(ctx context.Context) {
	t := time.NewTicker(w.cfg.Interval)
	defer t.Stop()
	for {
		w.Check(ctx)
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Check makes one pass: opens an alarm for each device newly in alarm and
// e-mails it once, escalates unacknowledged ones once, and closes those of
// devices whose coverage is back.
func (w *Watcher) Check(ctx context.Context) {
	now := w.cfg.Now()
	devs := w.cfg.Devices.Devices()
	defer w.log.Debug("coverage: fleet checked", "devices", len(devs))
	for _, d := range devs {
		if ctx.Err() != nil {
			return
		}
		j := Classify(d, now, w.cfg.Schedule)
		a := d.Presence.Alarm
		switch {
		case a.Open && !j.Problem:
			w.update(d.DeviceID, func(al *store.CoverageAlarm) { *al = store.CoverageAlarm{} })
			w.log.Info("coverage: alarm closed", "device", d.DeviceID, "was", a.State, "now", j.State)
		case !a.Open && j.Alarm:
			w.update(d.DeviceID, func(al *store.CoverageAlarm) {
				if !al.Open {
					*al = store.CoverageAlarm{Open: true, State: string(j.State), Since: now}
				}
			})
			w.log.Warn("coverage: alarm raised", "device", d.DeviceID, "hostname", d.Hostname, "state", j.State, "why", j.Why)
			w.mail(ctx, d, false, now)
		case a.Open && a.NotifiedAt.IsZero():
			w.mail(ctx, d, false, now) // the first e-mail failed: try again
		case a.Open && a.AckedAt.IsZero() && !a.Escalated && w.cfg.EscalateAfter > 0 && now.Sub(a.NotifiedAt) >= w.cfg.EscalateAfter:
			w.mail(ctx, d, true, now)
		}
	}
}

func (w *Watcher) mail(ctx context.Context, d store.Device, escalation bool, now time.Time) {
	if w.cfg.Mailer == nil {
		return
	}
	roles := append([]string(nil), w.cfg.First...)
	if d.Presence.Role == "pupil" {
		roles = append(roles, w.cfg.Pupil...)
	}
	if escalation {
		roles = w.cfg.Escalation
	}
	n, err := w.cfg.Mailer.MailCoverage(ctx, roles, d.DeviceID, escalation)
	if err != nil {
		w.log.Error("coverage: alarm not e-mailed", "device", d.DeviceID, "escalation", escalation, "err", err)
		if !escalation {
			return // retried at the next pass
		}
	}
	w.update(d.DeviceID, func(al *store.CoverageAlarm) {
		if escalation {
			al.Escalated = true
		} else {
			al.NotifiedAt = now
		}
	})
	w.log.Info("coverage: alarm e-mailed", "device", d.DeviceID, "escalation", escalation, "recipients", n)
}

func (w *Watcher) update(id string, fn func(*store.CoverageAlarm)) {
	if err := w.cfg.Devices.UpdateDevice(id, func(d *store.Device) { fn(&d.Presence.Alarm) }); err != nil {
		w.log.Error("coverage: record alarm", "device", id, "err", err)
	}
}

// ErrNoAlarm: the device has no open alarm to acknowledge.
var ErrNoAlarm = errors.New("no open coverage alarm for this device")

// Ack acknowledges a device's open alarm: it is not escalated.
func (w *Watcher) Ack(device, by string) error {
	var found bool
	err := w.cfg.Devices.UpdateDevice(device, func(d *store.Device) {
		if found = d.Presence.Alarm.Open; found && d.Presence.Alarm.AckedAt.IsZero() {
			d.Presence.Alarm.AckedBy, d.Presence.Alarm.AckedAt = by, w.cfg.Now()
		}
	})
	if err != nil {
		return fmt.Errorf("acknowledge coverage alarm: %w", err)
	}
	if !found {
		return ErrNoAlarm
	}
	return nil
}

// Handler serves the admin socket's coverage API: GET /v1/coverage lists
// every device's judgement; POST /v1/coverage/{device}/ack acknowledges its
// alarm (X-Vigil-User names who).
func (w *Watcher) Handler() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /v1/coverage", func(rw http.ResponseWriter, r *http.Request) {
		rw.Header().Set("Content-Type", "application/json")
		json.NewEncoder(rw).Encode(w.Judge())
	})
	mux.HandleFunc("POST /v1/coverage/{device}/ack", func(rw http.ResponseWriter, r *http.Request) {
		who := r.Header.Get("X-Vigil-User")
		if who == "" {
			who = "admin socket"
		}
		err := w.Ack(r.PathValue("device"), who)
		rw.Header().Set("Content-Type", "application/json")
		if err != nil {
			rw.WriteHeader(http.StatusNotFound)
			json.NewEncoder(rw).Encode(map[string]string{"error": err.Error()})
			return
		}
		json.NewEncoder(rw).Encode(map[string]string{"status": "acknowledged"})
	})
	return mux
}
