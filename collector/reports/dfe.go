package reports

import (
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// ReviewEvery is the longest the DfE standards allow between reviews of
// filtering and monitoring provision.
const ReviewEvery = 365 * 24 * time.Hour

// ReviewRemindWithin: the reminder shows this long before the review is due.
const ReviewRemindWithin = 30 * 24 * time.Hour

// Review states.
const (
	ReviewNever   = "never"
	ReviewOK      = "ok"
	ReviewDueSoon = "due_soon"
	ReviewOverdue = "overdue"
)

// ReviewStatus is where the annual review stands, and the reminder to
// show (empty when none is due).
type ReviewStatus struct {
	State    string           `json:"state"`
	Last     *store.DFEReview `json:"last,omitempty"`
	Due      time.Time        `json:"due,omitzero"`
	Reminder string           `json:"reminder,omitempty"`
}

// ReviewDue judges the reviews at now: the next review is the date the
// latest review set, and never later than ReviewEvery after it.
func ReviewDue(reviews []store.DFEReview, now time.Time) ReviewStatus {
	if len(reviews) == 0 {
		return ReviewStatus{State: ReviewNever, Reminder: "No review of filtering and monitoring is recorded: the DfE standards ask for one at least every year."}
	}
	last := reviews[0]
	for _, r := range reviews[1:] {
		if !r.Date.Before(last.Date) {
			last = r
		}
	}
	due := last.Date.Add(ReviewEvery)
	if !last.NextReview.IsZero() && last.NextReview.Before(due) {
		due = last.NextReview
	}
	st := ReviewStatus{State: ReviewOK, Last: &last, Due: due}
	switch {
	case !now.Before(due):
		st.State = ReviewOverdue
		st.Reminder = fmt.Sprintf("The review of filtering and monitoring was due on %s (last review %s).", Day(due), Day(last.Date))
	case due.Sub(now) <= ReviewRemindWithin:
		st.State = ReviewDueSoon
		st.Reminder = fmt.Sprintf("The review of filtering and monitoring is due on %s (last review %s).", Day(due), Day(last.Date))
	}
	return st
}

// Decision is one entry of the decision log.
type Decision struct {
	At       time.Time `json:"at"`
	Kind     string    `json:"kind"`
	What     string    `json:"what"`
	By       string    `json:"by,omitempty"`
	Reason   string    `json:"reason,omitempty"`
	Approver string    `json:"approver,omitempty"`
	Expires  time.Time `json:"expires,omitzero"`
}

// DecisionSources are the records decisions are read from; the decision
// log keeps no copy of its own.
type DecisionSources struct {
	Rules      []store.RulesChange
	Exclusions []store.Exclusion
	Terms      []store.TermDecision
	Access     []store.AccessEntry
	Roles      []store.DFERoles
}

// decisionActions are the access log's entries that are decisions about
// filtering and monitoring (the rest are views and exports).
var decisionActions = map[string]string{
	"revoke-device":   "device revoked",
	"unrevoke-device": "device revocation lifted",
	"dispose-device":  "device disposed of",
	"revoke-token":    "enrolment token revoked",
}

// BuildDecisions is the decision log over [from, to), oldest first.
func BuildDecisions(src DecisionSources, from, to, now time.Time) []Decision {
	var out []Decision
	add := func(d Decision) {
		if inWindow(d.At, from, to) {
			out = append(out, d)
		}
	}
	for _, c := range src.Rules {
		var parts []string
		for _, p := range []struct {
			verb  string
			files []string
		}{{"changed", c.Changed}, {"added", c.Added}, {"removed", c.Removed}} {
			if len(p.files) > 0 {
				parts = append(parts, p.verb+" "+strings.Join(p.files, ", "))
			}
		}
		what := "group " + c.Group + " bundle " + shortHash(c.Hash)
		switch {
		case c.PrevHash == "":
			// The bundle as the history starts: its files are what was in
			// force, not a change; listing them all would bury the log.
			what = fmt.Sprintf("first recorded %s: %d files", what, len(c.Files))
		case len(parts) > 0:
			what += ": " + strings.Join(parts, "; ")
		}
		by := "rules folder on the collector"
		if generatedOnly(c) {
			by = "collector (from the exclusions and school terms below)"
		}
		add(Decision{At: c.At, Kind: "rules change", What: what, By: by})
	}
	for _, x := range src.Exclusions {
		what := fmt.Sprintf("rule %s term %q", x.RuleID, x.Term)
		if x.Category != "" {
			what += " (" + x.Category + ")"
		}
		add(Decision{At: x.ProposedAt, Kind: "exclusion proposed", What: what, By: x.ProposedBy, Reason: x.ProposalReason, Expires: x.ExpiresAt})
		if x.Status == "approved" && !x.ApprovedAt.IsZero() {
			add(Decision{At: x.ApprovedAt, Kind: "exclusion approved", What: what + ", proposed by " + x.ProposedBy, Reason: x.ApprovalReason, Approver: x.ApprovedBy, Expires: x.ExpiresAt})
		}
		if x.Status == "approved" && !x.ExpiresAt.IsZero() && !x.ExpiresAt.After(now) {
			add(Decision{At: x.ExpiresAt, Kind: "exclusion expired", What: what, Approver: x.ApprovedBy})
		}
	}
	for _, t := range src.Terms {
		add(Decision{At: t.At, Kind: "school term " + t.Action, What: fmt.Sprintf("%q (%s, %s)", t.Term.Term, t.Term.Category, t.Term.Severity), By: t.By, Reason: t.Reason})
	}
	for _, e := range src.Access {
		kind, ok := decisionActions[e.Action]
		if !ok {
			continue
		}
		what := strings.TrimSpace(e.DeviceID + " " + e.Detail)
		add(Decision{At: e.Time, Kind: kind, What: what, By: e.Who, Reason: e.Reason})
	}
	for _, r := range src.Roles {
		var names []string
		for _, k := range store.DFERoleKeys {
			if h := r.Holder(k); h.Name != "" {
				names = append(names, DFERoleShort(k)+": "+h.Name)
			}
		}
		add(Decision{At: r.UpdatedAt, Kind: "roles register updated", What: strings.Join(names, "; "), By: r.UpdatedBy})
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].At.Before(out[j].At) })
	return out
}

