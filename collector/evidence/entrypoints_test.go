package evidence_test

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/user"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/cli"
	"github.com/vigil-safeguarding/vigil/collector/console"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

const device = "abcdefghijklmnopqrstuvwxyz"

var pngBytes = []byte("\x89PNG\r\n\x1a\n a screenshot")

// world is a collector's evidence reveal with its three entry points over
// one store: the console's HTTP API, the admin socket and the CLI.
type world struct {
	t       *testing.T
	dir     string
	st      *store.Store
	key     *age.X25519Identity
	cons    *console.Server
	web     *httptest.Server
	seq     uint64
	clients map[string]*http.Client
	csrf    map[string]string // each session's CSRF token
}

func newWorld(t *testing.T) *world {
	dir, err := os.MkdirTemp("", "vigil-ev") // short: the admin socket's path has a length limit
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(filepath.Join(dir, "db"), store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	key, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	w := &world{t: t, dir: dir, st: st, key: key, clients: map[string]*http.Client{}, csrf: map[string]string{}}
	hash, _ := bcrypt.GenerateFromPassword([]byte("pw"), bcrypt.MinCost)
	for _, u := range []store.User{
		{Username: "dsl1", Role: console.RoleDSL}, {Username: "dsl2", Role: console.RoleDSL},
		{Username: "head", Role: console.RoleHeadteacher}, {Username: "tech", Role: console.RoleTechnician},
		{Username: "pupil9", Role: console.RoleDSL}, // a DSL whose own device account raised an alert
	} {
		u.DisplayName, u.PasswordHash, u.Created = u.Username, hash, time.Now()
		if err := st.CreateUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.PutPeople([]store.Person{{Username: "teacher1", DisplayName: "T One", Role: "staff"}}); err != nil {
		t.Fatal(err)
	}
	w.cons, err = console.New(console.Config{Store: st, EvidenceKey: key, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	w.web = httptest.NewServer(w.cons.Handler())
	// The admin socket as the daemon wires it: the console's reveal.
	l, err := admin.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	adm := &admin.Server{Store: st, Logger: quiet, EvidenceKey: key, Evidence: w.cons.Evidence()}
	asrv := &http.Server{Handler: adm.Handler()}
	go asrv.Serve(l)
	t.Cleanup(func() {
		asrv.Close()
		w.web.Close()
		st.Close()
	})
	return w
}

// alert stores a screen alert about user with an encrypted screenshot and
// returns its seq and evidence ID.
func (w *world) alert(user, category string, sev vigilv1.Severity) (uint64, string) {
	w.seq++
	var ct bytes.Buffer
	enc, _ := age.Encrypt(&ct, w.key.Recipient())
	enc.Write(pngBytes)
	enc.Close()
	sum := sha256.Sum256(ct.Bytes())
	ev := fmt.Sprintf("ev%030d", w.seq)
	details, _ := structpb.NewStruct(map[string]any{"term": "t", "library": "keywords"})
	f := &vigilv1.Finding{DeviceId: device, Seq: w.seq, Group: "pupils", ObservedAt: timestamppb.Now(), User: user,
		Check: "screen", ScreenMatch: &vigilv1.ScreenMatch{Term: "t", Library: "keywords", Category: category}, RuleId: "screen-keywords", Severity: sev, Category: category, Details: details,
		Evidence:     []*vigilv1.EvidenceRef{{Id: ev, MediaType: "image/png", Sha256: hex.EncodeToString(sum[:]), Size: int64(ct.Len())}},
		EvidenceData: []*vigilv1.EvidenceBlob{{Id: ev, Data: ct.Bytes()}}}
	if _, _, err := w.st.CommitFindings(context.Background(), []*vigilv1.Finding{f}); err != nil {
		w.t.Fatal(err)
	}
	return w.seq, ev
}

func (w *world) session(username string) *http.Client {
	if c := w.clients[username]; c != nil {
		return c
	}
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar}
	resp, err := c.Post(w.web.URL+"/api/v1/session", "application/json", strings.NewReader(`{"username":"`+username+`","password":"pw"}`))
	if err != nil || resp.StatusCode != 200 {
		w.t.Fatalf("sign in %s: %v %v", username, resp, err)
	}
	var me struct {
		CSRF string `json:"csrf_token"`
	}
	json.NewDecoder(resp.Body).Decode(&me)
	resp.Body.Close()
	w.csrf[username] = me.CSRF
	w.clients[username] = c
	return c
}

// outcome is what an entry point answered: the HTTP status (the CLI's
// exit status 0 reads as 200, anything else as its message), and the bytes.
type outcome struct {
	code int
	msg  string
	data []byte
}

type entry struct {
	name string
	// operator: the entry point can reveal as the collector's operator
	// (no console account); console: only as a signed-in account.
	operator bool
	reveal   func(w *world, as string, seq uint64, ev, reason string) outcome
}

var entries = []entry{
	{"console", false, func(w *world, as string, seq uint64, ev, reason string) outcome {
		c := w.session(as)
		body, _ := json.Marshal(map[string]string{"reason": reason})
		req, _ := http.NewRequest("POST", fmt.Sprintf("%s/api/v1/evidence/%s-%d/%s", w.web.URL, device, seq, ev), bytes.NewReader(body))
		req.Header.Set("Content-Type", "application/json")
		req.Header.Set("X-CSRF-Token", w.csrf[as])
		resp, err := c.Do(req)
		if err != nil {
			w.t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return outcome{code: resp.StatusCode, msg: string(b), data: b}
	}},
	{"admin socket", true, func(w *world, as string, seq uint64, ev, reason string) outcome {
		q := url.Values{"reason": {reason}}
		if as != "" {
			q.Set("as", as)
		}
		body, err := admin.NewClient(w.dir).DoAs(context.Background(), "os:operator", "GET",
			"/v1/evidence/"+device+"/"+ev+"?"+q.Encode(), nil)
		if err != nil {
			return outcome{code: -1, msg: err.Error()}
		}
		defer body.Close()
		b, _ := io.ReadAll(body)
		return outcome{code: 200, data: b}
	}},
	{"cli", true, func(w *world, as string, seq uint64, ev, reason string) outcome {
		out := filepath.Join(w.t.TempDir(), "ev.png")
		args := []string{"evidence", "get", "--data", w.dir, "--device", device, "--id", ev, "--reason", reason, "--out", out}
		if as != "" {
			args = append(args, "--as", as)
		}
		var stdout, stderr bytes.Buffer
		if rc := cli.Main(args, &stdout, &stderr); rc != 0 {
			return outcome{code: -1, msg: stderr.String()}
		}
		b, err := os.ReadFile(out)
		if err != nil {
			w.t.Fatal(err)
		}
		return outcome{code: 200, data: b}
	}},
}

// TestRevealPolicyEveryEntryPoint: one table, run through the console, the
// admin socket and the CLI: role, routing, the illegal-category rule, the
// evidence's alert, the reason, and the access log written first. Before
// collector/evidence the admin socket (and so the CLI) served evidence of
// illegal-category alerts and ignored role and routing.
func TestRevealPolicyEveryEntryPoint(t *testing.T) {
	me := "os:operator"
	if u, err := user.Current(); err == nil {
		me = "os:" + u.Username
	}
	w := newWorld(t)
	pupil, pupilEv := w.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL)
	illegal, illegalEv := w.alert("pupil1", "sexual_content", vigilv1.Severity_SEVERITY_CRITICAL)
	grooming, groomingEv := w.alert("pupil2", "grooming", vigilv1.Severity_SEVERITY_CRITICAL)
	staff, staffEv := w.alert("teacher1", "gambling", vigilv1.Severity_SEVERITY_HIGH)
	own, ownEv := w.alert("pupil9", "bullying", vigilv1.Severity_SEVERITY_HIGH)

	const (
		ok        = 200
		noReason  = 400
		forbidden = 403
		notFound  = 404
		notLogged = 500
	)
	table := []struct {
		name    string
		as      string // console account; "" = the operator alone
		seq     uint64
		ev      string
		reason  string
		failLog bool
		want    int    // HTTP status (console; the admin socket and CLI refuse every non-200)
		msg     string // in the refusal, on every entry point
	}{
		{"a DSL, routed, with a reason", "dsl1", pupil, pupilEv, "welfare check", false, ok, ""},
		{"no reason", "dsl1", pupil, pupilEv, "  ", false, noReason, "reason"},
		{"illegal category (sexual content)", "dsl1", illegal, illegalEv, "look", false, forbidden, "illegal"},
		{"illegal category (grooming)", "dsl2", grooming, groomingEv, "look", false, forbidden, "illegal"},
		{"a staff concern is not the DSL's", "dsl1", staff, staffEv, "look", false, notFound, "no such alert"},
		{"a headteacher does not reveal evidence", "head", staff, staffEv, "look", false, forbidden, "Designated Safeguarding Lead"},
		{"a technician does not", "tech", pupil, pupilEv, "look", false, forbidden, ""},
		{"nobody sees their own", "pupil9", own, ownEv, "look", false, notFound, "no such alert"},
		{"another DSL sees it", "dsl2", own, ownEv, "look", false, ok, ""},
		{"evidence of another alert", "dsl1", pupil, staffEv, "look", false, notFound, ""},
		{"access log cannot be written", "dsl1", pupil, pupilEv, "look", true, notLogged, "not logged"},
		{"the operator, with a reason", "", pupil, pupilEv, "police request ref 12", false, ok, ""},
		{"the operator, illegal category", "", illegal, illegalEv, "look", false, forbidden, "illegal"},
		{"the operator, no reason", "", pupil, pupilEv, "", false, noReason, "reason"},
		{"the operator, log fails", "", pupil, pupilEv, "look", true, notLogged, "not logged"},
	}
	rev := w.cons.Evidence()
	for _, ep := range entries {
		for _, c := range table {
			if c.as == "" && !ep.operator {
				continue // the console has no operator
			}
			t.Run(ep.name+"/"+c.name, func(t *testing.T) {
				before, _ := w.st.AccessLog()
				rev.LogAccess = nil
				if c.failLog {
					rev.LogAccess = func(store.AccessEntry) error { return errors.New("the log's disk is gone") }
				}
				got := ep.reveal(w, c.as, c.seq, c.ev, c.reason)
				rev.LogAccess = nil
				after, _ := w.st.AccessLog()
				if c.want == ok {
					if got.code != 200 || !bytes.Equal(got.data, pngBytes) {
						t.Fatalf("refused: %d %s", got.code, got.msg)
					}
					if len(after) != len(before)+1 {
						t.Fatalf("access log grew by %d, want 1", len(after)-len(before))
					}
					e := after[len(after)-1]
					who := c.as
					if who == "" {
						who = me
						if ep.name == "admin socket" {
							who = "os:operator"
						}
					}
					if e.Action != "view-evidence" || e.Who != who || e.EvidenceID != c.ev || e.DeviceID != device ||
						e.AlertID != fmt.Sprintf("%s-%d", device, c.seq) || e.Reason != strings.TrimSpace(c.reason) {
						t.Errorf("access log entry %+v", e)
					}
					return
				}
				if got.code == 200 || bytes.Contains(got.data, pngBytes[:8]) {
					t.Fatalf("served (%d), want refused", got.code)
				}
				if ep.name == "console" && got.code != c.want {
					t.Errorf("status %d, want %d (%s)", got.code, c.want, got.msg)
				}
				if c.msg != "" && !strings.Contains(got.msg, c.msg) {
					t.Errorf("refusal %q does not say %q", got.msg, c.msg)
				}
				if len(after) != len(before) {
					t.Errorf("a refused reveal wrote the access log: %+v", after[len(before):])
				}
				if c.msg == "illegal" && !strings.Contains(got.msg, "refer") {
					t.Errorf("the illegal-category refusal gives no guidance: %s", got.msg)
				}
			})
		}
	}
}
