// Package notify sends the collector's e-mail: alert notifications and
// their escalation chain (dsl → headteacher → chair, with an out-of-hours
// first step), device coverage alarms (collector/coverage) and the scheduled
// report links. Every message is a link into the console and nothing more.
// Who reviews an alert is not decided here: the notifier asks Routing (the
// console's routing policy, seed 002 §5.3).
package notify

import (
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"log/slog"
	"net/smtp"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/triage"
	"github.com/vigil-safeguarding/vigil/internal/personid"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
)

// Routes of the escalation chain (collector/triage owns them).
const (
	RouteDSL         = string(triage.RouteDSL)
	RouteHeadteacher = string(triage.RouteHeadteacher)
	RouteChair       = string(triage.RouteChair)
)

// Config for New.
type Config struct {
	// Store holds the alerts, the notification bookkeeping and the accounts.
	Store Store
	// Routing says whose route an alert is on and who reviews a route.
	// Only the alert notifier (Run) needs it.
	Routing Routing
	// Schools decides who is told about a device (coverage alarms); nil:
	// nobody is.
	Schools Schools
	Logger  *slog.Logger
	Now     func() time.Time

	SMTPAddr string // host:port of the school's mail relay
	From     string
	// MinSeverity: alerts at or above it are e-mailed.
	MinSeverity vigilv1.Severity
	// EscalateAfter: an alert still "new" this long after an e-mail goes to
	// the next person (dsl → headteacher → chair).
	EscalateAfter time.Duration
	// ConsoleURL is the console's address as recipients reach it.
	ConsoleURL string
	// Interval between escalation checks (default 15 s).
	Interval time.Duration
	// ReportInterval between checks for due report e-mails (default 1 min).
	ReportInterval time.Duration
	// CatchUp: at start, alerts observed this recently that were never
	// notified are notified (default 24 h).
	CatchUp time.Duration
	// WorkingHours and OutOfHours: outside the working hours (judged when
	// the alert is notified), a new alert is e-mailed first to the
	// OutOfHours users (staff on call, by username) whose role may open it;
	// if it is not acknowledged within EscalateAfter it goes to its own
	// route and on up the chain as usual. Off when either is empty. With
	// working hours, report e-mails go out only within them.
	WorkingHours *Schedule
	OutOfHours   []string
	// HoursOf, when set, answers the working hours of the school of the
	// device an alert is about, when that school set its own (nil: it did
	// not, and WorkingHours applies).
	HoursOf func(deviceID string) *Schedule
	// OnCallOf, when set, answers the on-call users of the school of the
	// device an alert is about, when that school named its own (nil or
	// empty: OutOfHours applies).
	OnCallOf func(deviceID string) []string
	// MailOf, when set, answers the mail relay (host:port) and sender of
	// the school of the device an e-mail is about, when that school set
	// its own (empty: SMTPAddr and From apply).
	MailOf func(deviceID string) (relay, from string)
	// OnFailure, if set, is told of each e-mail not sent ("send") and each
	// one nobody could be sent ("no_recipient"), for /metrics.
	OnFailure func(reason string)
}

// Store is what the notifier needs of the store: the feed of new alerts
// (and a catch-up listing), the alert and its triage record, the
// notification and report-mail bookkeeping, and the accounts to e-mail.
type Store interface {
	SubscribeAlerts() *store.AlertFeed
	ListAlerts(ctx context.Context, q store.AlertScan, fn func(*store.Alert) bool) ([]byte, error)
	GetAlert(device string, seq uint64) (*store.Alert, error)
	UpdateAlertState(device string, seq uint64, fn func(*store.AlertState) error) (store.AlertState, error)
	GetNotify(device string, seq uint64) (store.NotifyState, error)
	PutNotify(device string, seq uint64, n store.NotifyState) error
	PendingNotifies(fn func(device string, seq uint64, n store.NotifyState) error) error
	ReportMailSent(report, period string) (bool, error)
	MarkReportMailed(report, period string, r store.ReportMailed) error
	Users() ([]store.User, error)
}

// Routing is the console's routing policy as the notifier asks it, so the
// rule of who reviews what stays in one place.
type Routing interface {
	// RouteOf is the route of the alert about f's user.
	RouteOf(f *vigilv1.Finding) string
	// Reviews says whether u reviews route and may be told of the alert
	// about f on it (u is not the person the alert is about).
	Reviews(u *store.User, route string, f *vigilv1.Finding) bool
}

// Schools is the school dimension of who is told about a device
// (collector/tenancy.Policy): only those who may see it.
type Schools interface {
	SeesDevice(u *store.User, device string) bool
}

// Notifier sends the collector's e-mail.
type Notifier struct {
	cfg     Config
	st      Store
	routing Routing
	log     *slog.Logger
	now     func() time.Time
}

