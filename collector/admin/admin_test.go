package admin

import (
	"bufio"
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/evidencekeys"
	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/rulesdist"
	"github.com/vigil-safeguarding/vigil/collector/server"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// env is a collector's admin socket as `serve` runs it: a real store, CA
// and gRPC server (no agent connected), served on the Unix socket in a
// data dir, reached with the CLI's Client.
type env struct {
	dir  string
	st   *store.Store
	ca   *pki.Authority
	cl   *Client
	keys *evidencekeys.Keyring
}

func newEnv(t *testing.T) *env {
	t.Helper()
	// Short: a Unix socket path has a ~100-byte limit.
	dir, err := os.MkdirTemp("", "vadm")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	log := slog.New(slog.DiscardHandler)
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	// As the daemon opens it: each school's records under its data key.
	dataKeys, err := store.OpenDataKeys(filepath.Join(dir, "keys", "schools"))
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "badger"), store.Options{Logger: log, DataKeys: dataKeys})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	base, err := pki.LoadOrCreateEvidenceKey(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := evidencekeys.Open(filepath.Join(dir, "pki"), base)
	if err != nil {
		t.Fatal(err)
	}
	agents := server.New(server.Config{Store: st, CA: ca, Logger: log, Evidence: keys})
	lis, err := Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: (&Server{Store: st, CA: ca, Agents: agents, Logger: log, EvidenceKey: base, Keys: keys,
		SchoolRulesDir: filepath.Join(dir, rulesdist.SchoolRulesDir)}).Handler()}
	go hs.Serve(lis)
	t.Cleanup(func() { hs.Close() })
	return &env{dir: dir, st: st, ca: ca, cl: NewClient(dir), keys: keys}
}

func (e *env) do(t *testing.T, who, method, path string, body, out any) error {
	t.Helper()
	rc, err := e.cl.DoAs(context.Background(), who, method, path, body)
	if err != nil {
		return err
	}
	defer rc.Close()
	if out != nil {
		if err := json.NewDecoder(rc).Decode(out); err != nil {
			t.Fatalf("%s %s: decode: %v", method, path, err)
		}
	}
	return nil
}

func wantErr(t *testing.T, err error, contains string) {
	t.Helper()
	if err == nil || !strings.Contains(err.Error(), contains) {
		t.Fatalf("err %v, want it to contain %q", err, contains)
	}
}

// TestTokens: a token created on the socket is a well-formed enrolment
// token pinned to this collector's CA, listed without its secret, and
// revocable; bad requests are refused with the reason.
func TestTokens(t *testing.T) {
	e := newEnv(t)
	var tok TokenResponse
	if err := e.do(t, "", "POST", "/v1/tokens", TokenRequest{Group: "year-7", TTL: time.Hour, Uses: 3}, &tok); err != nil {
		t.Fatal(err)
	}
	parsed, err := identity.ParseToken(tok.Token)
	if err != nil || parsed.CAFingerprint != e.ca.Fingerprint() || tok.Group != "year-7" || tok.Uses != 3 {
		t.Fatalf("token %+v: %v", tok, err)
	}
	var list []TokenInfo
	if err := e.do(t, "", "GET", "/v1/tokens", nil, &list); err != nil {
		t.Fatal(err)
	}
	if len(list) != 1 || list[0].ID != tok.ID {
		t.Fatalf("list %+v", list)
	}
	raw, _ := json.Marshal(list)
	if strings.Contains(string(raw), string(parsed.Secret)) || strings.Contains(string(raw), tok.Token) {
		t.Error("token list shows the secret")
	}
	wantErr(t, e.do(t, "", "POST", "/v1/tokens", TokenRequest{Group: "", TTL: time.Hour, Uses: 1}, nil), "collector refused")
	wantErr(t, e.do(t, "tech", "POST", "/v1/tokens/nope/revoke", RevokeRequest{Reason: "x"}, nil), "no token")
	if err := e.do(t, "tech", "POST", "/v1/tokens/"+tok.ID+"/revoke", RevokeRequest{Reason: "posted to the wrong list"}, nil); err != nil {
		t.Fatal(err)
	}
	list = nil
	e.do(t, "", "GET", "/v1/tokens", nil, &list)
	if len(list) != 1 || !list[0].Revoked || list[0].State != "revoked" {
		t.Errorf("revoked token not shown as revoked: %+v", list)
	}
}

