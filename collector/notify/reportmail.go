package notify

import (
	"context"
	"fmt"
	"net/url"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// A scheduled report e-mail: who gets it, for which period, and the link.
type reportMail struct {
	report, period string
	role           string // recipients: every enabled user of this role with an address
	subject, intro string
	from, to       time.Time // the report's window, carried in the link
}

// dueReportMails are the report e-mails for the time t: last week's
// monitoring report for the headteachers (ISO weeks, Monday to Monday,
// UTC), and once a term has ended, its governors' report for the governors.
func dueReportMails(t time.Time) []reportMail {
	t = t.UTC()
	day := time.Date(t.Year(), t.Month(), t.Day(), 0, 0, 0, 0, time.UTC)
	monday := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	y, w := monday.AddDate(0, 0, -7).ISOWeek()
	prev := reports.TermOf(reports.TermOf(t).From.AddDate(0, 0, -1))
	return []reportMail{
		{report: "monitoring", period: fmt.Sprintf("%d-W%02d", y, w), role: auth.RoleHeadteacher,
			subject: "Vigil: weekly monitoring report", intro: "The weekly monitoring report is ready.",
			from: monday.AddDate(0, 0, -7), to: monday},
		{report: "governors", period: prev.Name, role: auth.RoleGovernor,
			subject: "Vigil: governors' termly report", intro: "The governors' report for the " + strings.ToLower(prev.Name[:1]) + prev.Name[1:] + " term is ready.",
			from: prev.From, to: prev.To},
	}
}

// RunReports e-mails the scheduled reports (a link only: no attachment
// and no figures in the mail, which may be read on any phone) through the
// notifier's SMTP relay, each once per period (recorded in the store). With
// working hours configured, mail goes out only within them, so it arrives
// at the start of a working day.
func (s *Notifier) RunReports(ctx context.Context) error {
	t := time.NewTicker(s.cfg.ReportInterval)
	defer t.Stop()
	for {
		s.sendDueReports()
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Notifier) sendDueReports() {
	now := s.now()
	if s.cfg.WorkingHours != nil && !s.cfg.WorkingHours.Working(now) {
		return
	}
	for _, m := range dueReportMails(now) {
		sent, err := s.st.ReportMailSent(m.report, m.period)
		if err != nil {
			s.log.Error("report e-mail: read schedule", "report", m.report, "period", m.period, "err", err)
			continue
		}
		if sent {
			continue
		}
		users, err := s.st.Users()
		if err != nil {
			s.log.Error("report e-mail: list users", "err", err)
			return
		}
		n, failed := 0, 0
		for _, u := range users {
			if u.Role != m.role || u.Disabled || u.Email == "" {
				continue
			}
			if err := s.sendReportMail(u.Email, m); err != nil {
				failed++
				s.log.Warn("report e-mail not sent", "report", m.report, "period", m.period, "to", u.Username, "err", err)
				continue
			}
			n++
		}
		if failed > 0 {
			continue // try the period again at the next tick (those sent may get it twice: better than none)
		}
		if err := s.st.MarkReportMailed(m.report, m.period, store.ReportMailed{SentAt: now, Recipients: n}); err != nil {
			s.log.Error("report e-mail: record sent", "report", m.report, "period", m.period, "err", err)
			continue
		}
		s.log.Info("report e-mail sent", "report", m.report, "period", m.period, "recipients", n)
	}
}

func (s *Notifier) sendReportMail(to string, m reportMail) (err error) {
	defer func() {
		if err != nil && s.cfg.OnFailure != nil {
			s.cfg.OnFailure("send")
		}
	}()
	q := url.Values{"report": {m.report}, "from": {reports.Day(m.from)}, "to": {reports.Day(m.to)}}
	body := fmt.Sprintf("%s\r\n\r\n%s/#/reports?%s\r\n\r\n", m.intro, s.cfg.ConsoleURL, q.Encode()) +
		"This message deliberately holds no figures. Sign in to the console to download the report.\r\n"
	// Reports go by the installation's relay.
	return s.deliver("", to, m.subject, body)
}