// New returns a notifier for cfg.
func New(cfg Config) *Notifier {
	n := &Notifier{cfg: cfg, st: cfg.Store, routing: cfg.Routing, log: cfg.Logger, now: cfg.Now}
	if n.log == nil {
		n.log = slog.Default()
	}
	if n.now == nil {
		n.now = time.Now
	}
	if n.cfg.Interval <= 0 {
		n.cfg.Interval = 15 * time.Second
	}
	if n.cfg.ReportInterval <= 0 {
		n.cfg.ReportInterval = time.Minute
	}
	if n.cfg.CatchUp <= 0 {
		n.cfg.CatchUp = 24 * time.Hour
	}
	n.cfg.ConsoleURL = strings.TrimRight(n.cfg.ConsoleURL, "/")
	return n
}

// routeOutOfHours prefixes the route of an alert whose first e-mail went to
// the on-call users (NotifyState.Route "out_of_hours:dsl"); its next step
// is the route itself.
const routeOutOfHours = "out_of_hours:"

func (cfg *Config) outOfHours(t time.Time, device string) bool {
	hours := cfg.WorkingHours
	if cfg.HoursOf != nil {
		if h := cfg.HoursOf(device); h != nil {
			hours = h
		}
	}
	return hours != nil && len(cfg.onCall(device)) > 0 && !hours.Working(t)
}

// onCall is who is on call for the device's school.
func (cfg *Config) onCall(device string) []string {
	if cfg.OnCallOf != nil {
		if u := cfg.OnCallOf(device); len(u) > 0 {
			return u
		}
	}
	return cfg.OutOfHours
}

// ParseSeverity reads a severity name (as in rule files, any case).
func ParseSeverity(s string) (vigilv1.Severity, error) {
	if v, ok := rules.ParseSeverity(strings.ToLower(s)); ok {
		return vigilv1.Severity(v), nil
	}
	return 0, fmt.Errorf("severity %q: info, low, medium, high or critical", s)
}

// nextRoute is the escalation chain.
func nextRoute(r string) string {
	if own, ok := strings.CutPrefix(r, routeOutOfHours); ok {
		return own
	}
	switch r {
	case RouteDSL:
		return RouteHeadteacher
	case RouteHeadteacher:
		return RouteChair
	}
	return ""
}

type alertKey struct {
	dev string
	seq uint64
}

// Run e-mails new alerts and escalates unacknowledged ones until
// ctx ends. It follows the store's alert feed, so alerts that arrive late
// from a device that was offline
// are notified when they arrive.
func (s *Notifier) Run(ctx context.Context) error {
	if s.routing == nil {
		return errors.New("notifier: no routing")
	}
	// The feed is registered before the catch-up below, so an alert
	// committed in between is in one or the other (GetNotify skips the
	// duplicate).
	feed := s.st.SubscribeAlerts()
	defer feed.Close()
	// Catch up on what arrived while the notifier was not running
	// (duplicates are skipped by GetNotify).
	catchUp := func() {
		var backlog []alertKey
		_, err := s.st.ListAlerts(ctx, store.AlertScan{From: s.now().Add(-s.cfg.CatchUp)}, func(a *store.Alert) bool {
			backlog = append(backlog, alertKey{a.Finding.DeviceId, a.Finding.Seq})
			return true
		})
		if err != nil && ctx.Err() == nil {
			s.log.Error("notifier: catch-up", "err", err)
		}
		for i := len(backlog) - 1; i >= 0; i-- {
			s.notifyNew(ctx, backlog[i])
		}
	}
	catchUp()
	tick := time.NewTicker(s.cfg.Interval)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return nil
		case <-feed.Ready():
			for _, r := range feed.Take() {
				s.notifyNew(ctx, alertKey{r.DeviceID, r.Seq})
			}
		case <-tick.C:
			s.escalate()
		}
	}
}

// recipients are the active users reviewing route, with an address, other
// than the person the alert is about.
func (s *Notifier) recipients(route string, a *store.Alert) []store.User {
	users, err := s.st.Users()
	if err != nil {
		s.log.Error("notifier: list users", "err", err)
		return nil
	}
	var out []store.User
	for _, u := range users {
		if u.Disabled || u.Email == "" || !s.routing.Reviews(&u, route, a.Finding) {
			continue
		}
		out = append(out, u)
	}
	return out
}

