package notify

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func TestParseSchedule(t *testing.T) {
	london, err := time.LoadLocation("Europe/London")
	if err != nil {
		t.Fatal(err)
	}
	sc, err := ParseSchedule("mon-thu 08:00-17:00, fri 08:00-15:30", london)
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		at   time.Time
		want bool
	}{
		{time.Date(2026, 7, 6, 7, 30, 0, 0, time.UTC), true},    // Monday 08:30 BST
		{time.Date(2026, 1, 5, 7, 30, 0, 0, time.UTC), false},   // Monday 07:30 GMT
		{time.Date(2026, 1, 5, 16, 59, 0, 0, time.UTC), true},   // Monday 16:59 GMT
		{time.Date(2026, 7, 6, 16, 0, 0, 0, time.UTC), false},   // Monday 17:00 BST: the end is excluded
		{time.Date(2026, 7, 10, 14, 0, 0, 0, time.UTC), true},   // Friday 15:00 BST
		{time.Date(2026, 7, 10, 14, 45, 0, 0, time.UTC), false}, // Friday 15:45 BST
		{time.Date(2026, 7, 11, 10, 0, 0, 0, time.UTC), false},  // Saturday
	} {
		if got := sc.Working(c.at); got != c.want {
			t.Errorf("%v (%v): working %v, want %v", c.at, c.at.In(london), got, c.want)
		}
	}
	wrap, err := ParseSchedule("fri-mon 00:00-24:00", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	if !wrap.Working(time.Date(2026, 7, 12, 23, 59, 0, 0, time.UTC)) || wrap.Working(time.Date(2026, 7, 8, 12, 0, 0, 0, time.UTC)) {
		t.Error("wrapping day range")
	}
	for _, bad := range []string{"", "mon-fri", "weekdays 08:00-17:00", "mon-fri 8:00-17:00", "mon-fri 17:00-08:00", "mon-fri 08:00-24:30", "mon-fri 08:00-17:00,"} {
		if _, err := ParseSchedule(bad, london); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

// TestOutOfHoursChain against a real SMTP server with an injected clock:
// out of hours a pupil alert goes only to the on-call DSL, then escalates
// to the DSLs; a staff alert, which the on-call DSL may not open, goes to
// the headteacher as usual; in working hours every DSL is e-mailed at once.
func TestOutOfHoursChain(t *testing.T) {
	addr, maildir := smtpServer(t)
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "dsl1@school.test")
	e.user("oncall", RoleDSL, false, "oncall@school.test")
	e.user("head", RoleHeadteacher, false, "head@school.test")
	e.people(store.Person{Username: "pupil1", DisplayName: "Alice Pupil", Role: "pupil"},
		store.Person{Username: "teacher1", DisplayName: "Tom Teacher", Role: "staff"})
	london, _ := time.LoadLocation("Europe/London")
	hours, err := ParseSchedule("mon-fri 08:00-17:00", london)
	if err != nil {
		t.Fatal(err)
	}
	saturday := time.Date(2026, 7, 4, 20, 0, 0, 0, london)
	e.setNow(saturday)
	e.run(e.notifier(Config{SMTPAddr: addr, From: "vigil@school.test", MinSeverity: vigilv1.Severity_SEVERITY_HIGH,
		EscalateAfter: 30 * time.Minute, ConsoleURL: "https://vigil.school.test", Interval: 50 * time.Millisecond,
		WorkingHours: hours, OutOfHours: []string{"OnCall"}}))

	count := func(msgs []received) map[string]int {
		m := map[string]int{}
		for _, x := range msgs {
			k := x.to + " " + x.subject
			if strings.Contains(x.body, "you are on call") {
				k += " (on call)"
			}
			m[k]++
		}
		return m
	}
	settle := func(n int) map[string]int {
		t.Helper()
		waitMail(t, maildir, n, 10*time.Second)
		time.Sleep(400 * time.Millisecond) // anything else would have arrived by now
		msgs := mailbox(t, maildir)
		if len(msgs) != n {
			t.Fatalf("%d messages, want %d: %v", len(msgs), n, count(msgs))
		}
		return count(msgs)
	}
	expect := func(got map[string]int, want ...string) {
		t.Helper()
		w := map[string]int{}
		for _, k := range want {
			w[k]++
		}
		if len(got) != len(w) {
			t.Fatalf("messages %v, want %v", got, w)
		}
		for k, n := range w {
			if got[k] != n {
				t.Fatalf("messages %v, want %v", got, w)
			}
		}
	}

	// Saturday 20:00: out of hours.
	dev, seq := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "kill myself", saturday)
	e.alert("teacher1", "extremism", vigilv1.Severity_SEVERITY_HIGH, "staff term", saturday)
	expect(settle(2),
		"oncall@school.test Vigil: new alert needs review (on call)",
		"head@school.test Vigil: new alert needs review")

	// Not acknowledged 31 minutes later: the pupil alert goes to the DSLs
	// (its own route); the staff alert has nobody beyond the headteacher
	// (no chair here) and stops.
	e.setNow(saturday.Add(31 * time.Minute))
	expect(settle(4),
		"oncall@school.test Vigil: new alert needs review (on call)",
		"head@school.test Vigil: new alert needs review",
		"dsl1@school.test Vigil: alert not yet acknowledged",
		"oncall@school.test Vigil: alert not yet acknowledged")
	a, err := e.st.GetAlert(dev, seq)
	if err != nil {
		t.Fatal(err)
	}
	var hist []string
	for _, h := range a.State.History {
		hist = append(hist, h.Action+": "+h.Detail)
	}
	if len(hist) != 2 || !strings.HasPrefix(hist[0], "notified: out of hours: e-mailed 1 of 1 on-call dsl") || !strings.HasPrefix(hist[1], "escalated:") {
		t.Errorf("history %q", hist)
	}
	if len(a.State.EscalatedTo) != 0 {
		t.Errorf("escalated to %v: the alert's own route is not an escalation beyond it", a.State.EscalatedTo)
	}
	// Acknowledged, so it does not escalate further when the clock jumps.
	if _, err := e.st.UpdateAlertState(dev, seq, func(st *store.AlertState) error {
		st.Status = "in_review"
		st.History = append(st.History, store.HistoryEntry{Time: saturday, By: "oncall", Action: "start_review"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	time.Sleep(200 * time.Millisecond)

	// Monday 10:00 BST: working hours, every DSL at once.
	e.setNow(time.Date(2026, 7, 6, 10, 0, 0, 0, london))
	e.alert("pupil1", "drugs", vigilv1.Severity_SEVERITY_HIGH, "weekday term", time.Date(2026, 7, 6, 10, 0, 0, 0, london))
	expect(settle(6),
		"oncall@school.test Vigil: new alert needs review (on call)",
		"head@school.test Vigil: new alert needs review",
		"dsl1@school.test Vigil: alert not yet acknowledged",
		"oncall@school.test Vigil: alert not yet acknowledged",
		"dsl1@school.test Vigil: new alert needs review",
		"oncall@school.test Vigil: new alert needs review")
	for _, m := range mailbox(t, maildir) {
		for _, secret := range []string{"kill myself", "staff term", "weekday term", "pupil1", "teacher1", "Alice"} {
			if strings.Contains(m.raw, secret) {
				t.Errorf("message contains %q", secret)
			}
		}
	}
}

// TestOutOfHoursBySchool: an alert is out of hours by the hours of its
// device's school when that school set its own, else the installation's.
func TestOutOfHoursBySchool(t *testing.T) {
	installation, err := ParseSchedule("mon-fri 08:00-17:00", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	primary, err := ParseSchedule("mon-fri 08:30-15:00", time.UTC)
	if err != nil {
		t.Fatal(err)
	}
	cfg := Config{WorkingHours: installation, OutOfHours: []string{"oncall"}, HoursOf: func(device string) *Schedule {
		if device == "d-oak" {
			return primary
		}
		return nil
	}}
	at := time.Date(2026, 12, 2, 16, 0, 0, 0, time.UTC) // Wednesday 16:00
	if !cfg.outOfHours(at, "d-oak") {
		t.Error("16:00 is in hours for a school that closes at 15:00")
	}
	if cfg.outOfHours(at, "d-elm") {
		t.Error("16:00 is out of hours for a school on the installation's hours")
	}
	cfg.OutOfHours = nil
	if cfg.outOfHours(at, "d-oak") {
		t.Error("out of hours with nobody on call")
	}
	// A school's own on-call users: its alerts go to them, another
	// school's never do.
	cfg.OutOfHours = []string{"trust-oncall"}
	cfg.OnCallOf = func(device string) []string {
		if device == "d-oak" {
			return []string{"oak-oncall"}
		}
		return nil
	}
	if got := cfg.onCall("d-oak"); len(got) != 1 || got[0] != "oak-oncall" {
		t.Errorf("oak's on call: %v", got)
	}
	if got := cfg.onCall("d-elm"); len(got) != 1 || got[0] != "trust-oncall" {
		t.Errorf("elm's on call: %v, want the installation's", got)
	}
	cfg.OutOfHours = nil
	if !cfg.outOfHours(at, "d-oak") {
		t.Error("oak has its own on-call users, but its alert is not sent out of hours")
	}
	if cfg.outOfHours(at.Add(2*time.Hour), "d-elm") {
		t.Error("elm has nobody on call, but its alert is sent out of hours")
	}
}
