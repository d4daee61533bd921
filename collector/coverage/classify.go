// Package coverage judges a device's absence: a clean stop, an uninstall, a
// crash or restart loop, a missing session helper, or silence, weighed
// against when the device is normally seen (the school's working hours and
// the device's own hour-of-week pattern), so that a laptop put away over half
// term is not an alarm while one that goes quiet mid-lesson is. Classify is
// pure; Watcher applies it to the fleet, raises each alarm once by e-mail and
// escalates it if nobody acknowledges it.
package coverage

import (
	"fmt"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// State names what a device's presence or absence is judged to be.
type State string

const (
	// Connected: heard within the grace period and nothing wrong.
	Connected State = "connected"
	// Reconnecting: not connected, but heard within the grace period.
	Reconnecting State = "reconnecting"
	// Stopped: the agent said goodbye on a service stop or shutdown.
	Stopped State = "stopped"
	// Uninstalled: the package's removal script said goodbye.
	Uninstalled State = "uninstalled"
	// CrashLoop: the agent keeps starting after unclean exits.
	CrashLoop State = "crash_loop"
	// SessionHelperMissing: a graphical session has no session helper, so
	// its screen is not monitored.
	SessionHelperMissing State = "session_helper_missing"
	// Silent: heartbeats stopped without a goodbye while the device was
	// expected to be on.
	Silent State = "silent"
	// Dormant: silent, but it went quiet when it is not normally on (after
	// school, a holiday): not an alarm.
	Dormant State = "dormant"
	// NeverSeen: enrolled but never connected.
	NeverSeen State = "never_seen"
	// Revoked: the device's identity is revoked; its absence is expected.
	Revoked State = "revoked"
)

// Hours is the school's working hours (notify.Schedule).
type Hours interface {
	Working(t time.Time) bool
}

// Schedule is what absence is judged against.
type Schedule struct {
	// Hours, when set, are the school's working hours; outside them no
	// device is expected.
	Hours Hours
	// HoursFor, when set, answers a school's own working hours (nil: it
	// has none, and Hours applies): a trust's schools keep their own days.
	HoursFor func(school string) Hours
	// Heartbeat is the agents' heartbeat interval; Grace (default three
	// heartbeats) is how long a device may go unheard before it is silent.
	Heartbeat time.Duration
	Grace     time.Duration
	// CrashLoopStarts is how many unclean starts within the agent's window
	// make a crash loop (default 3).
	CrashLoopStarts int
	// PatternHours is how many distinct hours a device must have been
	// seen before its own pattern counts (default 40: about a school week).
	PatternHours int
}

func (s Schedule) withDefaults() Schedule {
	if s.Heartbeat <= 0 {
		s.Heartbeat = 30 * time.Second
	}
	if s.Grace <= 0 {
		s.Grace = 3 * s.Heartbeat
	}
	if s.CrashLoopStarts <= 0 {
		s.CrashLoopStarts = 3
	}
	if s.PatternHours <= 0 {
		s.PatternHours = 40
	}
	return s
}

// Judgement is the state of one device and why.
type Judgement struct {
	DeviceID string `json:"device_id"`
	Hostname string `json:"hostname"`
	Group    string `json:"group"`
	State    State  `json:"state"`
	// Problem: something is wrong with coverage, whatever the hour.
	// Alarm: a problem while the device is expected to be on, which is
	// what is pushed to people. Its JSON name is not "alarm": Report
	// embeds this beside the alarm's record, which takes that name, and
	// encoding/json silently drops the shadowed field.
	Problem  bool      `json:"problem"`
	Alarm    bool      `json:"alarming"`
	Expected bool      `json:"expected_now"`
	Why      string    `json:"why"`
	LastSeen time.Time `json:"last_seen,omitzero"`
}

// Classify judges one device at now. It reads only its arguments.
func Classify(d store.Device, now time.Time, sch Schedule) Judgement {
	sch = sch.withDefaults()
	if sch.HoursFor != nil {
		if h := sch.HoursFor(store.SchoolOf(d.School)); h != nil {
			sch.Hours = h
		}
	}
	p := d.Presence
	j := Judgement{DeviceID: d.DeviceID, Hostname: d.Hostname, Group: d.Group, LastSeen: d.LastSeen}
	j.Expected = expected(p, now, sch)
	set := func(s State, problem bool, why string, args ...any) Judgement {
		j.State, j.Problem, j.Why = s, problem, fmt.Sprintf(why, args...)
		j.Alarm = problem && j.Expected
		return j
	}
	if d.Revoked {
		return set(Revoked, false, "the device's identity is revoked")
	}
	if d.LastSeen.IsZero() {
		return set(NeverSeen, false, "enrolled %s, never connected", ago(now, d.EnrolledAt))
	}
	quiet := now.Sub(d.LastSeen)
	heard := quiet <= sch.Grace
	crashLoop := p.UncleanStartsInWindow >= sch.CrashLoopStarts &&
		now.Sub(p.StartedAt) <= time.Duration(max(p.WindowSeconds, 3600))*time.Second
	switch {
	case p.Goodbye == "uninstall":
		return set(Uninstalled, true, "the package's removal script said goodbye %s", ago(now, p.GoodbyeAt))
	case crashLoop:
		return set(CrashLoop, true, "%d starts after unclean exits within %s, the last %s",
			p.UncleanStartsInWindow, time.Duration(p.WindowSeconds)*time.Second, ago(now, p.StartedAt))
	case p.Goodbye == "stop":
		return set(Stopped, false, "the agent stopped cleanly %s (service stop or shutdown)", ago(now, p.GoodbyeAt))
	case heard && p.SessionHelperMissing:
		return set(SessionHelperMissing, true, "a graphical session has had no session helper since %s",
			p.SessionHelperMissingSince.UTC().Format(time.RFC3339))
	case heard && d.Connected:
		if p.PreviousExit == "unclean" {
			return set(Connected, false, "connected; its previous run ended uncleanly (started %s)", ago(now, p.StartedAt))
		}
		return set(Connected, false, "connected, heard %s", ago(now, d.LastSeen))
	case heard:
		return set(Reconnecting, false, "not connected, heard %s (within %s)", ago(now, d.LastSeen), sch.Grace)
	}
	// Silent without a goodbye. It matters if it went quiet while it was
	// expected to stay on: put away after school and left over half term
	// is not an alarm, going quiet mid-lesson is.
	wentQuiet := d.LastSeen.Add(sch.Grace)
	if !expected(p, wentQuiet, sch) {
		return set(Dormant, false, "no heartbeat for %s without a goodbye, but it went quiet (%s) when it is not normally on",
			quiet.Round(time.Second), wentQuiet.UTC().Format(time.RFC3339))
	}
	return set(Silent, true, "no heartbeat for %s without a goodbye; it went quiet (%s) when it is normally on",
		quiet.Round(time.Second), wentQuiet.UTC().Format(time.RFC3339))
}

// expected says whether the device is normally on at t: within the
// school's hours (when set) and, once its pattern is known, in an hour of
// the week it has been seen in before.
func expected(p store.Presence, t time.Time, sch Schedule) bool {
	if sch.Hours != nil && !sch.Hours.Working(t) {
		return false
	}
	total := 0
	for _, n := range p.SeenHours {
		if n > 0 {
			total++
		}
	}
	if total < sch.PatternHours {
		return true // not enough history: the school's hours alone decide
	}
	return p.SeenHours[store.HourOfWeek(t)] > 0
}

func ago(now, t time.Time) string {
	if t.IsZero() {
		return "at an unknown time"
	}
	d := now.Sub(t).Round(time.Second)
	if d < 0 {
		return "just now"
	}
	return d.String() + " ago"
}
