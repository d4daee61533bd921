package console

import (
	"fmt"
	"net/http"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/triage"
)

// TrendWeeks is how far back the trends go.
const TrendWeeks = 13

type weekJSON struct {
	Week   string         `json:"week"`  // ISO week, e.g. 2026-W47
	Start  string         `json:"start"` // its Monday, YYYY-MM-DD
	Counts map[string]int `json:"counts"`
	Total  int            `json:"total"`
}

// trends: alert counts by category and ISO week for the last 13 weeks, and
// concluded reviews by outcome. No names, no devices: governors see this.
func (s *Server) trends(w http.ResponseWriter, r *http.Request, v *viewer) {
	now := s.now().UTC()
	// Monday 00:00 UTC of the current ISO week, then 12 weeks before it.
	day := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
	monday := day.AddDate(0, 0, -((int(day.Weekday()) + 6) % 7))
	from := monday.AddDate(0, 0, -7*(TrendWeeks-1))
	weeks := make([]weekJSON, TrendWeeks)
	index := map[string]int{}
	for i := range weeks {
		start := from.AddDate(0, 0, 7*i)
		y, wk := start.ISOWeek()
		weeks[i] = weekJSON{Week: fmt.Sprintf("%d-W%02d", y, wk), Start: start.Format("2006-01-02"), Counts: map[string]int{}}
		index[weeks[i].Week] = i
	}
	categories := map[string]int{}
	status := map[string]int{}
	for _, st := range triage.Statuses {
		status[string(st)] = 0
	}
	_, err := s.st.ListAlerts(r.Context(), store.AlertScan{From: from}, func(a *store.Alert) bool {
		y, wk := a.Finding.GetObservedAt().AsTime().UTC().ISOWeek()
		if i, ok := index[fmt.Sprintf("%d-W%02d", y, wk)]; ok {
			weeks[i].Counts[a.Finding.Category]++
			weeks[i].Total++
			categories[a.Finding.Category]++
			status[string(a.State.Status)]++
		}
		return true
	})
	if err != nil {
		s.internal(w, "trends", err)
		return
	}
	outcomes := map[string]int{}
	for _, c := range Conclusions {
		outcomes[c] = 0
	}
	err = s.st.AlertStates(func(_ string, _ uint64, st store.AlertState) error {
		if st.Status == triage.Concluded && !st.ConcludedAt.Before(from) {
			outcomes[st.Conclusion]++
		}
		return nil
	})
	if err != nil {
		s.internal(w, "trends", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{
		"from": from.Format("2006-01-02"), "weeks": weeks, "categories": categories, "status": status, "outcomes": outcomes,
	})
}
