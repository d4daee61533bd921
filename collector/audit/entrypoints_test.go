package audit_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/bcrypt"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/console"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// failingLog is the real store whose access-log writes fail while fail is
// set (a full disk, say).
type failingLog struct {
	*store.Store
	fail atomic.Bool
}

func (f *failingLog) LogAccess(e store.AccessEntry) error {
	if f.fail.Load() {
		return errors.New("simulated access-log write failure")
	}
	return f.Store.LogAccess(e)
}

// TestEveryAuditReadIsLoggedOnce: over one store and one audit.Service, as
// the daemon wires them, each way to read an audit (the console's record,
// PDF and CSV; the admin socket's record and chain export) writes exactly
// one access-log entry naming the reader, the action and the audit; and
// when the entry cannot be written, none of them answers with the audit.
func TestEveryAuditReadIsLoggedOnce(t *testing.T) {
	dir, err := os.MkdirTemp("", "vigil-au") // short: the admin socket's path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(filepath.Join(dir, "db"), store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	logged := &failingLog{Store: st}
	svc := &audit.Service{Store: logged, Logger: quiet}
	for _, d := range []store.Device{{DeviceID: "dev-a", Group: "ict", Hostname: "ict-01"}, {DeviceID: "dev-b", Group: "ict", Hostname: "ict-02"}} {
		d.OS, d.LastSeen = "linux", time.Now()
		if err := st.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	if err := st.CreateUser(store.User{Username: "head1", DisplayName: "Head", Role: console.RoleHeadteacher, PasswordHash: hash, Created: time.Now()}); err != nil {
		t.Fatal(err)
	}
	key, _ := age.GenerateX25519Identity()
	cons, err := console.New(console.Config{Store: st, EvidenceKey: key, Logger: quiet, Audits: svc})
	if err != nil {
		t.Fatal(err)
	}
	web := httptest.NewServer(cons.Handler())
	l, err := admin.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	asrv := &http.Server{Handler: (&admin.Server{Store: st, Logger: quiet, Audits: svc}).Handler()}
	go asrv.Serve(l)
	t.Cleanup(func() {
		asrv.Close()
		web.Close()
		st.Close()
	})
	h, err := svc.Request(context.Background(), "", audit.Scope{Kind: "group", Value: "ict"}, audit.Reader{Name: "head1"}, "termly check", 0)
	if err != nil {
		t.Fatal(err)
	}

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar}
	resp, err := browser.Post(web.URL+"/api/v1/session", "application/json", strings.NewReader(`{"username":"head1","password":"pw"}`))
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("sign in: %v %v", resp, err)
	}
	resp.Body.Close()
	viaConsole := func(path string) (int, string) {
		resp, err := browser.Get(web.URL + path)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	cli := admin.NewClient(dir)
	viaAdmin := func(path string) (int, string) {
		rc, err := cli.DoAs(context.Background(), "operator", "GET", path, nil)
		if err != nil {
			return 500, err.Error()
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		return 200, string(b)
	}

	for _, c := range []struct {
		name          string
		read          func(string) (int, string)
		path          string
		who, action   string
		detail, shows string // shows: what the answer holds only when it is the audit
	}{
		{"console record", viaConsole, "/api/v1/audits/" + h.ID, "head1", "view-audit", h.ID, "ict-02"},
		{"console PDF", viaConsole, "/api/v1/audits/" + h.ID + "/report.pdf", "head1", "export-audit", h.ID + " pdf", "%PDF"},
		{"console CSV", viaConsole, "/api/v1/audits/" + h.ID + "/report.csv", "head1", "export-audit", h.ID + " csv", "ict-02"},
		{"admin record", viaAdmin, "/v1/audits/" + h.ID, "operator", "view-audit", h.ID, "ict-02"},
		{"admin export", viaAdmin, "/v1/audits/" + h.ID + "/export", "operator", "export-audit", h.ID, "termly check"},
	} {
		before, err := st.AccessLog()
		if err != nil {
			t.Fatal(err)
		}
		code, body := c.read(c.path)
		if code != 200 || !strings.Contains(body, c.shows) {
			t.Fatalf("%s: %d %.200q", c.name, code, body)
		}
		after, err := st.AccessLog()
		if err != nil {
			t.Fatal(err)
		}
		if len(after) != len(before)+1 {
			t.Fatalf("%s: %d access-log entries written, want 1: %+v", c.name, len(after)-len(before), after[len(before):])
		}
		var e store.AccessEntry
		for _, a := range after { // the one entry not there before, wherever the log orders it
			found := false
			for _, b := range before {
				if a == b {
					found = true
					break
				}
			}
			if !found {
				e = a
			}
		}
		if e.Who != c.who || e.Action != c.action || e.Detail != c.detail {
			t.Errorf("%s: logged %+v, want who %q action %q detail %q", c.name, e, c.who, c.action, c.detail)
		}

		// The same read while the log cannot be written shows nothing.
		logged.fail.Store(true)
		code, body = c.read(c.path)
		logged.fail.Store(false)
		if code == 200 || strings.Contains(body, c.shows) || !strings.Contains(body, "not logged") {
			t.Errorf("%s with the access log failing: %d %.200q, want a refusal saying it was not logged", c.name, code, body)
		}
	}
}