func (s *Notifier) notifyNew(ctx context.Context, k alertKey) {
	if _, err := s.st.GetNotify(k.dev, k.seq); err == nil {
		return // already notified
	}
	var a *store.Alert
	var err error
	// The subscription may report the write a moment before it is visible.
	for i := 0; i < 20; i++ {
		if a, err = s.st.GetAlert(k.dev, k.seq); !errors.Is(err, store.ErrNotFound) {
			break
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(50 * time.Millisecond):
		}
	}
	if err != nil {
		s.log.Warn("notifier: read alert", "alert", store.AlertID(k.dev, k.seq), "err", err)
		return
	}
	if a.Finding.Severity < s.cfg.MinSeverity || a.State.Status != triage.New {
		return
	}
	route := s.routing.RouteOf(a.Finding)
	if s.cfg.outOfHours(s.now(), a.Finding.GetDeviceId()) && s.sendOutOfHours(a, route) {
		return
	}
	s.sendChain(a, route, 0, false)
}

// sendOutOfHours e-mails a new alert to the on-call users who review its
// route (routing, seed 002 §5.3, is kept: an on-call DSL is not sent a staff
// alert) and records it. It reports false when nobody could be e-mailed;
// the alert then takes the usual chain at once.
func (s *Notifier) sendOutOfHours(a *store.Alert, route string) bool {
	id := store.AlertID(a.Finding.DeviceId, a.Finding.Seq)
	oncall := map[string]bool{}
	for _, u := range s.cfg.onCall(a.Finding.DeviceId) {
		oncall[personid.Canonical(u)] = true
	}
	var rcpts []store.User
	for _, u := range s.recipients(route, a) {
		if oncall[personid.Canonical(u.Username)] {
			rcpts = append(rcpts, u)
		}
	}
	if len(rcpts) == 0 {
		s.log.Warn("notifier: out of hours, but nobody on call reviews this route with an e-mail address; using the usual chain", "alert", id, "route", route)
		return false
	}
	sent := 0
	for _, u := range rcpts {
		if err := s.sendMail(u.Email, id, mailOutOfHours); err != nil {
			s.log.Error("notifier: notification not sent", "alert", id, "to", u.Username, "err", err)
			continue
		}
		sent++
	}
	if sent == 0 {
		return false
	}
	now := s.now().UTC()
	detail := fmt.Sprintf("out of hours: e-mailed %d of %d on-call %s reviewer(s)", sent, len(rcpts), route)
	_, err := s.st.UpdateAlertState(a.Finding.DeviceId, a.Finding.Seq, func(st *store.AlertState) error {
		st.History = append(st.History, store.HistoryEntry{Time: now, By: "vigil", Action: "notified", Detail: detail})
		return nil
	})
	if err != nil {
		s.log.Error("notifier: record", "alert", id, "err", err)
	}
	if err := s.st.PutNotify(a.Finding.DeviceId, a.Finding.Seq, store.NotifyState{Route: routeOutOfHours + route, LastSent: now}); err != nil {
		s.log.Error("notifier: record", "alert", id, "err", err)
	}
	s.log.Info("notifier: alert notified out of hours", "alert", id, "route", route, "recipients", sent)
	return true
}

// sendChain e-mails the first route from r on that has recipients and
// records it; routes beyond the alert's own become visible to their reviewers.
func (s *Notifier) sendChain(a *store.Alert, r string, level int, escalation bool) {
	id := store.AlertID(a.Finding.DeviceId, a.Finding.Seq)
	now := s.now().UTC()
	for ; r != ""; r, level, escalation = nextRoute(r), level+1, true {
		rcpts := s.recipients(r, a)
		if len(rcpts) == 0 {
			s.log.Warn("notifier: nobody with an e-mail address reviews this route; trying the next", "alert", id, "route", r)
			continue
		}
		sent := 0
		for _, u := range rcpts {
			kind := mailNew
			if escalation {
				kind = mailEscalation
			}
			if err := s.sendMail(u.Email, id, kind); err != nil {
				s.log.Error("notifier: notification not sent", "alert", id, "to", u.Username, "err", err)
				continue
			}
			sent++
		}
		action, detail := "notified", fmt.Sprintf("e-mailed %d of %d %s reviewer(s)", sent, len(rcpts), r)
		if escalation {
			action = "escalated"
			detail = fmt.Sprintf("not acknowledged; e-mailed %d of %d %s reviewer(s)", sent, len(rcpts), r)
		}
		own, ownRoute := r, s.routing.RouteOf(a.Finding)
		_, err := s.st.UpdateAlertState(a.Finding.DeviceId, a.Finding.Seq, func(st *store.AlertState) error {
			if escalation && own != ownRoute { // after an out-of-hours e-mail the first escalation is to the alert's own route
				st.EscalatedTo = append(st.EscalatedTo, own)
			}
			st.History = append(st.History, store.HistoryEntry{Time: now, By: "vigil", Action: action, Detail: detail})
			return nil
		})
		if err != nil {
			s.log.Error("notifier: record", "alert", id, "err", err)
		}
		if err := s.st.PutNotify(a.Finding.DeviceId, a.Finding.Seq, store.NotifyState{Route: r, Level: level, LastSent: now}); err != nil {
			s.log.Error("notifier: record", "alert", id, "err", err)
		}
		s.log.Info("notifier: alert "+action, "alert", id, "route", r, "recipients", sent)
		return
	}
	s.log.Error("notifier: alert not notified: nobody left in the chain has an e-mail address", "alert", id)
	if s.cfg.OnFailure != nil {
		s.cfg.OnFailure("no_recipient")
	}
	s.st.PutNotify(a.Finding.DeviceId, a.Finding.Seq, store.NotifyState{Level: level, LastSent: now, Done: true})
}

