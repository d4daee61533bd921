package console

import (
	"bytes"
	"errors"
	"fmt"
	"io"
	"net/http"
	"sort"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/triage"

	"github.com/vigil-safeguarding/vigil/collector/records"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/findings"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// diskFull answers 503 for a write the store refused because its disk is
// full: the console is read-only until space is freed.
func (s *Server) diskFull(w http.ResponseWriter, what string, err error) bool {
	if !errors.Is(err, store.ErrDiskFull) {
		return false
	}
	s.log.Warn("console: "+what, "err", err)
	jsonError(w, http.StatusServiceUnavailable, "%s refused: the collector's disk is full, so the console is read-only until space is freed", what)
	return true
}

func (s *Server) accessLog(w http.ResponseWriter, r *http.Request, v *viewer) {
	entries, err := s.st.AccessLog()
	if err != nil {
		s.internal(w, "read access log", err)
		return
	}
	sees, err := s.tenancyPolicy().ReadsAccessLog(&v.User)
	if err != nil {
		s.internal(w, "read schools", err)
		return
	}
	visible := make([]store.AccessEntry, 0, len(entries))
	for _, e := range entries {
		if sees(e) {
			visible = append(visible, e)
		}
	}
	entries = visible
	// Newest first.
	sort.SliceStable(entries, func(i, j int) bool { return entries[i].Time.After(entries[j].Time) })
	writeJSON(w, http.StatusOK, entries)
}

// ConclusionText is the conclusion as the form words it.
func ConclusionText(st store.AlertState) string { return triage.ConclusionText(st) }

// pdfOptions: tests leave the PDF uncompressed.
var pdfOptions records.Options

func (s *Server) formPDF(w http.ResponseWriter, r *http.Request, v *viewer) {
	a := s.loadVisible(w, r.PathValue("id"), v)
	if a == nil {
		return
	}
	if a.State.Status != "concluded" {
		jsonError(w, http.StatusConflict, "the review form is exported once the alert is concluded")
		return
	}
	var buf bytes.Buffer
	if err := s.renderForm(&buf, a); err != nil {
		s.internal(w, "render review form", err)
		return
	}
	if !s.logAccess(w, v, "export-pdf", a, "", "") {
		return
	}
	w.Header().Set("Content-Type", "application/pdf")
	w.Header().Set("Content-Disposition", fmt.Sprintf(`attachment; filename="vigil-review-%s.pdf"`, AlertID(a.Finding.DeviceId, a.Finding.Seq)))
	w.Write(buf.Bytes())
}

func (s *Server) userLabel(username string) string {
	if username == "" {
		return ""
	}
	u, err := s.st.GetUser(username)
	if err != nil {
		return username
	}
	return fmt.Sprintf("%s (%s, %s)", u.DisplayName, u.Username, roleLabel(u))
}

func roleLabel(u store.User) string {
	switch u.Role {
	case RoleDSL:
		return "Designated Safeguarding Lead"
	case RoleHeadteacher:
		return "Headteacher"
	case RoleGovernor:
		if u.Chair {
			return "Chair of Governors"
		}
		return "Governor"
	}
	return u.Role
}

func fmtTime(t time.Time) string {
	if t.IsZero() {
		return ""
	}
	return t.UTC().Format("2006-01-02 15:04 MST")
}

// renderForm writes the review form of seed 002 Appendix 5 as a PDF
// (collector/records renders; this decides what it says).
func (s *Server) renderForm(out io.Writer, a *store.Alert) error {
	j := s.alertJSON(a)
	st := a.State
	dev, _ := s.st.GetDevice(a.Finding.DeviceId)
	person := j.Person
	if j.PersonName != "" {
		person = j.PersonName + " (" + j.Person + ", " + j.PersonRole + ")"
	}
	f := records.ReviewForm{
		AlertID:        j.ID,
		Individual:     strings.TrimSpace(person + "  group: " + j.Group),
		Date:           fmtTime(a.Finding.GetObservedAt().AsTime()),
		Reason:         st.Reason,
		FirstReviewer:  s.userLabel(st.FirstReviewer),
		FirstSigned:    fmtTime(st.FirstSignedAt),
		SecondReviewer: s.userLabel(st.SecondReviewer),
		SecondSigned:   fmtTime(st.SecondSignedAt),
		MakeModel:      strings.TrimSpace(fmt.Sprintf("%s (%s %s)", dev.Hostname, dev.OS, dev.Arch)),
		DeviceID:       j.DeviceID,
		IPAddress:      "not recorded by Vigil",
		Category:       j.Category + " / " + findings.SeverityName(a.Finding.Severity),
		Term:           j.Term,
		Context:        j.Context,
		Window:         j.Title + "  (" + j.Process + ")",
		Concluded:      fmtTime(st.ConcludedAt),
	}
	if j.Illegal {
		f.Illegal = IllegalGuidance
	}
	for _, c := range Conclusions {
		text := ConclusionLabels[c]
		if c == "other" && st.Conclusion == "other" {
			text += ": " + st.ConclusionOther
		}
		f.Conclusions = append(f.Conclusions, records.Choice{Label: text, Chosen: c == st.Conclusion})
	}
	for _, n := range st.Notes {
		f.Notes = append(f.Notes, records.Row{Label: fmtTime(n.Time) + " " + n.By, Text: n.Text})
	}
	for _, h := range st.History {
		f.History = append(f.History, fmt.Sprintf("%s  %s  %s  %s", fmtTime(h.Time), h.By, h.Action, h.Detail))
	}
	return records.ReviewFormPDF(out, f, pdfOptions)
}

func (s *Server) incidentsCSV(w http.ResponseWriter, r *http.Request, v *viewer) {
	type row struct {
		a  *store.Alert
		at time.Time
	}
	// Concluded reviews only, unless the DSL asks for open ones too
	// (include=open): the export used to leave them out without saying so.
	withOpen := r.URL.Query().Get("include") == "open"
	var rows []row
	var err error
	if withOpen {
		// Every alert: a new one has no review state to walk.
		_, err = s.st.ListAlerts(r.Context(), store.AlertScan{}, func(a *store.Alert) bool {
			if s.visible(&v.User, a) {
				rows = append(rows, row{a, a.State.ConcludedAt})
			}
			return r.Context().Err() == nil
		})
		if err == nil {
			err = r.Context().Err()
		}
	} else {
		err = s.st.AlertStates(func(dev string, seq uint64, st store.AlertState) error {
			if st.Status != triage.Concluded {
				return nil
			}
			a, err := s.st.GetAlert(dev, seq)
			if errors.Is(err, store.ErrNotFound) {
				return nil
			}
			if err != nil {
				return err
			}
			if s.visible(&v.User, a) {
				rows = append(rows, row{a, st.ConcludedAt})
			}
			return nil
		})
	}
	if err != nil {
		s.internal(w, "export incidents", err)
		return
	}
	if !s.logAccess(w, v, "export-incidents", nil, "", "") {
		return
	}
	// Concluded ones by conclusion, oldest first; then open ones by when
	// they were observed.
	sort.SliceStable(rows, func(i, j int) bool {
		ci, cj := !rows[i].at.IsZero(), !rows[j].at.IsZero()
		if ci != cj {
			return ci
		}
		if ci {
			return rows[i].at.Before(rows[j].at)
		}
		return rows[i].a.Finding.GetObservedAt().AsTime().Before(rows[j].a.Finding.GetObservedAt().AsTime())
	})
	w.Header().Set("Content-Type", "text/csv; charset=utf-8")
	w.Header().Set("Content-Disposition", `attachment; filename="vigil-incidents.csv"`)
	out := make([][]string, 0, len(rows))
	for _, rw := range rows {
		j := s.alertJSON(rw.a)
		st := rw.a.State
		conclusion, concluded := ConclusionText(st), ts(st.ConcludedAt)
		switch st.Status {
		case triage.Concluded:
		case triage.FalsePositive:
			conclusion, concluded = "false positive (review ended, not concluded)", ""
		default:
			conclusion, concluded = "not concluded: "+strings.ReplaceAll(string(st.Status), "_", " "), ""
		}
		out = append(out, []string{j.ID, j.Time, j.Person, j.Category, j.Severity, j.Term, st.Reason, s.userLabel(st.FirstReviewer), s.userLabel(st.SecondReviewer), conclusion, concluded})
	}
	if err := records.IncidentsCSV(w, out); err != nil {
		s.log.Warn("console: write incident log", "err", err)
	}
}

// DeviceJSON is a device in the fleet list.
type DeviceJSON struct {
	DeviceID     string            `json:"device_id"`
	Group        string            `json:"group"`
	Hostname     string            `json:"hostname"`
	OS           string            `json:"os"`
	LastSeen     string            `json:"last_seen"`
	AgentVersion string            `json:"agent_version"`
	RulesHash    string            `json:"rules_hash"`
	Connected    bool              `json:"connected"`
	Silent       bool              `json:"silent"`
	Revoked      bool              `json:"revoked"`
	Compliance   map[string]string `json:"compliance"`
}

// SilentAfter: a device not seen for this long is highlighted.
const SilentAfter = 24 * time.Hour

var postureChecks = []string{"antivirus", "bluetooth", "executables"}

func (s *Server) devices(w http.ResponseWriter, r *http.Request, v *viewer) {
	now := s.now()
	devs := s.st.Devices()
	out := make([]DeviceJSON, 0, len(devs))
	for _, d := range devs {
		if !s.tenancyPolicy().SeesDevice(&v.User, d.DeviceID) {
			continue
		}
		j := s.deviceJSON(d, now)
		latest, err := s.st.LatestFindings(d.DeviceID, postureChecks, 5000)
		if err != nil {
			s.internal(w, "read device findings", err)
			return
		}
		for _, c := range postureChecks {
			j.Compliance[c] = compliance(latest[c], now)
		}
		out = append(out, j)
	}
	writeJSON(w, http.StatusOK, out)
}

// deviceJSON is a device's record without its compliance (filled by the caller).
func (s *Server) deviceJSON(d store.Device, now time.Time) DeviceJSON {
	connected := s.conn != nil && s.conn(d.DeviceID)
	return DeviceJSON{DeviceID: d.DeviceID, Group: d.Group, Hostname: d.Hostname, OS: d.OS, LastSeen: ts(d.LastSeen),
		AgentVersion: d.AgentVersion, RulesHash: d.RulesHash, Connected: connected, Revoked: d.Revoked,
		Silent: !connected && now.Sub(d.LastSeen) > SilentAfter, Compliance: map[string]string{}}
}

// compliance: a posture finding's pass/fail; an event finding (say, an
// unapproved executable seen) counts as fail for 7 days, then unknown.
func compliance(f *vigilv1.Finding, now time.Time) string {
	if f == nil {
		return "unknown"
	}
	switch st := f.GetStatus(); st {
	case "pass", "fail":
		return st
	}
	if now.Sub(f.GetObservedAt().AsTime()) < 7*24*time.Hour {
		return "fail"
	}
	return "unknown"
}
