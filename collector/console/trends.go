package console

import (
	"embed"
	"fmt"
	"io/fs"
	"net/http"
	"path"
	"strings"
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

// The web UI, embedded (collector/console/web, written with the UI).
//
//go:embed web
var webFS embed.FS

// staticHandler serves the UI; paths that are not files get index.html so
// the UI's own routes work on reload.
func staticHandler() http.Handler {
	sub, _ := fs.Sub(webFS, "web")
	files := http.FileServerFS(sub)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Allow", "GET, HEAD")
			http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
			return
		}
		p := strings.TrimPrefix(path.Clean(r.URL.Path), "/")
		if p != "" && p != "index.html" {
			if st, err := fs.Stat(sub, p); err == nil && !st.IsDir() {
				files.ServeHTTP(w, r)
				return
			}
		}
		index, err := fs.ReadFile(sub, "index.html")
		if err != nil {
			w.Header().Set("Content-Type", "text/plain; charset=utf-8")
			w.WriteHeader(http.StatusNotFound)
			w.Write([]byte("Vigil console: the web UI is not built into this binary; the API is under /api/v1/ (docs/api.md).\n"))
			return
		}
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Header().Set("Cache-Control", "no-cache")
		w.Write(index)
	})
}