// escalate passes unacknowledged alerts to the next person in the chain.
func (s *Notifier) escalate() {
	if s.cfg.EscalateAfter <= 0 {
		return
	}
	now := s.now()
	type due struct {
		k alertKey
		n store.NotifyState
	}
	var list []due
	err := s.st.PendingNotifies(func(dev string, seq uint64, n store.NotifyState) error {
		list = append(list, due{alertKey{dev, seq}, n})
		return nil
	})
	if err != nil {
		s.log.Error("notifier: pending", "err", err)
		return
	}
	for _, d := range list {
		a, err := s.st.GetAlert(d.k.dev, d.k.seq)
		if err != nil && !errors.Is(err, store.ErrNotFound) {
			// Not "acknowledged": the store could not say. Try again
			// at the next tick rather than stop escalating.
			s.log.Error("notifier: read alert to escalate; will retry", "alert", store.AlertID(d.k.dev, d.k.seq), "err", err)
			continue
		}
		if err != nil || a.State.Status != triage.New {
			d.n.Done = true // acknowledged (or expired)
			if err := s.st.PutNotify(d.k.dev, d.k.seq, d.n); err != nil {
				s.log.Error("notifier: record", "alert", store.AlertID(d.k.dev, d.k.seq), "err", err)
			}
			continue
		}
		if now.Sub(d.n.LastSent) < s.cfg.EscalateAfter {
			continue
		}
		next := nextRoute(d.n.Route)
		if next == "" {
			s.log.Warn("notifier: alert still not acknowledged and nobody further to escalate to", "alert", store.AlertID(d.k.dev, d.k.seq))
			d.n.Done = true
			s.st.PutNotify(d.k.dev, d.k.seq, d.n)
			continue
		}
		s.sendChain(a, next, d.n.Level+1, true)
	}
}

// Kinds of notification e-mail.
const (
	mailNew = iota
	mailEscalation
	mailOutOfHours
)

// sendMail sends the notification: a link only, nothing sensitive.
func (s *Notifier) sendMail(to, alertID string, kind int) (err error) {
	defer func() {
		if err != nil && s.cfg.OnFailure != nil {
			s.cfg.OnFailure("send")
		}
	}()
	subject := "Vigil: new alert needs review"
	intro := "A new alert in Vigil needs review."
	switch kind {
	case mailEscalation:
		subject = "Vigil: alert not yet acknowledged"
		intro = "An alert in Vigil has not been acknowledged in time and is passed to you."
	case mailOutOfHours:
		intro = "A new alert in Vigil needs review. It arrived out of school hours and you are on call."
	}
	body := fmt.Sprintf("%s\r\n\r\n%s/#/alerts/%s\r\n\r\n", intro, s.cfg.ConsoleURL, alertID) +
		"This message deliberately holds no details. Sign in to the console to see the alert.\r\n"
	device, _, _ := store.ParseAlertID(alertID)
	return s.deliver(device, to, subject, body)
}

// route is the relay and sender of mail about device: its school's own
// when it set them, else the installation's ("" device: the installation's).
func (s *Notifier) route(device string) (relay, from string) {
	if device != "" && s.cfg.MailOf != nil {
		if r, f := s.cfg.MailOf(device); r != "" && f != "" {
			return r, f
		}
	}
	return s.cfg.SMTPAddr, s.cfg.From
}

// deliver is the one path every notification e-mail leaves by, through
// the relay of the school of device (route).
func (s *Notifier) deliver(device, to, subject, body string) error {
	relay, from := s.route(device)
	var b strings.Builder
	fmt.Fprintf(&b, "From: %s\r\n", from)
	fmt.Fprintf(&b, "To: %s\r\n", to)
	fmt.Fprintf(&b, "Subject: %s\r\n", subject)
	fmt.Fprintf(&b, "Date: %s\r\n", s.now().Format(time.RFC1123Z))
	fmt.Fprintf(&b, "Message-ID: <%s@vigil>\r\n", rand.Text()[:24])
	b.WriteString("MIME-Version: 1.0\r\nContent-Type: text/plain; charset=utf-8\r\nAuto-Submitted: auto-generated\r\n\r\n")
	b.WriteString(body)
	return smtp.SendMail(relay, nil, from, []string{to}, []byte(b.String()))
}
