package store

import "time"

// Presence is what the collector keeps per device to judge its absence
// (collector/coverage): why it last went, how its runs end, whether its
// session helper is missing, and when it is normally seen. Kept in the
// device record (memory, flushed with it).
type Presence struct {
	// Goodbye is the reason of the last Goodbye ("stop", "uninstall") and
	// when; cleared when the device connects again.
	Goodbye   string    `json:"goodbye,omitempty"`
	GoodbyeAt time.Time `json:"goodbye_at,omitzero"`
	// From the last Hello's lifecycle.
	StartedAt             time.Time `json:"started_at,omitzero"`
	PreviousExit          string    `json:"previous_exit,omitempty"` // first_start, clean, unclean
	StartsInWindow        int       `json:"starts_in_window,omitempty"`
	UncleanStartsInWindow int       `json:"unclean_starts_in_window,omitempty"`
	WindowSeconds         int       `json:"window_seconds,omitempty"`
	// Role of the device's users (pupil, staff, ...) as the agent reports it.
	Role string `json:"role,omitempty"`
	// SessionHelperMissing: the last session-helper-missing posture finding
	// failed (a graphical session without its helper), since when.
	SessionHelperMissing      bool      `json:"session_helper_missing,omitempty"`
	SessionHelperMissingSince time.Time `json:"session_helper_missing_since,omitzero"`
	// SeenHours counts, per hour of the week (UTC, Sunday 00:00 first), the
	// hours in which the device was heard; SeenHour is the last hour
	// counted (Unix hours), so each hour counts once.
	SeenHours [168]uint16   `json:"seen_hours"`
	SeenHour  int64         `json:"seen_hour,omitempty"`
	Alarm     CoverageAlarm `json:"alarm,omitzero"`
}

// HourOfWeek is t's bucket in Presence.SeenHours.
func HourOfWeek(t time.Time) int {
	u := t.UTC()
	return int(u.Weekday())*24 + u.Hour()
}

// Seen counts the hour of t once.
func (p *Presence) Seen(t time.Time) {
	h := t.Unix() / 3600
	if h == p.SeenHour {
		return
	}
	p.SeenHour = h
	if b := &p.SeenHours[HourOfWeek(t)]; *b < ^uint16(0) {
		*b++
	}
}

// CoverageAlarm is a device's open coverage alarm: e-mailed once when
// raised, escalated once if nobody acknowledges it, closed when the device
// is back to normal.
type CoverageAlarm struct {
	Open       bool      `json:"open,omitempty"`
	State      string    `json:"state,omitempty"`
	Since      time.Time `json:"since,omitzero"`
	NotifiedAt time.Time `json:"notified_at,omitzero"`
	Escalated  bool      `json:"escalated,omitempty"`
	AckedBy    string    `json:"acked_by,omitempty"`
	AckedAt    time.Time `json:"acked_at,omitzero"`
}
