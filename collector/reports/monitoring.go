// Package reports builds the console's reports (seed 002; issue 11) as
// data: pure functions from a snapshot of the store to a report struct,
// which the same package then renders to PDF and CSV. The console gathers
// the snapshot and decides who may ask for which report.
package reports

import (
	"encoding/csv"
	"fmt"
	"io"
	"slices"
	"sort"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/triage"
	"github.com/vigil-safeguarding/vigil/internal/findings"
)

// SilentAfter: a device not connected and not seen for this long is "not
// reporting" (the console's fleet list uses the same bound).
const SilentAfter = 24 * time.Hour

// ExpiringWithin: an exclusion ending this soon after the report is listed
// as expiring, so it is renewed or let go on purpose.
const ExpiringWithin = 14 * 24 * time.Hour

// Count is one row of a breakdown.
type Count struct {
	Key   string // machine value (a category, "high", "no_concern")
	Label string // as people read it
	N     int
}

// Durations summarises how long something took.
type Durations struct {
	N           int           // alerts it applies to
	Median, P90 time.Duration // zero when N == 0
}

// ExclusionRow is an exclusion in force or awaiting approval.
type ExclusionRow struct {
	ID, RuleID, Term, Category, Status string
	ApprovedBy                         string
	ExpiresAt                          time.Time // zero: no expiry
	Expiring                           bool
}

// DeviceRow is a device out of compliance or not reporting.
type DeviceRow struct {
	DeviceID, Hostname, Group, OS string
	LastSeen                      time.Time
	Failing                       []string // failing checks, sorted
}

// Monitoring is the headteacher's monitoring report (weekly or on demand).
type Monitoring struct {
	From, To, Generated time.Time
	Total               int
	ByCategory          []Count // most first, then by name
	BySeverity          []Count // critical first
	ByOutcome           []Count // in the order of the review
	ToFirstReview       Durations
	ToConclusion        Durations
	InForce             []ExclusionRow // approved and not expired, soonest expiry first
	Pending             []ExclusionRow
	OutOfCompliance     []DeviceRow
	NotReporting        []DeviceRow // longest silent first
	// Review is where the DfE annual review stands; its reminder is
	// printed when one is due.
	Review ReviewStatus
}

// Outcome is where an alert's review ended, or stands: the conclusion of
// a concluded review, "false_positive", or the open status.
func Outcome(st store.AlertState) string {
	switch st.Status {
	case triage.Concluded:
		if st.Conclusion != "" {
			return st.Conclusion
		}
		return "concluded"
	case "":
		return string(triage.New)
	}
	return string(st.Status)
}

// Outcomes lists every outcome in the order of the review.
var Outcomes = append(append([]string{string(triage.New), string(triage.InReview)}, triage.Conclusions...), string(triage.FalsePositive))

// OutcomeLabel is an outcome as people read it.
func OutcomeLabel(o string) string {
	switch o {
	case string(triage.New):
		return "Not yet reviewed"
	case string(triage.InReview):
		return "In review"
	case string(triage.FalsePositive):
		return "False positive"
	case "concluded":
		return "Concluded"
	}
	if l, ok := triage.ConclusionLabels[o]; ok {
		return l
	}
	return o
}

// firstReview is when someone first acted on the alert (started a review
// or marked it a false positive); zero if nobody has.
func firstReview(st store.AlertState) time.Time {
	for _, h := range st.History {
		if h.Action != string(triage.AddNote) && !h.Time.IsZero() {
			return h.Time
		}
	}
	if !st.FalsePositiveAt.IsZero() {
		return st.FalsePositiveAt
	}
	return st.FirstSignedAt
}

// closedAt is when the review ended; zero while it is open.
func closedAt(st store.AlertState) time.Time {
	switch st.Status {
	case triage.Concluded:
		return st.ConcludedAt
	case triage.FalsePositive:
		return st.FalsePositiveAt
	}
	return time.Time{}
}

