package console

import (
	"context"
	"fmt"
	"net/smtp"
	"net/url"
	"strings"
	"time"

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
		{report: "monitoring", period: fmt.Sprintf("%d-W%02d", y, w), role: RoleHeadteacher,
			subject: "Vigil: weekly monitoring report", intro: "The weekly monitoring report is ready.",
			from: monday.AddDate(0, 0, -7), to: monday},
		{report: "governors", period: prev.Name, role: RoleGovernor,
			subject: "Vigil: governors' termly report", intro: "The governors' report for the " + strings.ToLower(prev.Name[:1]) + prev.Name[1:] + " term is ready.",
			from: prev.From, to: prev.To},
	}
}

// RunReportMail e-mails the scheduled reports (a link only: no attachment
// and no figures in the mail, which may be read on any phone) through the
// notifier's SMTP relay, each once per period (recorded in the store). With
// working hours configured, mail goes out only within them, so it arrives
// at the start of a working day.
func (s *Server) RunReportMail(ctx context.Context, cfg NotifyConfig) error {
	every := cfg.Interval
	if every <= 0 {
		every = time.Minute
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		s.sendDueReports(cfg)
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

func (s *Server) sendDueReports(cfg NotifyConfig) {
	now := s.now()
	if cfg.WorkingHours != nil && !cfg.WorkingHours.Working(now) {
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
			if err := s.sendReportMail(cfg, u.Email, m); err != nil {
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

func (s *Server) sendReportMail(cfg NotifyConfig, to string, m reportMail) (err error) {
	defer func() {
		if err != nil && cfg.OnFailure != nil {
			cfg.OnFailure("send")
		}
	}()
	q := url.Values{"report": {m.report}, "from": {reports.Day(m.from)}, "to": {reports.Day(m.to)}}
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\n", cfg.From)
	fmt.Fprintf(&b, "To: %s\r\n", to)
	fmt.Fprintf(&b, "Subject: %s\r\n", m.subject)
	fmt.Fprintf(&b, "Date: %s\r\n", s.now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@vigil>\r\n", randomToken()[:24])
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nAuto-Submitted: auto-generated\r\n\r\n")
	fmt.Fprintf(&b, "%s\r\n\r\n%s/#/reports?%s\r\n\r\n", m.intro, cfg.ConsoleURL, q.Encode())
	b.WriteString("This message deliberately holds no figures. Sign in to the console to download the report.\r\n")
	return smtp.SendMail(cfg.SMTPAddr, nil, cfg.From, []string{to}, []byte(b.String()))
}
