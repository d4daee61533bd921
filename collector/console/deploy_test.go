package console

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"errors"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/enroll"
	"github.com/vigil-safeguarding/vigil/collector/packaging"
	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
	"github.com/vigil-safeguarding/vigil/internal/identity"
)

var (
	agentOnce sync.Once
	agentDir  string
	agentErr  error
)

// buildAgent builds the real vigil-agent for linux/amd64 once, laid out
// as `make cross` lays out dist/.
func buildAgent(t *testing.T) string {
	t.Helper()
	agentOnce.Do(func() {
		dir, err := os.MkdirTemp("", "vigil-console-agent-")
		if err != nil {
			agentErr = err
			return
		}
		agentDir = dir
		cmd := exec.Command("go", "build", "-o", filepath.Join(dir, "linux-amd64", "vigil-agent"), "../../agent/cmd/vigil-agent")
		cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
		if out, err := cmd.CombinedOutput(); err != nil {
			agentErr = errors.New(string(out))
		}
	})
	if agentErr != nil {
		t.Fatalf("build vigil-agent: %v", agentErr)
	}
	return agentDir
}

// deployEnv is a console with the Deploy API over the real token service.
func deployEnv(t *testing.T, agentDir, defaultCollector string) (*env, *pki.Authority) {
	e := newEnv(t)
	ca, err := pki.LoadOrCreate(filepath.Join(e.dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	e.srv.deploy = &DeployConfig{Tokens: &tokens.Service{Store: e.st, CAFingerprint: ca.Fingerprint()},
		AgentDir: agentDir, DefaultCollector: defaultCollector}
	for _, u := range [][2]string{{"tech", RoleTechnician}, {"root", RoleAdmin}, {"dsl", RoleDSL}, {"head", RoleHeadteacher}, {"gov", RoleGovernor}} {
		e.user(u[0], u[1], u[0] == "gov", "")
	}
	return e, ca
}

// debFile returns one file's contents from a .deb (ar archive holding
// data.tar.gz), read without dpkg so the test holds everywhere.
func debFile(t *testing.T, deb []byte, name string) []byte {
	t.Helper()
	if !bytes.HasPrefix(deb, []byte("!<arch>\n")) {
		t.Fatalf("not an ar archive: %q", deb[:min(16, len(deb))])
	}
	for off := 8; off+60 <= len(deb); {
		hdr := deb[off : off+60]
		member := strings.TrimRight(strings.TrimSpace(string(hdr[:16])), "/")
		size, err := strconv.Atoi(strings.TrimSpace(string(hdr[48:58])))
		if err != nil || off+60+size > len(deb) {
			t.Fatalf("bad ar header %q", hdr)
		}
		body := deb[off+60 : off+60+size]
		off += 60 + size + size%2
		if member != "data.tar.gz" {
			continue
		}
		zr, err := gzip.NewReader(bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		tr := tar.NewReader(zr)
		for {
			h, err := tr.Next()
			if err != nil {
				t.Fatalf("%s not in data.tar.gz: %v", name, err)
			}
			if strings.TrimPrefix(h.Name, ".") == name {
				b, _ := io.ReadAll(tr)
				return b
			}
		}
	}
	t.Fatalf("no data.tar.gz in the deb")
	return nil
}

func TestDeployDownloadDebAndRevoke(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("builds a linux agent with the host toolchain")
	}
	e, ca := deployEnv(t, buildAgent(t), "vigil.school.lan:7443")
	tech := e.login("tech")

	resp := tech.req("POST", "/api/v1/packages", map[string]string{"group": "pupils", "format": "deb", "arch": "amd64"}, nil)
	deb, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("download: %d %s", resp.StatusCode, deb)
	}
	if !bytes.HasPrefix(deb, []byte("!<arch>\n")) {
		t.Fatalf("not a deb: %q", deb[:min(32, len(deb))])
	}
	cd := resp.Header.Get("Content-Disposition")
	if !strings.HasPrefix(cd, `attachment; filename="vigil-agent-pupils_`) || !strings.HasSuffix(cd, `_amd64.deb"`) {
		t.Errorf("Content-Disposition %q", cd)
	}
	tokID := resp.Header.Get("X-Vigil-Token-Id")

	// The package carries this group's new token, pinned to this CA.
	conf := debFile(t, deb, packaging.LinuxEnrollConfig)
	cf := filepath.Join(t.TempDir(), "enroll.conf")
	os.WriteFile(cf, conf, 0o600)
	bs, err := enroll.LoadBootstrap(cf)
	if err != nil {
		t.Fatalf("enroll.conf in the package: %v\n%s", err, conf)
	}
	tok, err := identity.ParseToken(bs.Token)
	if err != nil {
		t.Fatal(err)
	}
	if bs.Collector != "vigil.school.lan:7443" || bs.Group != "pupils" || tok.ID != tokID || tok.CAFingerprint != ca.Fingerprint() {
		t.Errorf("package config %+v (token %s), want collector vigil.school.lan:7443, group pupils, token %s, CA %s", bs, tok.ID, tokID, ca.Fingerprint())
	}
	if _, err := exec.LookPath("dpkg-deb"); err == nil {
		p := filepath.Join(t.TempDir(), "p.deb")
		os.WriteFile(p, deb, 0o600)
		if out, err := exec.Command("dpkg-deb", "-I", p).CombinedOutput(); err != nil || !strings.Contains(string(out), "Package: vigil-agent") {
			t.Errorf("dpkg-deb -I: %v\n%s", err, out)
		}
	} else {
		t.Log("dpkg-deb not installed: package checked with the Go ar/tar reader only")
	}

	// Listed for the technician, without the secret.
	code, body := tech.do("GET", "/api/v1/tokens", nil)
	if code != 200 || !strings.Contains(string(body), `"id":"`+tokID+`"`) || !strings.Contains(string(body), `"uses_left":2000`) {
		t.Fatalf("token list: %d %s", code, body)
	}
	if strings.Contains(string(body), bs.Token) || strings.Contains(string(body), "secret") {
		t.Errorf("token list shows the secret: %s", body)
	}

	// Usable before revocation (consume one use as an enrollment would).
	hash := identity.SecretHash(tok.Secret)
	if _, err := e.st.UseToken(tok.ID, hash, time.Now()); err != nil {
		t.Fatalf("fresh package token refused: %v", err)
	}

	// Revoke needs a reason and the CSRF header.
	if code, body := tech.do("POST", "/api/v1/tokens/"+tokID+"/revoke", map[string]string{}); code != 400 {
		t.Errorf("revoke without reason: %d %s", code, body)
	}
	noCSRF := tech.req("POST", "/api/v1/tokens/"+tokID+"/revoke", map[string]string{"reason": "x"}, map[string]string{"X-CSRF-Token": "wrong"})
	noCSRF.Body.Close()
	if noCSRF.StatusCode != 403 {
		t.Errorf("revoke with a wrong CSRF token: %d", noCSRF.StatusCode)
	}
	if code, body := tech.do("POST", "/api/v1/tokens/"+tokID+"/revoke", map[string]string{"reason": "USB stick lost"}); code != 200 ||
		!strings.Contains(string(body), `"state":"revoked"`) {
		t.Fatalf("revoke: %d %s", code, body)
	}
	if _, err := e.st.UseToken(tok.ID, hash, time.Now()); err == nil {
		t.Fatal("enrollment with a revoked package token accepted")
	}
	if code, _ := tech.do("POST", "/api/v1/tokens/nope/revoke", map[string]string{"reason": "x"}); code != 404 {
		t.Errorf("revoke unknown token: %d", code)
	}

	var dl, rv *store.AccessEntry
	for _, a := range e.accessLog() {
		a := a
		switch a.Action {
		case "download-package":
			dl = &a
		case "revoke-token":
			rv = &a
		}
	}
	if dl == nil || dl.Who != "tech" || !strings.Contains(dl.Detail, "group pupils") || !strings.Contains(dl.Detail, "deb amd64") || !strings.Contains(dl.Detail, tokID) {
		t.Errorf("download access log entry: %+v", dl)
	}
	if rv == nil || rv.Who != "tech" || rv.Reason != "USB stick lost" || !strings.Contains(rv.Detail, tokID) {
		t.Errorf("revoke access log entry: %+v", rv)
	}
}

func TestDeployRefusesOtherRoles(t *testing.T) {
	e, _ := deployEnv(t, t.TempDir(), "vigil.school.lan:7443")
	// A real token exists, so a leak would show.
	tok, err := e.srv.deploy.Tokens.CreateIn(t.Context(), "", "pupils", time.Hour, 5)
	if err != nil {
		t.Fatal(err)
	}
	for _, who := range []string{"dsl", "head", "gov"} {
		c := e.login(who)
		for _, r := range []struct{ method, path string }{
			{"GET", "/api/v1/deploy"}, {"GET", "/api/v1/tokens"},
			{"POST", "/api/v1/tokens/" + tok.ID + "/revoke"}, {"POST", "/api/v1/packages"},
		} {
			var body any
			if r.method == "POST" {
				body = map[string]string{"reason": "x", "group": "pupils", "format": "deb"}
			}
			code, b := c.do(r.method, r.path, body)
			if code != 403 || strings.Contains(string(b), tok.ID) {
				t.Errorf("%s %s %s: %d %s", who, r.method, r.path, code, b)
			}
		}
	}
	list, _ := e.srv.deploy.Tokens.List(t.Context())
	if len(list) != 1 || list[0].Revoked {
		t.Errorf("refused requests changed tokens: %+v", list)
	}
	// The admin may (it runs the collector).
	if code, b := e.login("root").do("GET", "/api/v1/tokens", nil); code != 200 || !strings.Contains(string(b), tok.ID) {
		t.Errorf("admin token list: %d %s", code, b)
	}
}

func TestDeployMissingAgentAndAddress(t *testing.T) {
	e, _ := deployEnv(t, t.TempDir(), "")
	tech := e.login("tech")
	code, b := tech.do("POST", "/api/v1/packages", map[string]string{"group": "pupils", "format": "msi", "collector_address": "vigil.school.lan:7443"})
	if code != http.StatusFailedDependency || !strings.Contains(string(b), "windows-amd64") || !strings.Contains(string(b), "make cross") {
		t.Errorf("missing agent build: %d %s", code, b)
	}
	code, b = tech.do("POST", "/api/v1/packages", map[string]string{"group": "pupils", "format": "deb"})
	if code != 400 || !strings.Contains(string(b), "collector_address") {
		t.Errorf("no collector address known: %d %s", code, b)
	}
	for _, bad := range []map[string]string{
		{"group": "Year 7", "format": "deb", "collector_address": "a:1"},
		{"group": "pupils", "format": "zip", "collector_address": "a:1"},
		{"group": "pupils", "format": "deb", "arch": "386", "collector_address": "a:1"},
		{"group": "pupils", "format": "deb", "collector_address": "no-port"},
	} {
		if code, b := tech.do("POST", "/api/v1/packages", bad); code != 400 && code != http.StatusFailedDependency {
			t.Errorf("%v: %d %s", bad, code, b)
		}
	}
	// Nothing refused spent a token.
	if list, _ := e.srv.deploy.Tokens.List(t.Context()); len(list) != 0 {
		t.Errorf("refused downloads minted tokens: %+v", list)
	}
}

func TestSafeFileName(t *testing.T) {
	for in, want := range map[string]string{
		"vigil-agent-pupils_1.2.3_amd64.deb": "vigil-agent-pupils_1.2.3_amd64.deb",
		`a"b\r\n;c.msi`:                      "a_b_r_n_c.msi",
		"../x":                               "vigil-agent-package",
		"":                                   "vigil-agent-package",
	} {
		if got := safeFileName(in); got != want {
			t.Errorf("safeFileName(%q) = %q", in, got)
		}
	}
}