// TestFindingsAndDevices: findings stream as NDJSON filtered by device,
// since and limit; bad filters are refused with the expected form.
func TestFindingsAndDevices(t *testing.T) {
	e := newEnv(t)
	for _, d := range []string{"dev-a", "dev-b"} {
		if err := e.st.PutDevice(store.Device{DeviceID: d, Group: "pupils", Hostname: d + "-host", EnrolledAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	base := time.Now().Add(-time.Hour).Truncate(time.Second)
	var fs []*vigilv1.Finding
	for i := range 5 {
		for _, d := range []string{"dev-a", "dev-b"} {
			fs = append(fs, &vigilv1.Finding{DeviceId: d, Seq: uint64(i + 1), Group: "pupils", ObservedAt: timestamppb.New(base.Add(time.Duration(i) * time.Minute)),
				Check: "selftest", RuleId: "selftest", RuleVersion: 1, Severity: vigilv1.Severity_SEVERITY_LOW, Category: "agent", Message: "self-test"})
		}
	}
	if _, _, err := e.st.CommitFindings(context.Background(), fs); err != nil {
		t.Fatal(err)
	}
	lines := func(path string) []map[string]any {
		t.Helper()
		rc, err := e.cl.Do(context.Background(), "GET", path, nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		var out []map[string]any
		sc := bufio.NewScanner(rc)
		for sc.Scan() {
			var m map[string]any
			if err := json.Unmarshal(sc.Bytes(), &m); err != nil {
				t.Fatalf("%s: line %q: %v", path, sc.Text(), err)
			}
			out = append(out, m)
		}
		return out
	}
	if got := lines("/v1/findings"); len(got) != 10 {
		t.Errorf("all findings: %d", len(got))
	}
	got := lines("/v1/findings?device=dev-b")
	if len(got) != 5 {
		t.Fatalf("dev-b: %d", len(got))
	}
	for _, f := range got {
		if f["device_id"] != "dev-b" {
			t.Errorf("device filter let through %v", f["device_id"])
		}
	}
	if got := lines("/v1/findings?limit=3"); len(got) != 3 {
		t.Errorf("limit=3: %d", len(got))
	}
	since := base.Add(3 * time.Minute).UTC().Format(time.RFC3339)
	if got := lines("/v1/findings?device=dev-a&since=" + since); len(got) != 2 {
		t.Errorf("since %s: %d findings, want 2", since, len(got))
	}
	// Schools: dev-b moves to a second school; dev-a, enrolled before
	// schools, is the default school's.
	var oak store.School
	if err := e.do(t, "", "POST", "/v1/schools", SchoolRequest{Name: "Oak Primary"}, &oak); err != nil || oak.ID != "oak-primary" {
		t.Fatalf("add school: %+v %v", oak, err)
	}
	wantErr(t, e.do(t, "", "POST", "/v1/schools", SchoolRequest{Name: "oak primary"}, nil), "exists")
	var schools []store.School
	if err := e.do(t, "", "GET", "/v1/schools", nil, &schools); err != nil || len(schools) != 2 {
		t.Fatalf("schools %+v %v", schools, err)
	}
	if err := e.st.PutDevice(store.Device{DeviceID: "dev-b", Group: "pupils", School: oak.ID, EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	for q, want := range map[string]string{"?school=Oak+Primary": "dev-b", "?school=default": "dev-a", "?school=oak-primary&limit=2": "dev-b"} {
		got := lines("/v1/findings" + q)
		n := 5
		if strings.Contains(q, "limit") {
			n = 2
		}
		if len(got) != n {
			t.Errorf("%s: %d findings, want %d", q, len(got), n)
		}
		for _, f := range got {
			if f["device_id"] != want {
				t.Errorf("%s let through %v", q, f["device_id"])
			}
		}
	}
	wantErr(t, e.do(t, "", "GET", "/v1/findings?school=nowhere", nil, nil), "no school")
	wantErr(t, e.do(t, "", "GET", "/v1/findings?since=yesterday", nil, nil), "RFC3339")
	wantErr(t, e.do(t, "", "GET", "/v1/findings?limit=-1", nil, nil), "non-negative")

	var devs []store.Device
	if err := e.do(t, "", "GET", "/v1/devices", nil, &devs); err != nil {
		t.Fatal(err)
	}
	if len(devs) != 2 || devs[0].Connected || devs[1].Connected {
		t.Errorf("devices %+v", devs)
	}
	// A request to a device that is not connected fails with the reason.
	wantErr(t, e.do(t, "", "POST", "/v1/requests", RequestBody{Device: "dev-a", Kind: "selftest", Timeout: time.Second}, nil), "collector refused")
}

// TestRevokeUnrevoke: revoking needs an enrolled device; lifting needs who
// and why and a revoked device; both are in the access log.
func TestRevokeUnrevoke(t *testing.T) {
	e := newEnv(t)
	if err := e.st.PutDevice(store.Device{DeviceID: "dev-a", Group: "pupils", EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.do(t, "tech", "POST", "/v1/devices/ghost/revoke", RevokeRequest{Reason: "lost"}, nil), "no device")
	wantErr(t, e.do(t, "tech", "POST", "/v1/devices/dev-a/unrevoke", RevokeRequest{Reason: "found"}, nil), "not revoked")
	if err := e.do(t, "tech", "POST", "/v1/devices/dev-a/revoke", RevokeRequest{Reason: "laptop stolen"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, revoked, err := e.st.Revoked("dev-a"); err != nil || !revoked {
		t.Fatalf("not revoked in the store: %v %v", revoked, err)
	}
	wantErr(t, e.do(t, "", "POST", "/v1/devices/dev-a/unrevoke", RevokeRequest{Reason: "found"}, nil), "needs who")
	wantErr(t, e.do(t, "tech", "POST", "/v1/devices/dev-a/unrevoke", RevokeRequest{}, nil), "needs who")
	if _, revoked, _ := e.st.Revoked("dev-a"); !revoked {
		t.Fatal("a refused unrevoke lifted the revocation")
	}
	if err := e.do(t, "tech", "POST", "/v1/devices/dev-a/unrevoke", RevokeRequest{Reason: "found in lost property"}, nil); err != nil {
		t.Fatal(err)
	}
	if _, revoked, _ := e.st.Revoked("dev-a"); revoked {
		t.Fatal("still revoked")
	}
	var log []store.AccessEntry
	if err := e.do(t, "", "GET", "/v1/access-log", nil, &log); err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, a := range log {
		actions = append(actions, a.Action+":"+a.Who+":"+a.Reason)
	}
	joined := strings.Join(actions, ",")
	if !strings.Contains(joined, "revoke-device:tech:laptop stolen") || !strings.Contains(joined, "unrevoke-device:tech:found in lost property") {
		t.Errorf("access log %v", actions)
	}
}

// TestSocket: owner-only; a second collector on the same data dir is
// refused while the first serves; the CLI says when none runs.
func TestSocket(t *testing.T) {
	e := newEnv(t)
	path := filepath.Join(e.dir, SocketName)
	if runtime.GOOS != "windows" {
		fi, err := os.Stat(path)
		if err != nil || fi.Mode().Perm() != 0o600 {
			t.Errorf("socket mode %v, %v", fi.Mode().Perm(), err)
		}
	}
	if l, err := Listen(e.dir); err == nil {
		l.Close()
		t.Fatal("a second collector took over the admin socket")
	} else if !strings.Contains(err.Error(), "already serving") {
		t.Errorf("second Listen: %v", err)
	}
	empty, err := os.MkdirTemp("", "vadm")
	if err != nil {
		t.Fatal(err)
	}
	defer os.RemoveAll(empty)
	_, err = NewClient(empty).Do(context.Background(), "GET", "/v1/devices", nil)
	wantErr(t, err, "not running")
	// A stale socket file from a killed collector does not block a start.
	os.WriteFile(filepath.Join(empty, SocketName), nil, 0o600)
	l, err := Listen(empty)
	if err != nil {
		t.Fatalf("stale socket: %v", err)
	}
	l.Close()
}

// TestSchoolExport: the admin socket streams a school's export, whole (an
// end line), logged before anything is read; an unknown school is 404.
func TestSchoolExport(t *testing.T) {
	e := newEnv(t)
	var oak store.School
	if err := e.do(t, "", "POST", "/v1/schools", SchoolRequest{Name: "Oak Primary"}, &oak); err != nil {
		t.Fatal(err)
	}
	for id, sc := range map[string]string{"dev-a": "", "dev-b": oak.ID} {
		if err := e.st.PutDevice(store.Device{DeviceID: id, Group: "pupils", School: sc, EnrolledAt: time.Now()}); err != nil {
			t.Fatal(err)
		}
	}
	rc, err := e.cl.DoAs(context.Background(), "os:ceo", "GET", "/v1/schools/Oak%20Primary/export", nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(rc)
	rc.Close()
	lines := strings.Split(strings.TrimSpace(string(b)), "\n")
	if len(lines) != 3 || !strings.Contains(lines[0], `"kind":"header"`) || !strings.Contains(lines[1], `"dev-b"`) ||
		!strings.Contains(lines[2], `"kind":"end"`) || strings.Contains(string(b), "dev-a") {
		t.Fatalf("export:\n%s", b)
	}
	log, err := e.st.AccessLog()
	if err != nil {
		t.Fatal(err)
	}
	if l := log[len(log)-1]; l.Action != "export-school" || l.Who != "os:ceo" || !strings.Contains(l.Detail, oak.ID) {
		t.Errorf("access log: %+v", l)
	}
	wantErr(t, e.do(t, "", "GET", "/v1/schools/nowhere/export", nil, nil), "no such school")
}

// TestSchoolExportedAndDeleted: a school leaving the trust is exported and
// deleted; another school's export (every line but the header and its
// access-log lines, which now hold the deletion) is byte-identical before
// and after, and the deleted school is gone from every answer.
// sealTo seals text to school's evidence recipient, as its agents do.
func sealTo(t *testing.T, keys *evidencekeys.Keyring, school, text string) []byte {
	t.Helper()
	rs, err := keys.Recipient(school)
	if err != nil {
		t.Fatal(err)
	}
	r, err := age.ParseX25519Recipient(rs)
	if err != nil {
		t.Fatal(err)
	}
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, r)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, text)
	w.Close()
	return ct.Bytes()
}

func TestSchoolExportedAndDeleted(t *testing.T) {
	e := newEnv(t)
	now := time.Now().UTC()
	for _, name := range []string{"Oak", "Elm"} {
		if err := e.do(t, "", "POST", "/v1/schools", SchoolRequest{Name: name}, nil); err != nil {
			t.Fatal(err)
		}
	}
	devs := map[string]string{}
	for i, sc := range []string{"", "oak", "elm"} {
		dev := fmt.Sprintf("%s-dev-%022d", store.SchoolOf(sc), i)[:26]
		if err := e.st.PutDevice(store.Device{DeviceID: dev, Group: "pupils", School: sc, Hostname: store.SchoolOf(sc) + "-lap", EnrolledAt: now}); err != nil {
			t.Fatal(err)
		}
		var fs []*vigilv1.Finding
		for seq := uint64(1); seq <= 3; seq++ {
			fs = append(fs, &vigilv1.Finding{DeviceId: dev, Seq: seq, Check: "selftest", RuleId: "selftest", Category: "selftest",
				Message: sc + " finding", ObservedAt: timestamppb.New(now.Add(time.Duration(seq) * time.Second))})
		}
		// Evidence sealed on the device to its school's recipient, as the
		// agent does once enrolled.
		ct := sealTo(t, e.keys, sc, store.SchoolOf(sc)+" screenshot")
		sum := sha256.Sum256(ct)
		fs[0].Evidence = []*vigilv1.EvidenceRef{{Id: "ev1", MediaType: "image/png", Sha256: hex.EncodeToString(sum[:]), Size: int64(len(ct))}}
		fs[0].EvidenceData = []*vigilv1.EvidenceBlob{{Id: "ev1", Data: ct}}
		fs[0].Check, fs[0].Severity = "screen", vigilv1.Severity_SEVERITY_HIGH
		fs[0].ScreenMatch = &vigilv1.ScreenMatch{Term: "test", Library: "keywords-selftest", Category: "selftest", Source: "window_title", EvidenceIds: []string{"ev1"}}
		devs[store.SchoolOf(sc)] = dev
		if _, _, err := e.st.CommitFindings(context.Background(), fs); err != nil {
			t.Fatal(err)
		}
		if err := e.st.PutToken(store.Token{ID: store.SchoolOf(sc) + "tok", School: sc, Group: "pupils", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 3}); err != nil {
			t.Fatal(err)
		}
		if err := e.st.CreateUser(store.User{Username: store.SchoolOf(sc) + "dsl", Role: "dsl", School: sc, PasswordHash: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	export := func(school string) []string {
		t.Helper()
		rc, err := e.cl.DoAs(context.Background(), "os:trust-it", "GET", "/v1/schools/"+school+"/export", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer rc.Close()
		b, _ := io.ReadAll(rc)
		var keep []string
		for _, l := range strings.Split(strings.TrimSpace(string(b)), "\n") {
			if !strings.Contains(l, `"kind":"header"`) && !strings.Contains(l, `"kind":"access"`) && !strings.Contains(l, `"kind":"end"`) {
				keep = append(keep, l)
			}
		}
		return keep
	}
	// Each school's rules overrides, as its technician wrote them.
	for _, sc := range []string{"oak", "elm"} {
		p := filepath.Join(e.dir, rulesdist.SchoolRulesDir, sc, "keywords", sc+"-slang.txt")
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(sc+"slang\n"), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	elmBefore, oakBefore := export("elm"), export("oak")
	if !strings.Contains(strings.Join(oakBefore, "\n"), `"path":"keywords/oak-slang.txt"`) || strings.Contains(strings.Join(oakBefore, "\n"), "elm-slang") {
		t.Errorf("oak's export does not carry its rules overrides alone: %q", oakBefore)
	}
	if len(elmBefore) < 5 || len(oakBefore) < 5 {
		t.Fatalf("exports: elm %d lines, oak %d", len(elmBefore), len(oakBefore))
	}
	reveal := func(school string) (string, error) {
		rc, err := e.cl.DoAs(context.Background(), "os:trust-it", "GET", "/v1/evidence/"+devs[school]+"/ev1?reason=check", nil)
		if err != nil {
			return "", err
		}
		defer rc.Close()
		b, err := io.ReadAll(rc)
		return string(b), err
	}
	for _, school := range []string{"oak", "elm", "default"} {
		if got, err := reveal(school); err != nil || got != school+" screenshot" {
			t.Fatalf("%s's evidence before: %q %v", school, got, err)
		}
	}
	// What outlives the store's deletion elsewhere: a backup of oak's
	// evidence as stored, and elm's key file.
	oakCopy, err := e.st.Evidence(devs["oak"], "ev1", nil)
	if err != nil {
		t.Fatal(err)
	}
	elmKey, err := os.ReadFile(filepath.Join(e.dir, "pki", evidencekeys.Dir, "elm.key"))
	if err != nil {
		t.Fatal(err)
	}
	wantErr(t, e.do(t, "", "POST", "/v1/schools/oak/delete", DeleteSchoolRequest{Confirm: "Oak", Reason: "left the trust"}, nil), "confirm with its ID")
	wantErr(t, e.do(t, "", "POST", "/v1/schools/default/delete", DeleteSchoolRequest{Confirm: "default", Reason: "x"}, nil), "cannot be deleted")
	var rep SchoolDeleted
	if err := e.do(t, "", "POST", "/v1/schools/Oak/delete", DeleteSchoolRequest{Confirm: "oak", Reason: "left the trust"}, &rep); err != nil {
		t.Fatal(err)
	}
	if rep.Devices != 1 || rep.Keys["f/d/"] != 3 || rep.Keys["t/"] != 1 || rep.Keys["u/"] != 1 || rep.Keys["e/"] != 1 || !rep.EvidenceKeyDestroyed || !rep.DataKeyDestroyed || rep.RulesOverridesRemoved != 1 {
		t.Errorf("deletion report %+v", rep)
	}
	// Oak's evidence is gone with its key: the copy opens with no key of
	// this installation, as held or as read again from disk.
	reopened, err := evidencekeys.Open(filepath.Join(e.dir, "pki"), nil)
	if err == nil {
		t.Fatal("keyring opened without the installation key")
	}
	base, _ := pki.LoadOrCreateEvidenceKey(filepath.Join(e.dir, "pki"))
	if reopened, err = evidencekeys.Open(filepath.Join(e.dir, "pki"), base); err != nil {
		t.Fatal(err)
	}
	for _, kr := range []*evidencekeys.Keyring{e.keys, reopened} {
		for _, school := range []string{"oak", "elm", "default"} {
			if r, err := age.Decrypt(bytes.NewReader(oakCopy), kr.Identities(school)...); err == nil {
				b, _ := io.ReadAll(r)
				t.Errorf("oak's evidence opened after the deletion with %s's keys: %q", school, b)
			}
		}
	}
	if _, err := os.Stat(filepath.Join(e.dir, rulesdist.SchoolRulesDir, "oak")); !os.IsNotExist(err) {
		t.Errorf("oak's rules overrides folder: %v", err)
	}
	if _, err := os.Stat(filepath.Join(e.dir, "pki", evidencekeys.Dir, "oak.key")); !os.IsNotExist(err) {
		t.Errorf("oak's key file: %v", err)
	}
	if after, _ := os.ReadFile(filepath.Join(e.dir, "pki", evidencekeys.Dir, "elm.key")); !bytes.Equal(after, elmKey) {
		t.Error("elm's key file changed")
	}
	for _, school := range []string{"elm", "default"} {
		if got, err := reveal(school); err != nil || got != school+" screenshot" {
			t.Errorf("%s's evidence after oak left: %q %v", school, got, err)
		}
	}
	elmAfter := export("elm")
	if strings.Join(elmAfter, "\n") != strings.Join(elmBefore, "\n") {
		t.Errorf("elm's export changed:\nbefore %s\nafter  %s", strings.Join(elmBefore, "\n"), strings.Join(elmAfter, "\n"))
	}
	wantErr(t, e.do(t, "", "GET", "/v1/schools/oak/export", nil, nil), "no such school")
	var schools []store.School
	if err := e.do(t, "", "GET", "/v1/schools", nil, &schools); err != nil || len(schools) != 2 {
		t.Errorf("schools after: %+v %v", schools, err)
	}
	log, _ := e.st.AccessLog()
	var deleted []string
	for _, l := range log {
		if l.Action == "delete-school" {
			deleted = append(deleted, l.Detail)
		}
	}
	if len(deleted) != 2 || !strings.Contains(deleted[1], "school oak deleted: 1 devices") {
		t.Errorf("access log of the deletion: %q", deleted)
	}
}
