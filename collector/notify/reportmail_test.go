package notify

import (
	"sort"
	"strings"
	"testing"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// The scheduled reports go to a real SMTP server (aiosmtpd) on loopback:
// last week's monitoring report to the headteachers, the last term's
// governors' report to the governors, each a link with no figures and no
// attachment, once per period even when asked again.
func TestReportMail(t *testing.T) {
	addr, dir := smtpServer(t)
	e := newEnv(t)
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC) // a Wednesday
	e.setNow(now)
	e.user("head", RoleHeadteacher, false, "head@school.test")
	e.user("gov", RoleGovernor, false, "gov@school.test")
	e.user("chair", RoleGovernor, true, "chair@school.test")
	e.user("dsl", RoleDSL, false, "dsl@school.test")
	e.user("gov2", RoleGovernor, false, "") // no address: skipped
	e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_HIGH, "secretterm", now.Add(-7*24*time.Hour))
	n := e.notifier(Config{SMTPAddr: addr, From: "vigil@school.test", ConsoleURL: "https://vigil.school.test"})
	n.sendDueReports()
	got := waitMail(t, dir, 3, time.Minute)
	n.sendDueReports() // already sent this week and for this term: nothing more
	sort.Slice(got, func(i, j int) bool { return got[i].to < got[j].to })
	want := []struct{ to, subject, link string }{
		{"chair@school.test", "Vigil: governors' termly report", "https://vigil.school.test/#/reports?from=2026-04-01&report=governors&to=2026-09-01"},
		{"gov@school.test", "Vigil: governors' termly report", "https://vigil.school.test/#/reports?from=2026-04-01&report=governors&to=2026-09-01"},
		{"head@school.test", "Vigil: weekly monitoring report", "https://vigil.school.test/#/reports?from=2026-11-23&report=monitoring&to=2026-11-30"},
	}
	if len(got) != len(want) {
		t.Fatalf("%d messages, want %d: %+v", len(got), len(want), got)
	}
	for i, w := range want {
		m := got[i]
		if m.to != w.to || m.subject != w.subject || !strings.Contains(m.body, w.link) {
			t.Errorf("message %d: to %q subject %q body %q; want to %q subject %q link %q", i, m.to, m.subject, m.body, w.to, w.subject, w.link)
		}
		if strings.Contains(m.raw, "multipart") || strings.Contains(m.raw, "application/pdf") || strings.Contains(m.body, "self_harm") || strings.Contains(m.body, "secretterm") {
			t.Errorf("message %d carries more than a link:\n%s", i, m.raw)
		}
	}
	// A week later, the headteacher gets the next weekly report; the term's
	// governors' report is not sent again.
	e.setNow(now.Add(7 * 24 * time.Hour))
	n.sendDueReports()
	got = waitMail(t, dir, 4, time.Minute)
	if len(got) != 4 {
		t.Fatalf("%d messages after a week, want 4", len(got))
	}
	next := 0
	for _, m := range got {
		if strings.Contains(m.body, "from=2026-11-30&report=monitoring&to=2026-12-07") {
			next++
		}
	}
	if next != 1 {
		t.Errorf("the next week's monitoring report went out %d times, want 1", next)
	}
}