// summarise gives the median and 90th percentile (nearest rank).
func summarise(ds []time.Duration) Durations {
	if len(ds) == 0 {
		return Durations{}
	}
	slices.Sort(ds)
	rank := func(p float64) time.Duration {
		i := int(p*float64(len(ds))+0.999999) - 1 // nearest rank: ceil(p*n)-1
		return ds[max(0, min(i, len(ds)-1))]
	}
	return Durations{N: len(ds), Median: rank(0.5), P90: rank(0.9)}
}

func inWindow(t, from, to time.Time) bool { return !t.Before(from) && t.Before(to) }

// BuildMonitoring makes the monitoring report for alerts observed in
// [from, to); exclusions and devices are as they stand at s.Now.
func BuildMonitoring(s Snapshot, from, to time.Time) Monitoring {
	m := Monitoring{From: from, To: to, Generated: s.Now, Review: ReviewDue(s.Reviews, s.Now)}
	cats, sevs, outs := map[string]int{}, map[string]int{}, map[string]int{}
	var first, concl []time.Duration
	for _, a := range s.Alerts {
		obs := a.Finding.GetObservedAt().AsTime()
		if !inWindow(obs, from, to) {
			continue
		}
		m.Total++
		cats[a.Finding.GetCategory()]++
		sevs[findings.SeverityName(a.Finding.GetSeverity())]++
		outs[Outcome(a.State)]++
		if t := firstReview(a.State); !t.IsZero() && !t.Before(obs) {
			first = append(first, t.Sub(obs))
		}
		if t := closedAt(a.State); !t.IsZero() && !t.Before(obs) {
			concl = append(concl, t.Sub(obs))
		}
	}
	m.ByCategory = byCount(cats)
	for _, sv := range []string{"critical", "high", "medium", "low", "info", "unspecified"} {
		if n := sevs[sv]; n > 0 {
			m.BySeverity = append(m.BySeverity, Count{Key: sv, Label: sv, N: n})
		}
		delete(sevs, sv)
	}
	m.BySeverity = append(m.BySeverity, byCount(sevs)...)
	for _, o := range Outcomes {
		m.ByOutcome = append(m.ByOutcome, Count{Key: o, Label: OutcomeLabel(o), N: outs[o]})
		delete(outs, o)
	}
	m.ByOutcome = append(m.ByOutcome, byCount(outs)...)
	m.ToFirstReview, m.ToConclusion = summarise(first), summarise(concl)

	for _, x := range s.Exclusions {
		row := ExclusionRow{ID: x.ID, RuleID: x.RuleID, Term: x.Term, Category: x.Category, Status: x.Status, ApprovedBy: x.ApprovedBy, ExpiresAt: x.ExpiresAt}
		expired := !x.ExpiresAt.IsZero() && !x.ExpiresAt.After(s.Now)
		switch {
		case expired:
			continue
		case x.Status == "approved":
			row.Expiring = !x.ExpiresAt.IsZero() && x.ExpiresAt.Sub(s.Now) <= ExpiringWithin
			m.InForce = append(m.InForce, row)
		default:
			m.Pending = append(m.Pending, row)
		}
	}
	sort.SliceStable(m.InForce, func(i, j int) bool {
		a, b := m.InForce[i].ExpiresAt, m.InForce[j].ExpiresAt
		if a.IsZero() != b.IsZero() {
			return !a.IsZero()
		}
		return a.Before(b) || a.Equal(b) && m.InForce[i].ID < m.InForce[j].ID
	})
	sort.Slice(m.Pending, func(i, j int) bool { return m.Pending[i].ID < m.Pending[j].ID })

	for _, d := range s.Devices {
		if d.Device.Revoked {
			continue
		}
		row := DeviceRow{DeviceID: d.Device.DeviceID, Hostname: d.Device.Hostname, Group: d.Device.Group, OS: d.Device.OS, LastSeen: d.Device.LastSeen}
		for c, v := range d.Compliance {
			if v == "fail" {
				row.Failing = append(row.Failing, c)
			}
		}
		sort.Strings(row.Failing)
		if len(row.Failing) > 0 {
			m.OutOfCompliance = append(m.OutOfCompliance, row)
		}
		if !d.Connected && s.Now.Sub(d.Device.LastSeen) > SilentAfter {
			m.NotReporting = append(m.NotReporting, row)
		}
	}
	sort.Slice(m.OutOfCompliance, func(i, j int) bool { return m.OutOfCompliance[i].Hostname < m.OutOfCompliance[j].Hostname })
	sort.Slice(m.NotReporting, func(i, j int) bool {
		a, b := m.NotReporting[i], m.NotReporting[j]
		return a.LastSeen.Before(b.LastSeen) || a.LastSeen.Equal(b.LastSeen) && a.Hostname < b.Hostname
	})
	return m
}

