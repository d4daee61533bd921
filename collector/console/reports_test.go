package console

import (
	"encoding/json"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// The console serves each report in its three forms to the roles it is
// for; the headteacher's monitoring report leaves out the alert about the
// headteacher; bad windows are refused with a clear error.
func TestReportDownloads(t *testing.T) {
	e := newEnv(t)
	now := time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)
	e.setNow(now)
	e.user("dsl", RoleDSL, false, "")
	e.user("head", RoleHeadteacher, false, "")
	e.user("gov", RoleGovernor, false, "")
	e.people(store.Person{Username: "pupil1", DisplayName: "Pupil One", Role: "pupil"},
		store.Person{Username: "headperson", DisplayName: "The Head", Role: "headteacher"})
	for i := range 6 {
		id := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_HIGH, "secretterm", now.Add(-time.Duration(i+1)*time.Hour))
		e.conclude(id, "dsl", "head", "no_concern")
	}
	e.alert("headperson", "gambling", vigilv1.Severity_SEVERITY_HIGH, "otherterm", now.Add(-30*time.Minute))
	if err := e.st.PutDevice(store.Device{DeviceID: testDevice, Group: "pupils", Hostname: "lap-01", OS: "linux", LastSeen: now.Add(-48 * time.Hour)}); err != nil {
		t.Fatal(err)
	}

	head := e.login("head")
	var m struct {
		Total        int
		NotReporting []struct{ Hostname string }
	}
	if code := head.getJSON("/api/v1/reports/monitoring.json", &m); code != 200 {
		t.Fatalf("monitoring.json: %d", code)
	}
	if m.Total != 6 || len(m.NotReporting) != 1 || m.NotReporting[0].Hostname != "lap-01" {
		t.Errorf("headteacher's monitoring report: %+v (want 6 alerts, not the one about the headteacher; lap-01 not reporting)", m)
	}
	resp := head.req("GET", "/api/v1/reports/monitoring.pdf", nil, nil)
	pdf, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Content-Type") != "application/pdf" || !strings.Contains(resp.Header.Get("Content-Disposition"), "monitoring-2026-11-26-to-2026-12-02.pdf") {
		t.Fatalf("monitoring.pdf: %d %v", resp.StatusCode, resp.Header)
	}
	text := pdfToText(t, pdf)
	if !strings.Contains(text, "Alerts: 6") || !strings.Contains(text, "lap-01") || strings.Contains(text, "gambling") {
		t.Errorf("headteacher's monitoring PDF:\n%s", text)
	}
	code, body := head.do("GET", "/api/v1/reports/monitoring.csv?from=2026-13-01", nil)
	if code != 400 || !strings.Contains(string(body), "want a date YYYY-MM-DD") {
		t.Errorf("bad from: %d %s", code, body)
	}
	code, body = head.do("GET", "/api/v1/reports/monitoring.csv?from=2026-12-02&to=2026-11-01", nil)
	if code != 400 || !strings.Contains(string(body), "is not before") {
		t.Errorf("reversed window: %d %s", code, body)
	}

	// One gambling alert: "fewer than 5"; then the 6 self-harm alerts are
	// withheld too, or the total 7 minus 6 would give it.
	gov := e.login("gov")
	resp = gov.req("GET", "/api/v1/reports/governors.csv", nil, nil)
	csv, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(csv), "by_category,term,self_harm,withheld") || !strings.Contains(string(csv), "by_category,term,gambling,fewer than 5") {
		t.Errorf("governors.csv: %d\n%s", resp.StatusCode, csv)
	}
	var g map[string]any
	if code := gov.getJSON("/api/v1/reports/governors.json", &g); code != 200 {
		t.Fatalf("governors.json: %d", code)
	}
	raw, _ := json.Marshal(g)
	resp = gov.req("GET", "/api/v1/reports/governors.pdf", nil, nil)
	pdf, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	text = pdfToText(t, pdf)
	for _, out := range []string{string(csv), string(raw), text} {
		for _, id := range []string{"pupil1", "Pupil One", "headperson", "The Head", "secretterm", "otherterm", "lap-01", testDevice} {
			if strings.Contains(out, id) {
				t.Errorf("governors' report contains %q:\n%s", id, out)
			}
		}
	}
}

func pdfToText(t *testing.T, pdf []byte) string {
	t.Helper()
	p := filepath.Join(t.TempDir(), "r.pdf")
	if err := os.WriteFile(p, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-layout", p, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v: %s", err, out)
	}
	return string(out)
}
