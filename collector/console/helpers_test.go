package console

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"image/color"
	"image/png"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func TestMain(m *testing.M) {
	auth.BcryptCost = bcrypt.MinCost
	pdfOptions.Uncompressed = true
	os.Exit(m.Run())
}

const testPassword = "correct horse battery"

// env is a console over a real store in a temp dir, served by httptest.
type env struct {
	t    *testing.T
	dir  string
	st   *store.Store
	srv  *Server
	http *httptest.Server
	key  *age.X25519Identity

	mu  sync.Mutex
	now time.Time // fake clock; zero means time.Now
	seq uint64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	dir := t.TempDir()
	st, err := store.Open(filepath.Join(dir, "badger"), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, dir: dir, st: st, key: id}
	srv, err := New(Config{Store: st, EvidenceKey: id, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)), Now: e.clock,
		Connected: func(string) bool { return false }})
	if err != nil {
		t.Fatal(err)
	}
	e.srv = srv
	e.http = httptest.NewServer(srv.Handler())
	t.Cleanup(func() {
		e.http.Close()
		st.Close()
	})
	return e
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.now.IsZero() {
		return time.Now()
	}
	return e.now
}

func (e *env) setNow(t time.Time) {
	e.mu.Lock()
	e.now = t
	e.mu.Unlock()
}

func (e *env) user(username, role string, chair bool, email string) {
	e.t.Helper()
	e.userIn("", username, role, chair, email)
}

// userIn is user for an account of a school ("" is the default school).
func (e *env) userIn(school, username, role string, chair bool, email string) {
	e.t.Helper()
	u, err := auth.NewUser(username, strings.ToUpper(username[:1])+username[1:]+" Name", role, testPassword, email, chair, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	u.School = school
	if err := e.st.CreateUser(u); err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) people(ps ...store.Person) {
	e.t.Helper()
	if err := e.st.PutPeople(ps); err != nil {
		e.t.Fatal(err)
	}
	if err := e.srv.ReloadPeople(); err != nil {
		e.t.Fatal(err)
	}
}

const testDevice = "abcdefghijklmnopqrstuvwxyz"

func testPNG() []byte {
	img := image.NewRGBA(image.Rect(0, 0, 8, 6))
	for x := 0; x < 8; x++ {
		img.Set(x, 2, color.RGBA{200, 0, 0, 255})
	}
	var b bytes.Buffer
	png.Encode(&b, img)
	return b.Bytes()
}

// alert commits a screen finding about user through the real commit path
// (so the alert index is written by commitGroup) and returns its id.
func (e *env) alert(user, category string, sev vigilv1.Severity, term string, at time.Time) string {
	e.t.Helper()
	return e.alertOn(testDevice, user, category, sev, term, at)
}

// alertOn is alert on another device (another school's, say).
func (e *env) alertOn(device, user, category string, sev vigilv1.Severity, term string, at time.Time) string {
	e.t.Helper()
	e.mu.Lock()
	e.seq++
	seq := e.seq
	e.mu.Unlock()
	details, _ := structpb.NewStruct(map[string]any{"window_class": "Navigator", "pid": 4242})
	var ct bytes.Buffer
	w, _ := age.Encrypt(&ct, e.key.Recipient())
	w.Write(testPNG())
	w.Close()
	evID := fmt.Sprintf("ev%030d", seq)
	f := &vigilv1.Finding{DeviceId: device, Seq: seq, Group: "pupils", ObservedAt: timestamppb.New(at), User: user,
		Check: "screen", RuleId: "screen-keywords", Severity: sev, Category: category,
		Message: category + " term in the active window title", Details: details,
		Evidence:     []*vigilv1.EvidenceRef{{Id: evID, MediaType: "image/png", Sha256: evidenceSHA(ct.Bytes()), Size: int64(ct.Len())}},
		EvidenceData: []*vigilv1.EvidenceBlob{{Id: evID, Data: ct.Bytes()}},
		ScreenMatch: &vigilv1.ScreenMatch{Term: term, Library: "keywords-" + category, Category: category,
			Context: "how to " + term + " - Google Search", WindowTitle: "how to " + term + " - Google Search",
			Process: "firefox", User: user, Source: "window_title", EvidenceIds: []string{evID}}}
	if _, _, err := e.st.CommitFindings(context.Background(), []*vigilv1.Finding{f}); err != nil {
		e.t.Fatal(err)
	}
	return AlertID(device, seq)
}

// client is a browser-like session: cookie jar plus the CSRF token.
type client struct {
	t    *testing.T
	e    *env
	hc   *http.Client
	csrf string
}

func (e *env) anon() *client {
	jar, _ := cookiejar.New(nil)
	return &client{t: e.t, e: e, hc: &http.Client{Jar: jar}}
}

func (e *env) login(username string) *client {
	e.t.Helper()
	c := e.anon()
	code, body := c.do("POST", "/api/v1/session", map[string]string{"username": username, "password": testPassword})
	if code != 200 {
		e.t.Fatalf("login %s: %d %s", username, code, body)
	}
	var me meResponse
	json.Unmarshal(body, &me)
	c.csrf = me.CSRFToken
	return c
}

func (c *client) req(method, path string, body any, hdr map[string]string) *http.Response {
	c.t.Helper()
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	}
	req, err := http.NewRequest(method, c.e.http.URL+path, rd)
	if err != nil {
		c.t.Fatal(err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.csrf != "" && method != "GET" {
		req.Header.Set("X-CSRF-Token", c.csrf)
	}
	for k, v := range hdr {
		req.Header.Set(k, v)
	}
	resp, err := c.hc.Do(req)
	if err != nil {
		c.t.Fatal(err)
	}
	return resp
}

func (c *client) do(method, path string, body any) (int, []byte) {
	c.t.Helper()
	resp := c.req(method, path, body, nil)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, b
}

func (c *client) getJSON(path string, v any) int {
	c.t.Helper()
	code, b := c.do("GET", path, nil)
	if code == 200 && v != nil {
		if err := json.Unmarshal(b, v); err != nil {
			c.t.Fatalf("%s: %v: %s", path, err, b)
		}
	}
	return code
}

func (c *client) action(id string, body map[string]string) (int, alertDetail) {
	c.t.Helper()
	code, b := c.do("POST", "/api/v1/alerts/"+id+"/actions", body)
	var d alertDetail
	if code == 200 {
		json.Unmarshal(b, &d)
	} else {
		c.t.Logf("action %v: %d %s", body, code, b)
	}
	return code, d
}

// conclude sets an alert's state straight in the store (a fixture).
func (e *env) conclude(id, first, second, conclusion string) {
	e.t.Helper()
	dev, seq, _ := parseAlertID(id)
	now := time.Now().UTC()
	_, err := e.st.UpdateAlertState(dev, seq, func(st *store.AlertState) error {
		st.Status, st.Reason = "concluded", "fixture"
		st.FirstReviewer, st.FirstSignedAt, st.SecondReviewer, st.SecondSignedAt = first, now, second, now
		st.Conclusion, st.ConcludedAt = conclusion, now
		st.History = append(st.History, store.HistoryEntry{Time: now, By: first, Action: "conclude"})
		return nil
	})
	if err != nil {
		e.t.Fatal(err)
	}
}

func (e *env) accessLog() []store.AccessEntry {
	e.t.Helper()
	l, err := e.st.AccessLog()
	if err != nil {
		e.t.Fatal(err)
	}
	return l
}