// generatedOnly: every file the change touched is one the collector
// writes from decisions recorded elsewhere (approved exclusions, school
// terms), so the change is theirs, not an edit of the rules folder.
func generatedOnly(c store.RulesChange) bool {
	n := 0
	for _, fs := range [][]string{c.Added, c.Changed, c.Removed} {
		for _, f := range fs {
			n++
			if !strings.HasPrefix(f, "exclusions/") && !strings.HasPrefix(f, "keywords/school-") {
				return false
			}
		}
	}
	return n > 0 && c.PrevHash != ""
}

func shortHash(h string) string {
	h = strings.TrimPrefix(h, "sha256:")
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// DFERoleShort names a role briefly.
func DFERoleShort(role string) string {
	switch role {
	case store.DFESeniorLeader:
		return "Senior leader"
	case store.DFEGovernor:
		return "Governor"
	case store.DFEDSL:
		return "DSL"
	case store.DFEITProvider:
		return "IT provider"
	}
	return role
}

// CheckRow is one device of the check record.
type CheckRow struct {
	DeviceID, Hostname, Group string
	// Outcome in the latest fleet check (fleetcheck outcomes), or
	// "not_checked" for a device enrolled after it.
	Outcome, OutcomeLabel, Detail string
	// LastProved: the last time monitoring proved itself end to end on the
	// device (its newest selftest finding stored); zero: never.
	LastProved time.Time
}

// Working says whether the row proves monitoring working on the device.
func (c CheckRow) Working() bool { return c.Outcome == "working" }

// EvidencePack is the DfE filtering and monitoring evidence pack.
type EvidencePack struct {
	From, To, Generated time.Time
	Roles               store.DFERoles
	Reviews             []store.DFEReview
	Review              ReviewStatus
	Decisions           []Decision
	// Alerts are the monitoring report's figures over the same window.
	Alerts Monitoring
	// Check is the latest completed fleet check (nil: none yet).
	Check *store.FleetCheck
	Rows  []CheckRow // every enrolled device, not working first
}

// BuildEvidencePack puts the pack together; rows are sorted so the devices
// where monitoring did not prove itself come first.
func BuildEvidencePack(p EvidencePack) EvidencePack {
	p.Review = ReviewDue(p.Reviews, p.Generated)
	sort.SliceStable(p.Rows, func(i, j int) bool {
		a, b := p.Rows[i], p.Rows[j]
		if a.Working() != b.Working() {
			return !a.Working()
		}
		return a.Hostname < b.Hostname || a.Hostname == b.Hostname && a.DeviceID < b.DeviceID
	})
	return p
}

// NotWorking lists the rows where monitoring did not prove itself.
func (p EvidencePack) NotWorking() []CheckRow {
	var out []CheckRow
	for _, r := range p.Rows {
		if !r.Working() {
			out = append(out, r)
		}
	}
	return out
}

func stampOr(t time.Time, none string) string {
	if t.IsZero() {
		return none
	}
	return reportStamp(t)
}

// WriteCSV writes the pack as section,item,value,detail rows.
func (p EvidencePack) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	rec := func(f ...string) { cw.Write(f) }
	rec("section", "item", "value", "detail")
	rec("window", "from", Day(p.From), "")
	rec("window", "to", Day(p.To), "exclusive")
	rec("window", "generated", reportStamp(p.Generated), "")
	for _, k := range store.DFERoleKeys {
		h := p.Roles.Holder(k)
		name := h.Name
		if name == "" {
			name = "NOT NAMED"
		}
		rec("role", k, name, h.Contact)
	}
	rec("review_status", p.Review.State, Day(p.Review.Due), p.Review.Reminder)
	for _, r := range p.Reviews {
		rec("review", Day(r.Date), strings.Join(r.Attendees, "; "), "next review "+Day(r.NextReview))
		rec("review_findings", Day(r.Date), r.Findings, "")
		for _, a := range r.Actions {
			rec("review_action", Day(r.Date), a, "")
		}
	}
	for _, d := range p.Decisions {
		detail := []string{}
		if d.By != "" {
			detail = append(detail, "by "+d.By)
		}
		if d.Reason != "" {
			detail = append(detail, "reason: "+d.Reason)
		}
		if d.Approver != "" {
			detail = append(detail, "approved by "+d.Approver)
		}
		if !d.Expires.IsZero() {
			detail = append(detail, "expires "+Day(d.Expires))
		}
		rec("decision", reportStamp(d.At), d.Kind+": "+d.What, strings.Join(detail, "; "))
	}
	rec("alerts", "total", fmt.Sprint(p.Alerts.Total), "")
	for _, c := range p.Alerts.ByOutcome {
		rec("alerts_by_outcome", c.Key, fmt.Sprint(c.N), c.Label)
	}
	for _, d := range []struct {
		name string
		d    Durations
	}{{"to_first_review", p.Alerts.ToFirstReview}, {"to_conclusion", p.Alerts.ToConclusion}} {
		rec(d.name, "alerts", fmt.Sprint(d.d.N), "")
		rec(d.name, "median_minutes", fmt.Sprintf("%.0f", d.d.Median.Minutes()), Human(d.d.Median))
		rec(d.name, "p90_minutes", fmt.Sprintf("%.0f", d.d.P90.Minutes()), Human(d.d.P90))
	}
	if p.Check != nil {
		rec("check", "id", p.Check.ID, "requested by "+p.Check.RequestedBy)
		rec("check", "requested", reportStamp(p.Check.RequestedAt), "")
		rec("check", "completed", reportStamp(p.Check.CompletedAt), "")
	} else {
		rec("check", "id", "", "no fleet check has been run")
	}
	for _, r := range p.Rows {
		rec("check_device", r.Hostname, r.Outcome, strings.Join([]string{r.DeviceID, "last proved " + stampOr(r.LastProved, "never"), r.Detail}, "; "))
	}
	cw.Flush()
	return cw.Error()
}

