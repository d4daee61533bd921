package console

import (
	"bytes"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/releases"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/release"
)

// releaseEnv gives e the real releases service over a data dir of its own,
// with the signed releases versions (linux/amd64) added as the CLI adds
// them, and records which groups the console said changed.
func releaseEnv(t *testing.T, e *env, versions ...string) (*releases.Manager, string, *changedGroups) {
	t.Helper()
	data := filepath.Join(e.dir, "data")
	m, err := releases.Open(data, slog.New(slog.NewTextHandler(io.Discard, nil)))
	if err != nil {
		t.Fatal(err)
	}
	key, err := releases.LoadPrivateKey(releases.PrivateKeyPath(data))
	if err != nil {
		t.Fatal(err)
	}
	for i, v := range versions {
		bin := filepath.Join(t.TempDir(), "agent")
		if err := os.WriteFile(bin, []byte("agent binary "+v), 0o755); err != nil {
			t.Fatal(err)
		}
		// Distinct times: List is newest first.
		if _, err := releases.Add(data, key, bin, v, "linux", "amd64", time.Now().Add(time.Duration(i)*time.Minute)); err != nil {
			t.Fatal(err)
		}
	}
	ch := &changedGroups{}
	e.srv.releases = &ReleasesConfig{Service: m, Changed: ch.add}
	return m, data, ch
}

type changedGroups struct {
	mu sync.Mutex
	gs []string
}

func (c *changedGroups) add(g string) { c.mu.Lock(); c.gs = append(c.gs, g); c.mu.Unlock() }
func (c *changedGroups) list() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	return append([]string(nil), c.gs...)
}

func (e *env) accessActions(action string) []store.AccessEntry {
	var out []store.AccessEntry
	for _, a := range e.accessLog() {
		if a.Action == action {
			out = append(out, a)
		}
	}
	return out
}

