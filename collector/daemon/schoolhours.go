package daemon

import (
	"log/slog"
	"sync"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/coverage"
	"github.com/vigil-safeguarding/vigil/collector/notify"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// schoolHours answers each school's own working hours (store.School
// WorkingHours and Timezone, set with `school hours`) to the coverage
// judge and the out-of-hours chain, and its own on-call users
// (store.School.OnCall, `school on-call`) to that chain, and its own mail
// relay (`school mail`) to the notifier. The schools are read again at most
// every refresh, so a change applies within that time without a
// restart, and the judge, which asks for every device on every pass, does
// not scan the store each time.
type schoolHours struct {
	st      *store.Store
	log     *slog.Logger
	refresh time.Duration

	mu     sync.Mutex
	read   time.Time
	hours  map[string]*notify.Schedule // school -> its own hours
	oncall map[string][]string         // school -> its own on-call users
	mail   map[string][2]string        // school -> its own mail relay and sender
	failed map[string]string           // school -> hours it set that no longer parse (logged once)
}

func newSchoolHours(st *store.Store, log *slog.Logger) *schoolHours {
	return &schoolHours{st: st, log: log, refresh: 30 * time.Second, failed: map[string]string{}}
}

// ofSchool is the school's own hours, nil when it has none.
func (h *schoolHours) ofSchool(school string) *notify.Schedule {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hours == nil || time.Since(h.read) > h.refresh {
		h.load()
	}
	return h.hours[school]
}

// ofDevice is the hours of the device's school, nil when it has none.
func (h *schoolHours) ofDevice(device string) *notify.Schedule {
	school, ok := h.st.DeviceSchool(device)
	if !ok {
		return nil
	}
	return h.ofSchool(school)
}

// onCallOf is the on-call users of the device's school, nil when it named
// none.
func (h *schoolHours) onCallOf(device string) []string {
	school, ok := h.st.DeviceSchool(device)
	if !ok {
		return nil
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hours == nil || time.Since(h.read) > h.refresh {
		h.load()
	}
	return h.oncall[school]
}

// mailOf is the mail relay and sender of the device's school, empty when
// it set none.
func (h *schoolHours) mailOf(device string) (relay, from string) {
	school, ok := h.st.DeviceSchool(device)
	if !ok {
		return "", ""
	}
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.hours == nil || time.Since(h.read) > h.refresh {
		h.load()
	}
	m := h.mail[school]
	return m[0], m[1]
}

// forCoverage adapts ofSchool to coverage.Schedule.HoursFor (a nil
// *Schedule must not become a non-nil interface).
func (h *schoolHours) forCoverage(school string) coverage.Hours {
	if s := h.ofSchool(school); s != nil {
		return s
	}
	return nil
}

// load reads every school's hours; mu is held. A failed read keeps the
// hours last read.
func (h *schoolHours) load() {
	h.read = time.Now()
	all, err := h.st.Schools()
	if err != nil {
		h.log.Warn("school working hours not read; keeping the last read", "err", err)
		if h.hours == nil {
			h.hours = map[string]*notify.Schedule{}
		}
		return
	}
	m := map[string]*notify.Schedule{}
	oc := map[string][]string{}
	ml := map[string][2]string{}
	for _, sc := range all {
		if len(sc.OnCall) > 0 {
			oc[sc.ID] = sc.OnCall
		}
		if sc.MailRelay != "" {
			ml[sc.ID] = [2]string{sc.MailRelay, sc.MailFrom}
		}
		if sc.WorkingHours == "" {
			continue
		}
		loc, err := time.LoadLocation(sc.Timezone)
		var s *notify.Schedule
		if err == nil {
			s, err = notify.ParseSchedule(sc.WorkingHours, loc)
		}
		if err != nil {
			// Checked when set; a zone database that lost the zone is
			// the installation's hours, said once.
			if h.failed[sc.ID] != sc.WorkingHours {
				h.failed[sc.ID] = sc.WorkingHours
				h.log.Error("a school's working hours do not parse; the installation's apply to it", "school", sc.ID, "err", err)
			}
			continue
		}
		m[sc.ID] = s
	}
	h.hours, h.oncall, h.mail = m, oc, ml
}