// byCount orders a tally most first, then by key.
func byCount(m map[string]int) []Count {
	out := make([]Count, 0, len(m))
	for k, n := range m {
		label := k
		if label == "" {
			label = "(none)"
		}
		out = append(out, Count{Key: k, Label: label, N: n})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].N > out[j].N || out[i].N == out[j].N && out[i].Key < out[j].Key })
	return out
}

// Day formats a date for reports (UTC).
func Day(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02")
}

func reportStamp(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

// Human writes a duration as people read it ("3h 05m", "2d 4h").
func Human(d time.Duration) string {
	switch {
	case d <= 0:
		return "0m"
	case d < time.Hour:
		return fmt.Sprintf("%dm", int(d.Minutes()+0.5))
	case d < 48*time.Hour:
		return fmt.Sprintf("%dh %02dm", int(d.Hours()), int(d.Minutes())%60)
	}
	return fmt.Sprintf("%dd %dh", int(d.Hours())/24, int(d.Hours())%24)
}

// WriteCSV writes the monitoring report as one CSV of sections:
// section,item,value[,detail...] rows, so a spreadsheet can filter by section.
func (m Monitoring) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	rec := func(f ...string) { cw.Write(f) }
	rec("section", "item", "value", "detail")
	rec("window", "from", Day(m.From), "")
	rec("window", "to", Day(m.To), "exclusive")
	rec("window", "generated", reportStamp(m.Generated), "")
	rec("review", m.Review.State, Day(m.Review.Due), m.Review.Reminder)
	rec("alerts", "total", fmt.Sprint(m.Total), "")
	for _, c := range m.ByCategory {
		rec("by_category", c.Key, fmt.Sprint(c.N), c.Label)
	}
	for _, c := range m.BySeverity {
		rec("by_severity", c.Key, fmt.Sprint(c.N), c.Label)
	}
	for _, c := range m.ByOutcome {
		rec("by_outcome", c.Key, fmt.Sprint(c.N), c.Label)
	}
	for _, d := range []struct {
		name string
		d    Durations
	}{{"to_first_review", m.ToFirstReview}, {"to_conclusion", m.ToConclusion}} {
		rec(d.name, "alerts", fmt.Sprint(d.d.N), "")
		rec(d.name, "median_minutes", fmt.Sprintf("%.0f", d.d.Median.Minutes()), Human(d.d.Median))
		rec(d.name, "p90_minutes", fmt.Sprintf("%.0f", d.d.P90.Minutes()), Human(d.d.P90))
	}
	for _, x := range m.InForce {
		exp := "expires " + Day(x.ExpiresAt)
		if x.ExpiresAt.IsZero() {
			exp = "no expiry"
		} else if x.Expiring {
			exp = "EXPIRING " + Day(x.ExpiresAt)
		}
		rec("exclusion_in_force", x.ID, x.RuleID+" "+x.Term, strings.Join([]string{x.Category, "approved by " + x.ApprovedBy, exp}, "; "))
	}
	for _, x := range m.Pending {
		rec("exclusion_pending", x.ID, x.RuleID+" "+x.Term, x.Category)
	}
	for _, d := range m.OutOfCompliance {
		rec("out_of_compliance", d.Hostname, strings.Join(d.Failing, " "), d.DeviceID)
	}
	for _, d := range m.NotReporting {
		rec("not_reporting", d.Hostname, reportStamp(d.LastSeen), d.DeviceID)
	}
	cw.Flush()
	return cw.Error()
}