// cut shortens s to n runes for a table cell (the detail is printed in full
// below the table).
func cut(s string, n int) string {
	r := []rune(s)
	if len(r) <= n {
		return s
	}
	return string(r[:n-3]) + "..."
}

// WritePDF renders the pack.
func (p EvidencePack) WritePDF(w io.Writer) error {
	r := newRenderer("Vigil DfE filtering and monitoring evidence pack")
	r.heading("Filtering and monitoring: evidence pack", 15)
	r.para(fmt.Sprintf("Evidence against the DfE filtering and monitoring standards for %s to %s (exclusive end), as at %s.", Day(p.From), Day(p.To), reportStamp(p.Generated)))

	r.section("Roles and responsibilities")
	var rows [][]string
	for _, k := range store.DFERoleKeys {
		h := p.Roles.Holder(k)
		name := h.Name
		if name == "" {
			name = "NOT NAMED"
		}
		rows = append(rows, []string{store.DFERoleLabels[k], cut(name, 30), cut(h.Contact, 30)})
	}
	r.table([]float64{75, 55, 0}, []string{"Role", "Name", "Contact"}, rows)
	if !p.Roles.UpdatedAt.IsZero() {
		r.para(fmt.Sprintf("Register last updated %s by %s.", reportStamp(p.Roles.UpdatedAt), p.Roles.UpdatedBy))
	}

	r.section("Annual review")
	switch p.Review.State {
	case ReviewOK:
		r.para(fmt.Sprintf("Next review due %s.", Day(p.Review.Due)))
	default:
		r.para("REMINDER: " + p.Review.Reminder)
	}
	for i := len(p.Reviews) - 1; i >= 0; i-- {
		rv := p.Reviews[i]
		r.pdf.Ln(1)
		r.pdf.SetFont("Helvetica", "B", 10)
		r.pdf.CellFormat(0, 6, r.tr("Review of "+Day(rv.Date)), "", 1, "L", false, 0, "")
		r.para("Attendees: " + strings.Join(rv.Attendees, ", "))
		r.para("Findings: " + rv.Findings)
		for _, a := range rv.Actions {
			r.para("Action: " + a)
		}
		r.para(fmt.Sprintf("Next review: %s. Recorded by %s on %s.", Day(rv.NextReview), rv.RecordedBy, reportStamp(rv.RecordedAt)))
	}

	r.section(fmt.Sprintf("Decision log: %d", len(p.Decisions)))
	r.para("Every change of the rules distributed to devices, every exclusion with its reason, approver and expiry, every term the school added or removed, and decisions about devices, read from the records each decision wrote.")
	if len(p.Decisions) == 0 {
		r.para("No decision recorded in the period.")
	}
	// One entry per decision, not a table row: the reason and the approver
	// are the evidence, and must not be cut to fit a column.
	for _, d := range p.Decisions {
		if r.pdf.GetY() > 270 {
			r.pdf.AddPage()
		}
		r.pdf.SetFont("Helvetica", "B", 9)
		r.pdf.CellFormat(0, 5, r.tr(reportStamp(d.At)+"  "+d.Kind), "", 1, "L", false, 0, "")
		line := d.What
		if d.By != "" {
			line += ". By " + d.By
		}
		if d.Reason != "" {
			line += ". Reason: " + d.Reason
		}
		if d.Approver != "" {
			line += ". Approved by " + d.Approver
		}
		if !d.Expires.IsZero() {
			line += ". Expires " + Day(d.Expires)
		}
		r.para(line + ".")
	}

	r.section(fmt.Sprintf("Alert handling: %d alerts", p.Alerts.Total))
	bars := make([]ChartBar, 0, len(p.Alerts.ByOutcome))
	for _, c := range p.Alerts.ByOutcome {
		bars = append(bars, ChartBar{Label: c.Label, N: c.N})
	}
	r.barChart("By outcome", bars)
	dur := func(name string, d Durations) []string {
		if d.N == 0 {
			return []string{name, "0", "-", "-"}
		}
		return []string{name, fmt.Sprint(d.N), Human(d.Median), Human(d.P90)}
	}
	r.table([]float64{70, 25, 35, 0}, []string{"From alert to", "Alerts", "Median", "90th percentile"},
		[][]string{dur("first review", p.Alerts.ToFirstReview), dur("conclusion", p.Alerts.ToConclusion)})

	r.section("Check record: monitoring proved end to end")
	if p.Check == nil {
		r.para("No fleet-wide check has been run. Run one from the console (Reports) or with `vigil-collector check request`.")
	} else {
		r.para(fmt.Sprintf("Fleet check %s requested by %s at %s, completed %s: a synthetic selftest asked of every device and followed through its spool, the stream and the collector's store.",
			p.Check.ID, p.Check.RequestedBy, reportStamp(p.Check.RequestedAt), stampOr(p.Check.CompletedAt, "(still running)")))
	}
	bad := p.NotWorking()
	r.para(fmt.Sprintf("%d devices, %d working end to end, %d not. The last selftest received is the newest selftest finding (scheduled or requested) that reached the collector from the device: the last time monitoring proved itself end to end there.", len(p.Rows), len(p.Rows)-len(bad), len(bad)))
	rows = nil
	for _, c := range p.Rows {
		rows = append(rows, []string{cut(c.Hostname, 22), cut(c.Group, 14), cut(c.OutcomeLabel, 44), stampOr(c.LastProved, "never")})
	}
	r.table([]float64{42, 26, 78, 0}, []string{"Device", "Group", "Latest check", "Last selftest received"}, rows)
	if len(bad) > 0 {
		r.pdf.SetFont("Helvetica", "B", 10)
		r.pdf.CellFormat(0, 6, r.tr("Devices where monitoring did not prove itself"), "", 1, "L", false, 0, "")
		for _, c := range bad {
			r.para(fmt.Sprintf("%s (%s): %s. %s", c.Hostname, c.DeviceID, c.OutcomeLabel, c.Detail))
		}
	}
	return r.write(w)
}
