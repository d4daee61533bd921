package daemon

import (
	"log/slog"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/coverage"
	"github.com/vigil-safeguarding/vigil/collector/notify"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// newCoverageWatcher judges devices' absence against the school's working
// hours (none: every hour counts) and e-mails alarms through the notifier
// when there is one (--smtp): technicians, also DSLs for pupil devices,
// then the headteacher if nobody acknowledges.
func newCoverageWatcher(cfg Config, st *store.Store, mail *notify.Notifier, hours *notify.Schedule, schools *schoolHours, log *slog.Logger) *coverage.Watcher {
	sch := coverageSchedule(cfg, hours, schools)
	cc := coverage.Config{Devices: st, Schedule: sch, Logger: log, Interval: min(sch.Heartbeat, 30*time.Second),
		EscalateAfter: cfg.EscalateAfter,
		First:         []string{auth.RoleTechnician}, Pupil: []string{auth.RoleDSL}, Escalation: []string{auth.RoleHeadteacher}}
	if mail != nil { // a nil *Notifier in the Mailer interface would be called
		cc.Mailer = mail
	}
	return coverage.NewWatcher(cc)
}

// coverageSchedule is what absence is judged against: the coverage watcher
// and the fleet check name an absent device the same way.
func coverageSchedule(cfg Config, hours *notify.Schedule, schools *schoolHours) coverage.Schedule {
	hb := cfg.Heartbeat
	if hb <= 0 {
		hb = 60 * time.Second // the server's default
	}
	sch := coverage.Schedule{Heartbeat: hb}
	if hours != nil { // a nil *Schedule in the interface would be called
		sch.Hours = hours
	}
	if schools != nil {
		sch.HoursFor = schools.forCoverage
	}
	return sch
}