// WritePDF renders the monitoring report, with charts by category,
// severity and outcome.
func (m Monitoring) WritePDF(w io.Writer) error {
	r := newRenderer("Vigil monitoring report")
	r.heading("Monitoring report", 16)
	r.para(fmt.Sprintf("Alerts observed from %s to %s (exclusive). Exclusions and devices as at %s.", Day(m.From), Day(m.To), reportStamp(m.Generated)))
	if m.Review.Reminder != "" {
		r.para("REMINDER: " + m.Review.Reminder)
	}
	r.section(fmt.Sprintf("Alerts: %d", m.Total))
	bars := func(cs []Count) []ChartBar {
		out := make([]ChartBar, 0, len(cs))
		for _, c := range cs {
			out = append(out, ChartBar{Label: c.Label, N: c.N})
		}
		return out
	}
	r.barChart("By category", bars(m.ByCategory))
	r.barChart("By severity", bars(m.BySeverity))
	r.barChart("By outcome", bars(m.ByOutcome))
	r.section("Time to review")
	dur := func(name string, d Durations) []string {
		if d.N == 0 {
			return []string{name, "0", "-", "-"}
		}
		return []string{name, fmt.Sprint(d.N), Human(d.Median), Human(d.P90)}
	}
	r.table([]float64{70, 25, 35, 0}, []string{"From alert to", "Alerts", "Median", "90th percentile"},
		[][]string{dur("first review", m.ToFirstReview), dur("conclusion", m.ToConclusion)})
	r.section(fmt.Sprintf("Exclusions in force: %d", len(m.InForce)))
	var rows [][]string
	for _, x := range m.InForce {
		exp := Day(x.ExpiresAt)
		if x.ExpiresAt.IsZero() {
			exp = "no expiry"
		} else if x.Expiring {
			exp += " (expiring)"
		}
		rows = append(rows, []string{x.RuleID, x.Term, x.Category, x.ApprovedBy, exp})
	}
	r.table([]float64{35, 40, 30, 35, 0}, []string{"Rule", "Term", "Category", "Approved by", "Expires"}, rows)
	if len(m.Pending) > 0 {
		r.para(fmt.Sprintf("%d exclusion(s) proposed and awaiting a DSL's approval.", len(m.Pending)))
	}
	r.section(fmt.Sprintf("Devices out of compliance: %d", len(m.OutOfCompliance)))
	rows = nil
	for _, d := range m.OutOfCompliance {
		rows = append(rows, []string{d.Hostname, d.Group, d.OS, joinComma(d.Failing)})
	}
	r.table([]float64{45, 35, 25, 0}, []string{"Device", "Group", "OS", "Failing checks"}, rows)
	r.section(fmt.Sprintf("Devices not reporting: %d", len(m.NotReporting)))
	rows = nil
	for _, d := range m.NotReporting {
		rows = append(rows, []string{d.Hostname, d.Group, d.OS, reportStamp(d.LastSeen)})
	}
	r.table([]float64{45, 35, 25, 0}, []string{"Device", "Group", "OS", "Last seen"}, rows)
	r.para(fmt.Sprintf("Not reporting: not connected and not seen for more than %s.", Human(SilentAfter)))
	return r.write(w)
}

func joinComma(s []string) string { return strings.Join(s, ", ") }
