package console

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// auditEnv is a console with the audit service over the same store, and
// two enrolled devices in group "ict".
func auditEnv(t *testing.T) *env {
	t.Helper()
	e := newEnv(t)
	e.srv.audits = &audit.Service{Store: &switchableLog{Store: e.st}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	for _, d := range []store.Device{{DeviceID: "dev-a", Group: "ict", Hostname: "ict-01"}, {DeviceID: "dev-b", Group: "ict", Hostname: "ict-02"}} {
		d.OS, d.LastSeen = "linux", time.Now()
		if err := e.st.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	for _, u := range [][2]string{{"head1", RoleHeadteacher}, {"tech1", RoleTechnician}, {"dsl1", RoleDSL}, {"gov1", RoleGovernor}, {"admin1", RoleAdmin}} {
		e.user(u[0], u[1], false, "")
	}
	return e
}

// switchableLog is the real store whose access-log writes fail with err
// while it is set.
type switchableLog struct {
	*store.Store
	err atomic.Pointer[error]
}

func (l *switchableLog) LogAccess(e store.AccessEntry) error {
	if err := l.err.Load(); err != nil {
		return *err
	}
	return l.Store.LogAccess(e)
}

func actions(e *env, action string) []store.AccessEntry {
	var out []store.AccessEntry
	for _, a := range e.accessLog() {
		if a.Action == action {
			out = append(out, a)
		}
	}
	return out
}

func TestAuditRoles(t *testing.T) {
	e := auditEnv(t)
	head, tech := e.login("head1"), e.login("tech1")
	code, body := tech.do("POST", "/api/v1/audits", map[string]any{"group": "ict", "reason": "termly check"})
	if code != 201 {
		t.Fatalf("technician request: %d %s", code, body)
	}
	var h audit.Header
	json.Unmarshal(body, &h)
	for _, who := range []string{"dsl1", "gov1", "admin1"} {
		c := e.login(who)
		for _, p := range []string{"/api/v1/audits", "/api/v1/audits/" + h.ID, "/api/v1/audits/" + h.ID + "/progress", "/api/v1/audits/" + h.ID + "/report.pdf", "/api/v1/audits/" + h.ID + "/report.csv"} {
			if code, _ := c.do("GET", p, nil); code != 403 {
				t.Errorf("%s GET %s: %d, want 403", who, p, code)
			}
		}
		if code, _ := c.do("POST", "/api/v1/audits", map[string]any{"all": true, "reason": "x"}); code != 403 {
			t.Errorf("%s request: %d, want 403", who, code)
		}
		if code, _ := c.do("POST", "/api/v1/audits/"+h.ID+"/sign", map[string]any{}); code != 403 {
			t.Errorf("%s sign: %d, want 403", who, code)
		}
	}
	if code, body := tech.do("POST", "/api/v1/audits/"+h.ID+"/sign", map[string]any{}); code != 403 {
		t.Errorf("technician sign: %d %s, want 403 (headteacher only)", code, body)
	}
	if code, body := head.do("POST", "/api/v1/audits", map[string]any{"group": "ict", "all": true, "reason": "x"}); code != 400 {
		t.Errorf("two scopes: %d %s, want 400", code, body)
	}
	if code, body := head.do("POST", "/api/v1/audits", map[string]any{"group": "ict"}); code != 400 {
		t.Errorf("no reason: %d %s, want 400", code, body)
	}
	if code, _ := head.do("GET", "/api/v1/audits/nope", nil); code != 404 {
		t.Errorf("unknown audit: %d, want 404", code)
	}
	if got := actions(e, "request-audit"); len(got) != 1 || got[0].Who != "tech1" || got[0].Reason != "termly check" {
		t.Errorf("request access log: %+v", got)
	}
	if got := actions(e, "view-audit"); len(got) != 0 {
		t.Errorf("refused views were logged as views: %+v", got)
	}
}

func TestAuditRecordSignAndExportAreLogged(t *testing.T) {
	e := auditEnv(t)
	head := e.login("head1")
	code, body := head.do("POST", "/api/v1/audits", map[string]any{"group": "ict", "reason": "inventory for governors"})
	if code != 201 {
		t.Fatalf("request: %d %s", code, body)
	}
	var h audit.Header
	json.Unmarshal(body, &h)
	var p audit.Progress
	if head.getJSON("/api/v1/audits/"+h.ID+"/progress", &p); p.Total != 2 || p.Queued != 2 || p.Offline != 2 || p.Done {
		t.Fatalf("progress before answers: %+v", p)
	}
	// dev-a answers (as the audit service records an agent's answer).
	inv, _ := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&vigilv1.Inventory{
		Os:       &vigilv1.OperatingSystem{Name: "debian", Version: "12"},
		Software: []*vigilv1.SoftwareItem{{Name: "firefox-esr", Version: "128.5", Publisher: "Mozilla"}},
	})
	var compact bytes.Buffer
	json.Compact(&compact, inv) // stored compact, as the audit service does
	if _, err := e.st.AppendAuditEntry(h.ID, store.AuditAnswerEntry, "dev-a", time.Now(), compact.Bytes()); err != nil {
		t.Fatal(err)
	}
	var rec audit.Record
	if code := head.getJSON("/api/v1/audits/"+h.ID, &rec); code != 200 || !rec.Verified || rec.Progress.Answered != 1 || rec.Reason != "inventory for governors" {
		t.Fatalf("record: %d %+v", code, rec)
	}
	code, body = head.do("POST", "/api/v1/audits/"+h.ID+"/sign", map[string]any{"note": "seen", "by": "someone else"})
	if code != 200 || !strings.Contains(string(body), "head1") || strings.Contains(string(body), "someone else") {
		t.Fatalf("sign: %d %s (the signer is the signed-in user)", code, body)
	}
	head.getJSON("/api/v1/audits/"+h.ID, &rec)
	if len(rec.Signoffs) != 1 || !strings.Contains(rec.Signoffs[0].By, "head1") || rec.Signoffs[0].Note != "seen" {
		t.Fatalf("sign-off not in the record: %+v", rec.Signoffs)
	}
	resp := head.req("GET", "/api/v1/audits/"+h.ID+"/report.pdf", nil, nil)
	pdf, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(pdf), "%PDF") || resp.Header.Get("Content-Type") != "application/pdf" {
		t.Fatalf("pdf: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	code, csvBody := head.do("GET", "/api/v1/audits/"+h.ID+"/report.csv", nil)
	if code != 200 || !strings.Contains(string(csvBody), "firefox-esr") || !strings.Contains(string(csvBody), "ict-02") {
		t.Fatalf("csv: %d %s", code, csvBody)
	}
	if got := actions(e, "view-audit"); len(got) != 2 || got[0].Who != "head1" || got[0].Detail != h.ID {
		t.Errorf("views not logged: %+v", got)
	}
	if got := actions(e, "export-audit"); len(got) != 2 || got[0].Detail != h.ID+" pdf" || got[1].Detail != h.ID+" csv" {
		t.Errorf("exports not logged: %+v", got)
	}
	if got := actions(e, "sign-audit"); len(got) != 1 || got[0].Who != "head1" {
		t.Errorf("sign-off not logged: %+v", got)
	}
	// A view that cannot be logged is not shown.
	short := io.ErrShortWrite
	e.srv.audits.Store.(*switchableLog).err.Store(&short)
	if code, body := head.do("GET", "/api/v1/audits/"+h.ID, nil); code != 500 || strings.Contains(string(body), "firefox") {
		t.Errorf("unlogged view: %d %s", code, body)
	}
	if code, _ := head.do("GET", "/api/v1/audits/"+h.ID+"/report.pdf", nil); code != 500 {
		t.Errorf("unlogged export: %d", code)
	}
}
