package console

import (
	"fmt"
	"net/http"
	"slices"
	"sort"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/triage"
)

// TrendWeeks is how far back the trends go.
const TrendWeeks = 13

type weekJSON struct {
	Week   string                  `json:"week"`  // ISO week, e.g. 2026-W47
	Start  string                  `json:"start"` // its Monday, YYYY-MM-DD
	Counts map[string]reports.Cell `json:"counts"`
	Total  reports.Cell            `json:"total"`
}

// suppressFor applies the governors' report's small-count rule
// (reports.Suppress) to counts shown to a governor, so no child can be
// identified from the trends either; the other readers may see the alerts
// themselves, and get the counts as they are.
func suppressFor(u *store.User, grids ...*reports.Grid) {
	if u.Role == RoleGovernor {
		reports.Suppress(grids...)
	}
}

// trends: alert counts by category and ISO week for the last 13 weeks, and
// concluded reviews by outcome. No names, no devices: governors see this,
// with small counts suppressed as in their termly report.
func (s *Server) trends(w http.ResponseWriter, r *http.Request, v *viewer) {
	now := s.now().UTC()
	// Monday 00:00 UTC of the current ISO week, then 12 weeks before it.
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	monday := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	from := monday.AddDate(0, 0, -7*(TrendWeeks-1))
	weeks := make([]weekJSON, TrendWeeks)
	weekKeys := make([]string, TrendWeeks)
	index := map[string]int{}
	for i := range weeks {
		start := from.AddDate(0, 0, 7*i)
		y, wk := start.ISOWeek()
		weeks[i] = weekJSON{Week: fmt.Sprintf("%d-W%02d", y, wk), Start: start.Format("2006-01-02"), Counts: map[string]reports.Cell{}}
		weekKeys[i] = weeks[i].Week
		index[weeks[i].Week] = i
	}
	byCat, byStatus := map[string]map[string]int{}, map[string]map[string]int{}
	cats, statuses := map[string]bool{}, map[string]bool{}
	for _, st := range triage.Statuses {
		statuses[string(st)] = true
	}
	// Aggregates of the viewer's school only (collector/tenancy).
	sees := s.tenancyPolicy().SeesDevice
	_, err := s.st.ListAlerts(r.Context(), store.AlertScan{From: from}, func(a *store.Alert) bool {
		if !sees(&v.User, a.Finding.GetDeviceId()) {
			return true
		}
		y, wk := a.Finding.GetObservedAt().AsTime().UTC().ISOWeek()
		k := fmt.Sprintf("%d-W%02d", y, wk)
		if _, ok := index[k]; ok {
			if byCat[k] == nil {
				byCat[k], byStatus[k] = map[string]int{}, map[string]int{}
			}
			byCat[k][a.Finding.Category]++
			byStatus[k][string(a.State.Status)]++
			cats[a.Finding.Category], statuses[string(a.State.Status)] = true, true
		}
		return true
	})
	if err != nil {
		s.internal(w, "trends", err)
		return
	}
	outcomes := map[string]int{}
	err = s.st.AlertStates(func(dev string, _ uint64, st store.AlertState) error {
		if !sees(&v.User, dev) {
			return nil
		}
		if st.Status == triage.Concluded && !st.ConcludedAt.Before(from) {
			outcomes[st.Conclusion]++
		}
		return nil
	})
	if err != nil {
		s.internal(w, "trends", err)
		return
	}
	keys := func(m map[string]bool) []string {
		out := make([]string, 0, len(m))
		for k := range m {
			out = append(out, k)
		}
		sort.Strings(out)
		return out
	}
	catKeys, statusKeys := keys(cats), keys(statuses)
	outKeys := append([]string(nil), Conclusions...)
	for c := range outcomes {
		if !slices.Contains(outKeys, c) {
			outKeys = append(outKeys, c)
		}
	}
	// Categories and statuses split the same alerts: their grids share row
	// totals and are suppressed together, like the governors' report's.
	gCat := reports.NewGrid(weekKeys, weekKeys, catKeys, catKeys, byCat)
	gStatus := reports.NewGrid(weekKeys, weekKeys, statusKeys, statusKeys, byStatus)
	gOut := reports.NewGrid([]string{"all"}, []string{"all"}, outKeys, outKeys, map[string]map[string]int{"all": outcomes})
	suppressFor(&v.User, gCat, gStatus)
	suppressFor(&v.User, gOut)

	for i := range weeks {
		for j, c := range catKeys {
			if cell := gCat.Cells[i][j]; cell.N > 0 {
				weeks[i].Counts[c] = cell
			}
		}
		weeks[i].Total = gCat.RowTotal[i]
	}
	categories, status, outs := map[string]reports.Cell{}, map[string]reports.Cell{}, map[string]reports.Cell{}
	for j, c := range catKeys {
		categories[c] = gCat.ColTotal[j]
	}
	for j, st := range statusKeys {
		status[st] = gStatus.ColTotal[j]
	}
	for j, o := range outKeys {
		outs[o] = gOut.Cells[0][j]
	}
	resp := map[string]any{"from": from.Format("2006-01-02"), "weeks": weeks, "categories": categories, "status": status, "outcomes": outs}
	if v.Role == RoleGovernor {
		resp["threshold"] = reports.Threshold
	}
	writeJSON(w, http.StatusOK, resp)
}
