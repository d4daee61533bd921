package console

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Who may have which report (seed 002 §12; issue 11). The monitoring
// report names devices, terms and exclusions: the headteacher and the
// DSL. The governors' report is aggregates only, for the governors (the
// chair included); it is built from every alert of the term, so it is not
// offered to the headteacher, who could compare it with their own
// monitoring report (which leaves out alerts about them) and learn of one.
var (
	monitoringReaders = roles(RoleHeadteacher, RoleDSL)
	governorsReaders  = roles(RoleGovernor)
)

// MonitoringDays is the default window of the monitoring report: a week.
const MonitoringDays = 7

// reportRoutes registers the report downloads (called by Handler).
func (s *Server) reportRoutes(mux *routeMux) {
	for _, f := range []string{"json", "csv", "pdf"} {
		mux.Handle("GET /api/v1/reports/monitoring."+f, s.api(monitoringReaders, s.monitoringReport(f)))
		mux.Handle("GET /api/v1/reports/governors."+f, s.api(governorsReaders, s.governorsReport(f)))
	}
}

// reportWindow reads ?from=YYYY-MM-DD&to=YYYY-MM-DD (to exclusive), with
// defaults for whichever is missing.
func reportWindow(r *http.Request, defFrom, defTo time.Time) (from, to time.Time, err error) {
	from, to = defFrom, defTo
	for _, p := range []struct {
		name string
		dst  *time.Time
	}{{"from", &from}, {"to", &to}} {
		if v := r.URL.Query().Get(p.name); v != "" {
			t, err := time.Parse("2006-01-02", v)
			if err != nil {
				return from, to, fmt.Errorf("%s=%q: want a date YYYY-MM-DD", p.name, v)
			}
			*p.dst = t
		}
	}
	if !from.Before(to) {
		return from, to, fmt.Errorf("from %s is not before to %s", reports.Day(from), reports.Day(to))
	}
	if to.Sub(from) > 400*24*time.Hour {
		return from, to, fmt.Errorf("the window is longer than 400 days")
	}
	return from, to, nil
}

// judgeDevice is the fleet list's judgement of a device (devices).
func (s *Server) judgeDevice(now time.Time) reports.Judge {
	return func(d store.Device) (reports.DeviceStatus, error) {
		j := s.deviceJSON(d, now)
		latest, err := s.st.LatestFindings(d.DeviceID, postureChecks, 5000)
		if err != nil {
			return reports.DeviceStatus{}, err
		}
		ds := reports.DeviceStatus{Device: d, Connected: j.Connected, Compliance: map[string]string{}}
		for _, c := range postureChecks {
			ds.Compliance[c] = compliance(latest[c], now)
		}
		return ds, nil
	}
}

// MonitoringReport builds the monitoring report over [from, to) as u may
// see it: only the alerts u may view are counted.
func (s *Server) MonitoringReport(r *http.Request, u *store.User, from, to time.Time) (reports.Monitoring, error) {
	now := s.now().UTC()
	snap, err := reports.Load(r.Context(), s.st, now, from, s.judgeDevice(now))
	if err != nil {
		return reports.Monitoring{}, err
	}
	s.schoolSnapshot(u, &snap)
	kept := snap.Alerts[:0]
	for i := range snap.Alerts {
		if s.visible(u, &snap.Alerts[i]) {
			kept = append(kept, snap.Alerts[i])
		}
	}
	snap.Alerts = kept
	return reports.BuildMonitoring(snap, from, to), nil
}

func (s *Server) monitoringReport(format string) func(http.ResponseWriter, *http.Request, *viewer) {
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		now := s.now().UTC()
		today := time.Date(now.Year(), now.Month(), now.Day(), 0, 0, 0, 0, time.UTC)
		from, to, err := reportWindow(r, today.AddDate(0, 0, 1-MonitoringDays), today.AddDate(0, 0, 1))
		if err != nil {
			jsonError(w, http.StatusBadRequest, "monitoring report: %v", err)
			return
		}
		m, err := s.MonitoringReport(r, &v.User, from, to)
		if err != nil {
			s.internal(w, "monitoring report", err)
			return
		}
		s.sendReport(w, format, fmt.Sprintf("monitoring-%s-to-%s", reports.Day(from), reports.Day(to.AddDate(0, 0, -1))), m, m.WriteCSV, m.WritePDF)
	}
}

func (s *Server) governorsReport(format string) func(http.ResponseWriter, *http.Request, *viewer) {
	return func(w http.ResponseWriter, r *http.Request, v *viewer) {
		now := s.now().UTC()
		term := reports.TermOf(now)
		from, to, err := reportWindow(r, term.From, term.To)
		if err != nil {
			jsonError(w, http.StatusBadRequest, "governors' report: %v", err)
			return
		}
		snap, err := reports.Load(r.Context(), s.st, now, from, func(d store.Device) (reports.DeviceStatus, error) {
			return reports.DeviceStatus{Device: d}, nil // the report shows no device
		})
		if err != nil {
			s.internal(w, "governors' report", err)
			return
		}
		s.schoolSnapshot(&v.User, &snap)
		g := reports.BuildGovernors(snap, from, to)
		s.sendReport(w, format, fmt.Sprintf("governors-%s-to-%s", reports.Day(from), reports.Day(to.AddDate(0, 0, -1))), governorsJSON(g), g.WriteCSV, g.WritePDF)
	}
}

// sendReport renders into memory first, so a failure is a clean 500 and
// not half a file.
func (s *Server) sendReport(w http.ResponseWriter, format, name string, data any, csvFn, pdfFn func(io.Writer) error) {
	if format == "json" {
		writeJSON(w, http.StatusOK, data)
		return
	}
	var b bytes.Buffer
	fn, ctype := csvFn, "text/csv; charset=utf-8"
	if format == "pdf" {
		fn, ctype = pdfFn, "application/pdf"
	}
	if err := fn(&b); err != nil {
		s.internal(w, "render report", err)
		return
	}
	w.Header().Set("Content-Type", ctype)
	w.Header().Set("Content-Disposition", fmt.Sprintf("attachment; filename=%q", name+"."+format))
	w.Header().Set("Cache-Control", "no-store")
	w.Write(b.Bytes())
}

// governorsJSON is the governors' report as the API gives it: every count
// as printed (a suppressed one is its words, never its number).
func governorsJSON(g reports.Governors) map[string]any {
	grid := func(gr *reports.Grid) map[string]any {
		rows := make([]map[string]any, len(gr.Rows))
		for i := range gr.Rows {
			cells := map[string]string{}
			for j, c := range gr.Cols {
				cells[c] = gr.Cells[i][j].String()
			}
			rows[i] = map[string]any{"month": gr.Rows[i], "counts": cells, "total": gr.RowTotal[i].String()}
		}
		totals := map[string]string{}
		for j, c := range gr.Cols {
			totals[c] = gr.ColTotal[j].String()
		}
		return map[string]any{"columns": gr.Cols, "labels": gr.ColLabels, "months": rows, "term": totals, "total": gr.Total.String()}
	}
	return map[string]any{"from": reports.Day(g.From), "to": reports.Day(g.To), "generated": g.Generated.UTC().Format(time.RFC3339),
		"by_category": grid(g.ByCategory), "by_outcome": grid(g.ByOutcome), "open": g.Open.String(), "threshold": reports.Threshold}
}
