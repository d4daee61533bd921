package daemon

import (
	"log/slog"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/console"
	"github.com/vigil-safeguarding/vigil/collector/coverage"
	"github.com/vigil-safeguarding/vigil/collector/metrics"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// newCoverageWatcher judges devices' absence against the school's working
// hours (none: every hour counts) and e-mails alarms through the console's
// notifier when SMTP is configured: technicians, also DSLs for pupil
// devices, then the headteacher if nobody acknowledges.
func newCoverageWatcher(cfg Config, st *store.Store, cons *console.Server, hours *console.Schedule, consoleURL string,
	met *metrics.Metrics, log *slog.Logger) *coverage.Watcher {
	sch := coverageSchedule(cfg, hours)
	cc := coverage.Config{Devices: st, Schedule: sch, Logger: log, Interval: min(sch.Heartbeat, 30*time.Second),
		EscalateAfter: cfg.EscalateAfter,
		First:         []string{console.RoleTechnician}, Pupil: []string{console.RoleDSL}, Escalation: []string{console.RoleHeadteacher}}
	if cfg.SMTP != "" {
		from := cfg.SMTPFrom
		if from == "" {
			from = "vigil@localhost"
		}
		cc.Mailer = console.CoverageMailer{Server: cons, Config: console.NotifyConfig{SMTPAddr: cfg.SMTP, From: from,
			ConsoleURL: consoleURL, OnFailure: met.NotificationFailed}}
	}
	return coverage.NewWatcher(cc)
}

// coverageSchedule is what absence is judged against: the coverage watcher
// and the fleet check name an absent device the same way.
func coverageSchedule(cfg Config, hours *console.Schedule) coverage.Schedule {
	hb := cfg.Heartbeat
	if hb <= 0 {
		hb = 60 * time.Second // the server's default
	}
	sch := coverage.Schedule{Heartbeat: hb}
	if hours != nil { // a nil *Schedule in the interface would be called
		sch.Hours = hours
	}
	return sch
}
