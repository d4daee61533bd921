package console

import (
	"net/http"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/findings"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Device page limits: the timeline shows the newest TimelineLen findings
// the viewer may see, looking back over at most TimelineScan.
const (
	TimelineLen  = 200
	TimelineScan = 5000
)

// TimelineEntry is one finding on a device page.
type TimelineEntry struct {
	Time     string `json:"time"`
	Check    string `json:"check"`
	RuleID   string `json:"rule_id"`
	Status   string `json:"status"`
	Severity string `json:"severity"`
	Message  string `json:"message"`
	AlertID  string `json:"alert_id,omitempty"` // screen findings: the alert to open
}

// DeviceDetailJSON is GET /api/v1/devices/{id}.
type DeviceDetailJSON struct {
	DeviceJSON
	Arch     string          `json:"arch"`
	Timeline []TimelineEntry `json:"timeline"`
}

// deviceDetail: the device record and its timeline, newest first. Screen
// (safeguarding) findings are alerts: a technician never gets them; the DSL
// and the headteacher get those they could open in the alert queue (routed
// or escalated to them, not about themselves), with the alert's id.
func (s *Server) deviceDetail(w http.ResponseWriter, r *http.Request, v *viewer) {
	d, ok := s.st.GetDevice(r.PathValue("id"))
	if !ok || !s.tenancyPolicy().SeesDevice(&v.User, d.DeviceID) {
		jsonError(w, http.StatusNotFound, "no such device")
		return
	}
	now := s.now()
	out := DeviceDetailJSON{DeviceJSON: s.deviceJSON(d, now), Arch: d.Arch, Timeline: []TimelineEntry{}}
	latest, err := s.st.LatestFindings(d.DeviceID, postureChecks, TimelineScan)
	if err != nil {
		s.internal(w, "read device findings", err)
		return
	}
	for _, c := range postureChecks {
		out.Compliance[c] = compliance(latest[c], now)
	}
	var readErr error
	err = s.st.RecentFindings(d.DeviceID, TimelineScan, func(f *vigilv1.Finding) bool {
		e := TimelineEntry{Time: ts(f.GetObservedAt().AsTime()), Check: f.Check, RuleID: f.RuleId, Status: f.Status,
			Severity: findings.SeverityName(f.Severity), Message: f.Message}
		if store.IsAlert(f) {
			if v.Role == RoleTechnician {
				return true
			}
			a, err := s.st.GetAlert(f.DeviceId, f.Seq)
			if err != nil {
				readErr = err
				return false
			}
			if !s.visible(&v.User, a) {
				return true
			}
			e.AlertID = AlertID(f.DeviceId, f.Seq)
		}
		out.Timeline = append(out.Timeline, e)
		return len(out.Timeline) < TimelineLen
	})
	if err == nil {
		err = readErr
	}
	if err != nil {
		s.internal(w, "read device findings", err)
		return
	}
	writeJSON(w, http.StatusOK, out)
}