func TestReleasesRolloutRollbackStatusMinimum(t *testing.T) {
	e := newEnv(t)
	e.user("tech", RoleTechnician, false, "")
	m, _, changed := releaseEnv(t, e, "1.2.0", "1.3.0")
	now := time.Now()
	for _, d := range []store.Device{
		{DeviceID: "dev-a", Group: "pilot", Hostname: "lap-a", AgentVersion: "1.2.0", LastSeen: now},
		{DeviceID: "dev-b", Group: "pilot", Hostname: "lap-b", AgentVersion: "1.2.0", LastSeen: now},
		{DeviceID: "dev-c", Group: "pupils", Hostname: "lap-c", AgentVersion: "1.2.0", LastSeen: now},
		{DeviceID: "dev-r", Group: "pilot", Hostname: "lap-r", AgentVersion: "1.0.0", LastSeen: now, Revoked: true},
	} {
		if err := e.st.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	c := e.login("tech")

	var list releasesJSON
	if code := c.getJSON("/api/v1/releases", &list); code != 200 {
		t.Fatalf("list releases: %d", code)
	}
	if len(list.Releases) != 2 || list.Releases[0].Version != "1.3.0" || len(list.Rollouts) != 0 || list.Minimum != "" || !list.Publish {
		t.Fatalf("releases before any rollout: %+v", list)
	}
	if err := release.Verify(m.PublicKey(), list.Releases[0].Signature, list.Releases[0].SHA256, "1.3.0", "linux", "amd64"); err != nil {
		t.Fatalf("listed release's signature: %v", err)
	}

	// Pilot first.
	code, b := c.do("POST", "/api/v1/releases/rollout", map[string]any{"version": "1.3.0", "group": "pilot"})
	if code != 200 {
		t.Fatalf("rollout: %d %s", code, b)
	}
	if ro, ok := m.Rollout("pilot"); !ok || ro.Version != "1.3.0" || ro.Percent != 100 {
		t.Fatalf("service rollout after console rollout: %+v %v", ro, ok)
	}
	if _, ok := m.Rollout("pupils"); ok {
		t.Fatal("rolling out to pilot touched pupils")
	}
	// The pilot's agents are offered it; the pupils' are not.
	if o := m.Offer("dev-a", "pilot", "1.2.0", "linux", "amd64"); o == nil || o.Version != "1.3.0" {
		t.Fatalf("offer to a pilot device: %+v", o)
	}
	if o := m.Offer("dev-c", "pupils", "1.2.0", "linux", "amd64"); o != nil {
		t.Fatalf("offer to a pupils device: %+v", o)
	}
	if got := changed.list(); len(got) != 1 || got[0] != "pilot" {
		t.Errorf("groups pushed after rollout: %v", got)
	}
	if l := e.accessActions("release-rollout"); len(l) != 1 || l[0].Who != "tech" || l[0].Detail != "group pilot to 1.3.0 (100%)" {
		t.Errorf("rollout access log: %+v", l)
	}

	// dev-a upgraded; the status says so, per group, without the revoked device.
	d, _ := e.st.GetDevice("dev-a")
	d.AgentVersion = "1.3.0"
	e.st.PutDevice(d)
	var st []releases.GroupStatus
	if code := c.getJSON("/api/v1/releases/status", &st); code != 200 {
		t.Fatalf("status: %d", code)
	}
	if len(st) != 2 || st[0].Group != "pilot" || st[1].Group != "pupils" {
		t.Fatalf("status groups: %+v", st)
	}
	if st[0].Rollout == nil || st[0].Rollout.Version != "1.3.0" || st[0].Versions["1.3.0"] != 1 || st[0].Versions["1.2.0"] != 1 || len(st[0].Devices) != 2 {
		t.Errorf("pilot status: %+v", st[0])
	}
	states := map[string]string{}
	for _, ds := range st[0].Devices {
		states[ds.DeviceID] = ds.State
	}
	if states["dev-a"] != "current" || states["dev-b"] != "pending" {
		t.Errorf("pilot device states: %v", states)
	}
	if st[1].Rollout != nil || st[1].Versions["1.2.0"] != 1 || st[1].Devices[0].State != "no_rollout" {
		t.Errorf("pupils status: %+v", st[1])
	}
	if code := c.getJSON("/api/v1/releases/status?group=pupils", &st); code != 200 || len(st) != 1 || st[0].Group != "pupils" {
		t.Errorf("status of one group: %d %+v", code, st)
	}

	// Wider, then rolled back to 1.2.0 after a second rollout.
	if code, b := c.do("POST", "/api/v1/releases/rollout", map[string]any{"version": "1.2.0", "group": "pupils"}); code != 200 {
		t.Fatalf("rollout pupils 1.2.0: %d %s", code, b)
	}
	if code, b := c.do("POST", "/api/v1/releases/rollout", map[string]any{"version": "1.3.0", "group": "pupils"}); code != 200 {
		t.Fatalf("rollout pupils 1.3.0: %d %s", code, b)
	}
	code, b = c.do("POST", "/api/v1/releases/rollback", map[string]any{"group": "pupils"})
	if code != 200 {
		t.Fatalf("rollback: %d %s", code, b)
	}
	if ro, ok := m.Rollout("pupils"); !ok || ro.Version != "1.2.0" {
		t.Fatalf("pupils after rollback: %+v %v", ro, ok)
	}
	if l := e.accessActions("release-rollback"); len(l) != 1 || l[0].Who != "tech" || l[0].Detail != "group pupils back to 1.2.0" {
		t.Errorf("rollback access log: %+v", l)
	}

	// Unknown release and no group are refused and not logged.
	if code, _ := c.do("POST", "/api/v1/releases/rollout", map[string]any{"version": "9.9.9", "group": "pilot"}); code != 404 {
		t.Errorf("rollout of an unknown release: %d, want 404", code)
	}
	if code, _ := c.do("POST", "/api/v1/releases/rollout", map[string]any{"version": "1.3.0"}); code != 400 {
		t.Errorf("rollout without a group: %d, want 400", code)
	}
	if code, _ := c.do("POST", "/api/v1/releases/rollback", map[string]any{"group": "nobody"}); code != 404 {
		t.Errorf("rollback of a group without a rollout: %d, want 404", code)
	}
	if l := e.accessActions("release-rollout"); len(l) != 3 {
		t.Errorf("refused rollouts were logged: %+v", l)
	}

	for _, v := range []string{"1.2.0", "1.3.0"} {
		if code, b := c.do("POST", "/api/v1/releases/rollout", map[string]any{"version": v, "group": "staff"}); code != 200 {
			t.Fatalf("rollout staff %s: %d %s", v, code, b)
		}
	}

	// The minimum: 1.2.0 is no longer a target, so pupils' rollout stops
	// being offered and neither rollout nor rollback may go below it.
	if code, b := c.do("POST", "/api/v1/releases/minimum", map[string]any{"version": "1.3.0"}); code != 200 {
		t.Fatalf("minimum: %d %s", code, b)
	}
	if m.Minimum() != "1.3.0" {
		t.Fatalf("service minimum: %q", m.Minimum())
	}
	if o := m.Offer("dev-c", "pupils", "1.0.0", "linux", "amd64"); o != nil {
		t.Errorf("a rollout below the minimum is still offered: %+v", o)
	}
	if code, b := c.do("POST", "/api/v1/releases/rollout", map[string]any{"version": "1.2.0", "group": "pilot"}); code != 400 || !strings.Contains(string(b), "below the minimum") {
		t.Errorf("rollout below the minimum: %d %s", code, b)
	}
	if code, b := c.do("POST", "/api/v1/releases/rollback", map[string]any{"group": "staff"}); code != 409 || !strings.Contains(string(b), "below the minimum") {
		t.Errorf("rollback below the minimum: %d %s", code, b)
	}
	if ro, _ := m.Rollout("staff"); ro.Version != "1.3.0" {
		t.Errorf("a refused rollback changed staff: %+v", ro)
	}
	// pilot had no rollout before 1.3.0: rolling back clears it.
	if code, b := c.do("POST", "/api/v1/releases/rollback", map[string]any{"group": "pilot"}); code != 200 {
		t.Errorf("pilot rollback: %d %s", code, b)
	}
	if _, ok := m.Rollout("pilot"); ok {
		t.Error("pilot still has a rollout after rolling back its first")
	}
	if l := e.accessActions("release-rollback"); len(l) != 2 || l[1].Detail != "group pilot back to no rollout (devices keep what they run)" {
		t.Errorf("rollback access log: %+v", l)
	}
	if code, _ := c.do("POST", "/api/v1/releases/minimum", map[string]any{"version": "latest"}); code != 400 {
		t.Errorf("minimum that is not a version: %d, want 400", code)
	}
	if l := e.accessActions("release-minimum"); len(l) != 1 || l[0].Who != "tech" || l[0].Detail != "minimum 1.3.0" {
		t.Errorf("minimum access log: %+v", l)
	}
	if code := c.getJSON("/api/v1/releases", &list); code != 200 || list.Minimum != "1.3.0" || list.Rollouts["pupils"].Version != "1.2.0" || len(e.accessActions("release-rollout")) != 5 {
		t.Errorf("releases after minimum: %d %+v", code, list)
	}
}

func TestReleasesPublishSignsWithTheCollectorsKey(t *testing.T) {
	e := newEnv(t)
	e.user("admin", RoleAdmin, false, "")
	m, data, _ := releaseEnv(t, e)
	c := e.login("admin")
	upload := func(query string, body []byte) (int, []byte) {
		t.Helper()
		req, _ := http.NewRequest("POST", e.http.URL+"/api/v1/releases?"+query, bytes.NewReader(body))
		req.Header.Set("X-CSRF-Token", c.csrf)
		req.Header.Set("Content-Type", "application/octet-stream")
		r, err := c.hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer r.Body.Close()
		b, _ := io.ReadAll(r.Body)
		return r.StatusCode, b
	}
	bin := []byte("a new agent build")
	code, b := upload("version=2.0.0&os=windows&arch=arm64", bin)
	if code != 201 {
		t.Fatalf("publish: %d %s", code, b)
	}
	var man releases.Manifest
	json.Unmarshal(b, &man)
	if err := release.Verify(m.PublicKey(), man.Signature, man.SHA256, "2.0.0", "windows", "arm64"); err != nil {
		t.Fatalf("published release's signature: %v", err)
	}
	if man.Size != int64(len(bin)) {
		t.Errorf("size %d, want %d", man.Size, len(bin))
	}
	// What is served to an agent is the uploaded bytes.
	if _, err := m.StartRollout("pilot", "2.0.0", 100); err != nil {
		t.Fatal(err)
	}
	o := m.Offer("dev-x", "pilot", "1.0.0", "windows", "arm64")
	if o == nil || o.Sha256 != man.SHA256 {
		t.Fatalf("offer of the published release: %+v", o)
	}
	if l := e.accessActions("release-publish"); len(l) != 1 || l[0].Who != "admin" || !strings.Contains(l[0].Detail, man.SHA256) {
		t.Errorf("publish access log: %+v", l)
	}

	if code, _ := upload("version=2.0.0&os=windows&arch=arm64", bin); code != 409 {
		t.Errorf("publishing a version twice: %d, want 409", code)
	}
	if code, _ := upload("version=2.0.1&os=plan9&arch=amd64", bin); code != 400 {
		t.Errorf("unknown OS: %d, want 400", code)
	}
	if code, _ := upload("version=2.0.1&os=linux", nil); code != 400 {
		t.Errorf("empty binary: %d, want 400", code)
	}

	// The key kept offline: the console cannot sign, and says so.
	if err := os.Remove(releases.PrivateKeyPath(data)); err != nil {
		t.Fatal(err)
	}
	var list releasesJSON
	if c.getJSON("/api/v1/releases", &list); list.Publish {
		t.Error("releases says the console can publish without the key")
	}
	if code, b := upload("version=2.0.2&os=linux", bin); code != 409 || !strings.Contains(string(b), "release add --key") {
		t.Errorf("publish with the key offline: %d %s", code, b)
	}
	if l := e.accessActions("release-publish"); len(l) != 1 {
		t.Errorf("refused publishes were logged: %+v", l)
	}
}

// TestReleasesNotForOtherRoles: the DSL and the rest get 403 and no data
// (the matrix covers each route; this checks the bodies name no release).
func TestReleasesNotForOtherRoles(t *testing.T) {
	e := newEnv(t)
	e.user("dsl", RoleDSL, false, "")
	e.user("head", RoleHeadteacher, false, "")
	releaseEnv(t, e, "1.2.0")
	for _, u := range []string{"dsl", "head"} {
		c := e.login(u)
		for _, p := range []string{"/api/v1/releases", "/api/v1/releases/status"} {
			code, b := c.do("GET", p, nil)
			if code != 403 || strings.Contains(string(b), "1.2.0") {
				t.Errorf("%s GET %s: %d %s", u, p, code, b)
			}
		}
		if code, _ := c.do("POST", "/api/v1/releases/minimum", map[string]any{"version": "1.2.0"}); code != 403 {
			t.Errorf("%s set minimum: %d", u, code)
		}
	}
	if len(e.accessActions("release-minimum")) != 0 {
		t.Error("a refused change was logged")
	}
}
