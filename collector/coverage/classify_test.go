package coverage

import (
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/notify"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

func TestClassify(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	hours, err := notify.ParseSchedule("mon-fri 08:00-16:00", london)
	if err != nil {
		t.Fatal(err)
	}
	sch := Schedule{Hours: hours, Heartbeat: 30 * time.Second}
	// Wednesday 2 December 2026, 10:00 in London (UTC in winter).
	lesson := time.Date(2026, 12, 2, 10, 0, 0, 0, london)
	evening := time.Date(2026, 12, 2, 20, 0, 0, 0, london)
	// Half term: a laptop last heard after school on the Friday before and
	// left in a cupboard; on the Monday in school hours it is still quiet.
	fridayAfterSchool := time.Date(2026, 11, 27, 16, 30, 0, 0, london)
	halfTermMonday := time.Date(2026, 12, 7, 10, 0, 0, 0, london)

	// A laptop only ever used in the mornings.
	mornings := store.Presence{}
	for d := 0; d < 7; d++ {
		for h := 6; h < 12; h++ { // 42 distinct hours of the week, mornings only
			mornings.SeenHours[d*24+h] = 3
		}
	}

	dev := func(lastSeen time.Time, connected bool, p store.Presence) store.Device {
		return store.Device{DeviceID: "D1", LastSeen: lastSeen, Connected: connected, Presence: p}
	}
	cases := []struct {
		name  string
		d     store.Device
		now   time.Time
		sch   Schedule
		state State
		alarm bool
	}{
		{"connected in a lesson", dev(lesson.Add(-10*time.Second), true, store.Presence{}), lesson, sch, Connected, false},
		{"dropped a moment ago", dev(lesson.Add(-40*time.Second), false, store.Presence{}), lesson, sch, Reconnecting, false},
		{"silent mid-lesson", dev(lesson.Add(-20*time.Minute), false, store.Presence{}), lesson, sch, Silent, true},
		{"silent mid-lesson, judged in the evening", dev(lesson.Add(-20*time.Minute), false, store.Presence{}), evening, sch, Silent, false},
		{"silent, but no hours configured", dev(evening.Add(-time.Hour), false, store.Presence{}), evening, Schedule{}, Silent, true},
		{"went quiet after school, next morning", dev(fridayAfterSchool, false, store.Presence{}), halfTermMonday, sch, Dormant, false},
		{"went quiet in the afternoon it is never used", dev(time.Date(2026, 12, 2, 14, 0, 0, 0, london), false, mornings),
			time.Date(2026, 12, 2, 15, 0, 0, 0, london), sch, Dormant, false},
		{"went quiet in its usual morning", dev(lesson.Add(-time.Hour), false, mornings), lesson, sch, Silent, true},
		{"clean stop in a lesson", dev(lesson.Add(-time.Hour), false, store.Presence{Goodbye: "stop", GoodbyeAt: lesson.Add(-time.Hour)}), lesson, sch, Stopped, false},
		{"uninstalled in a lesson", dev(lesson.Add(-time.Hour), false, store.Presence{Goodbye: "uninstall", GoodbyeAt: lesson.Add(-time.Hour)}), lesson, sch, Uninstalled, true},
		{"uninstalled at night", dev(evening.Add(-time.Hour), false, store.Presence{Goodbye: "uninstall", GoodbyeAt: evening.Add(-time.Hour)}), evening, sch, Uninstalled, false},
		{"crash loop", dev(lesson.Add(-5*time.Second), true, store.Presence{PreviousExit: "unclean", StartedAt: lesson.Add(-time.Minute),
			StartsInWindow: 5, UncleanStartsInWindow: 4, WindowSeconds: 3600}), lesson, sch, CrashLoop, true},
		{"one crash is not a loop", dev(lesson.Add(-5*time.Second), true, store.Presence{PreviousExit: "unclean", StartedAt: lesson.Add(-time.Minute),
			StartsInWindow: 2, UncleanStartsInWindow: 1, WindowSeconds: 3600}), lesson, sch, Connected, false},
		{"old crash loop, long since stable", dev(lesson.Add(-5*time.Second), true, store.Presence{PreviousExit: "unclean", StartedAt: lesson.Add(-3 * time.Hour),
			StartsInWindow: 5, UncleanStartsInWindow: 4, WindowSeconds: 3600}), lesson, sch, Connected, false},
		{"session helper missing", dev(lesson.Add(-5*time.Second), true, store.Presence{SessionHelperMissing: true, SessionHelperMissingSince: lesson.Add(-time.Minute)}),
			lesson, sch, SessionHelperMissing, true},
		{"never connected", store.Device{DeviceID: "D1", EnrolledAt: lesson.Add(-time.Hour)}, lesson, sch, NeverSeen, false},
		{"revoked", store.Device{DeviceID: "D1", Revoked: true, LastSeen: lesson.Add(-time.Hour)}, lesson, sch, Revoked, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			j := Classify(c.d, c.now, c.sch)
			if j.State != c.state || j.Alarm != c.alarm {
				t.Fatalf("got %s alarm=%v (%s), want %s alarm=%v", j.State, j.Alarm, j.Why, c.state, c.alarm)
			}
			if j.Why == "" {
				t.Fatal("no reason given")
			}
		})
	}
}

// TestClassifyBySchoolHours: a school with its own hours (a primary that
// closes at 15:00) has a device that went quiet at 15:30 judged dormant,
// while the same silence in a school on the installation's hours (to
// 17:00) is an alarm.
func TestClassifyBySchoolHours(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	installation, err := notify.ParseSchedule("mon-fri 08:00-17:00", london)
	if err != nil {
		t.Fatal(err)
	}
	primary, err := notify.ParseSchedule("mon-fri 08:30-15:00", london)
	if err != nil {
		t.Fatal(err)
	}
	sch := Schedule{Hours: installation, Heartbeat: 30 * time.Second, HoursFor: func(school string) Hours {
		if school == "oak-primary" {
			return primary
		}
		return nil
	}}
	quiet := time.Date(2026, 12, 2, 15, 30, 0, 0, london) // a Wednesday
	now := quiet.Add(20 * time.Minute)
	for school, want := range map[string]State{"oak-primary": Dormant, "": Silent, "elm-high": Silent} {
		d := store.Device{DeviceID: "D-" + school, School: school, LastSeen: quiet}
		if j := Classify(d, now, sch); j.State != want {
			t.Errorf("school %q: %s (%s), want %s", school, j.State, j.Why, want)
		}
	}
}
