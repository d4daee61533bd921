package antivirus

import (
	"archive/tar"
	"bytes"
	"compress/gzip"
	"context"
	"crypto/md5"
	"encoding/hex"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"

	"github.com/vigil-safeguarding/vigil/internal/testutil"
)

// Tests against the real ClamAV (Debian packages clamav, clamav-daemon):
// sigtool builds a versioned database, clamd loads it and answers on its
// socket, and the check polls through its real Linux probe.

const clamdBin = "/usr/sbin/clamd"

// needClamAV skips when the ClamAV binaries are missing on a developer
// machine, and fails in CI (CI set), where they must be installed.
func needClamAV(t *testing.T) {
	t.Helper()
	for _, bin := range []string{clamdBin, "sigtool"} {
		if _, err := exec.LookPath(bin); err != nil {
			if os.Getenv("CI") == "" {
				t.Skipf("%s not installed (apt-get install clamav clamav-daemon): %v", bin, err)
			}
			t.Fatalf("%s not installed in CI (apt-get install clamav clamav-daemon): %v", bin, err)
		}
	}
}

// shortTempDir: Unix socket paths are limited to 108 bytes, and
// t.TempDir() names can be long.
func shortTempDir(t *testing.T) string {
	t.Helper()
	d, err := os.MkdirTemp("", "vigil-av-")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(d) })
	return d
}

// buildDB builds dbDir/daily.cud with sigtool (one body signature,
// version), then, if built is not zero, restamps it as built at that time.
func buildDB(t *testing.T, dbDir string, version int, built time.Time) string {
	t.Helper()
	work := filepath.Join(shortTempDir(t), "build")
	empty := filepath.Join(filepath.Dir(work), "empty")
	for _, d := range []string{work, empty, dbDir} {
		if err := os.MkdirAll(d, 0o755); err != nil {
			t.Fatal(err)
		}
	}
	// sigtool --build wants a COPYING file and the signature files in the
	// working directory.
	if err := os.WriteFile(filepath.Join(work, "COPYING"), []byte("test database for Vigil\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(work, "daily.ndb"), []byte("Vigil.Test.Signature:0:*:"+hex.EncodeToString([]byte("VIGIL-TEST-SIGNATURE"))+"\n"), 0o644); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, "sigtool", "--build=daily.cvd", "--unsigned", "--cvd-version="+strconv.Itoa(version), "--datadir="+empty)
	cmd.Dir = work
	cmd.Stdin = strings.NewReader("builder\n")
	cmd.Env = append(os.Environ(), "HOME="+work)
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("sigtool --build: %v\n%s", err, out)
	}
	data, err := os.ReadFile(filepath.Join(work, "daily.cvd"))
	if err != nil {
		t.Fatalf("sigtool built no daily.cvd: %v", err)
	}
	if !built.IsZero() {
		data = restamp(t, data, built)
	}
	// Unsigned containers load as .cud; clamd rejects an unsigned .cvd.
	dst := filepath.Join(dbDir, "daily.cud")
	if err := os.WriteFile(dst, data, 0o644); err != nil {
		t.Fatal(err)
	}
	return dst
}

// restamp rewrites a database's build time. sigtool always stamps the
// current time, and clamd checks that the header's version, signature
// count, level and STIME equal the copy of the header in daily.info inside
// the archive ("cli_cvdload: Corrupted CVD header" otherwise), so both are
// rewritten, the archive is re-packed and the header's MD5 (of the
// archive) recomputed. Field widths are unchanged and the header stays
// space-padded to 512 bytes.
func restamp(t *testing.T, cvd []byte, built time.Time) []byte {
	t.Helper()
	date := built.UTC().Format("02 Jan 2006 15-04 -0700")
	stime := strconv.FormatInt(built.Unix(), 10)
	fix := func(line string) string {
		f := strings.Split(line, ":")
		if len(f) < 9 {
			t.Fatalf("header %q has %d fields", line, len(f))
		}
		f[1], f[8] = date, stime
		return strings.Join(f, ":")
	}
	zr, err := gzip.NewReader(bytes.NewReader(cvd[cvdHeaderSize:]))
	if err != nil {
		t.Fatal(err)
	}
	tr := tar.NewReader(zr)
	var archive bytes.Buffer
	zw := gzip.NewWriter(&archive)
	tw := tar.NewWriter(zw)
	for {
		h, err := tr.Next()
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
		body, err := io.ReadAll(tr)
		if err != nil {
			t.Fatal(err)
		}
		if h.Name == "daily.info" {
			first, rest, _ := strings.Cut(string(body), "\n")
			body = []byte(fix(first) + "\n" + rest)
			h.Size = int64(len(body))
		}
		if err := tw.WriteHeader(h); err != nil {
			t.Fatal(err)
		}
		if _, err := tw.Write(body); err != nil {
			t.Fatal(err)
		}
	}
	if err := tw.Close(); err != nil {
		t.Fatal(err)
	}
	if err := zw.Close(); err != nil {
		t.Fatal(err)
	}
	f := strings.Split(fix(strings.TrimRight(string(cvd[:cvdHeaderSize]), " ")), ":")
	sum := md5.Sum(archive.Bytes())
	f[5] = hex.EncodeToString(sum[:])
	hdr := strings.Join(f, ":")
	if len(hdr) > cvdHeaderSize {
		t.Fatalf("header too long: %q", hdr)
	}
	return append([]byte(hdr+strings.Repeat(" ", cvdHeaderSize-len(hdr))), archive.Bytes()...)
}

type clamd struct {
	socket string
	cmd    *exec.Cmd
	done   chan struct{}
	out    *syncBuffer
	once   sync.Once
}

type syncBuffer = testutil.SyncBuffer

// startClamd runs clamd in the foreground on dbDir with a socket of its
// own and waits (at most 20 s) until it answers VERSION.
func startClamd(t *testing.T, dbDir string) *clamd {
	t.Helper()
	dir := shortTempDir(t)
	sock := filepath.Join(dir, "clamd.sock")
	conf := filepath.Join(dir, "clamd.conf")
	if err := os.WriteFile(conf, []byte(fmt.Sprintf(
		"LocalSocket %s\nDatabaseDirectory %s\nForeground yes\nTemporaryDirectory %s\nLogTime no\n", sock, dbDir, dir)), 0o644); err != nil {
		t.Fatal(err)
	}
	c := &clamd{socket: sock, done: make(chan struct{}), out: &syncBuffer{}}
	c.cmd = exec.Command(clamdBin, "-c", conf)
	c.cmd.Stdout, c.cmd.Stderr = c.out, c.out
	if err := c.cmd.Start(); err != nil {
		t.Fatalf("start clamd: %v", err)
	}
	go func() { c.cmd.Wait(); close(c.done) }()
	t.Cleanup(func() { c.stop(t) })
	deadline := time.Now().Add(20 * time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		_, err := queryClamd(ctx, sock)
		cancel()
		if err == nil {
			return c
		}
		select {
		case <-c.done:
			t.Fatalf("clamd exited before answering: %v\n%s", c.cmd.ProcessState, c.out.String())
		case <-time.After(50 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("clamd not answering on %s after 20s: %v\n%s", sock, err, c.out.String())
		}
	}
}

// stop ends clamd (SIGTERM, then SIGKILL after 10 s) and waits for it.
func (c *clamd) stop(t *testing.T) {
	c.once.Do(func() {
		c.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-c.done:
		case <-time.After(10 * time.Second):
			c.cmd.Process.Kill()
			<-c.done
		}
	})
}

// pollRule runs Check.Poll (the real Linux probe) on a rule with params
// src and returns the one observation it must emit.
func pollRule(t *testing.T, src string) checks.Observation {
	t.Helper()
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	params := doc.Content[0]
	if err := (Check{}).ValidateParams(params); err != nil {
		t.Fatalf("params: %v", err)
	}
	rule := &rules.Rule{ID: "antivirus-current", Version: 1, Check: "antivirus", Severity: rules.High, Category: "compliance", Enabled: true, Params: params}
	var got []checks.Observation
	emit := func(ctx context.Context, r *rules.Rule, obs ...checks.Observation) (uint64, uint64, error) {
		if r != rule {
			t.Errorf("emit for rule %v, want %v", r, rule)
		}
		got = append(got, obs...)
		return 1, uint64(len(obs)), nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
	defer cancel()
	if err := (Check{}).Poll(ctx, rule, emit); err != nil {
		t.Fatalf("Poll: %v", err)
	}
	if len(got) != 1 {
		t.Fatalf("Poll emitted %d observations, want 1: %+v", len(got), got)
	}
	o := got[0]
	if o.Key != "" {
		t.Errorf("Key %q, want the device as a whole", o.Key)
	}
	checkDetails(t, o)
	return o
}

func clamParams(c, dbDir, extra string) string {
	sock := "/nonexistent/clamd.sock"
	if c != "" {
		sock = c
	}
	return fmt.Sprintf("clamd_socket: %s\nclamav_db_dir: %s\nproducts: [ClamAV]\n%s", sock, dbDir, extra)
}

func clamProduct(t *testing.T, o checks.Observation) map[string]any {
	t.Helper()
	for _, p := range o.Details["products"].([]any) {
		if m := p.(map[string]any); m["name"] == "ClamAV" {
			return m
		}
	}
	t.Fatalf("no ClamAV product in details: %v", o.Details)
	return nil
}

// 1. clamd running on a freshly built database passes; the details carry
// the database version clamd loaded.
func TestClamdFreshDatabasePasses(t *testing.T) {
	needClamAV(t)
	dbDir := filepath.Join(shortTempDir(t), "db")
	buildDB(t, dbDir, 27999, time.Time{})
	c := startClamd(t, dbDir)

	cv, err := queryClamd(context.Background(), c.socket)
	if err != nil || cv.DBVersion != 27999 || !strings.HasPrefix(cv.Engine, "1.") || time.Since(cv.DBTime) > time.Hour {
		t.Fatalf("clamd VERSION: %+v, %v", cv, err)
	}

	o := pollRule(t, clamParams(c.socket, dbDir, "max_signature_age: 3d\n"))
	if o.Status != "pass" {
		t.Fatalf("status %q (%s), want pass", o.Status, o.Message)
	}
	p := clamProduct(t, o)
	if p["signature_version"] != "27999" || p["source"] != "clamd" || p["running"] != true || p["version"] != cv.Engine {
		t.Errorf("ClamAV details: %v", p)
	}
	if age := p["signature_age_hours"].(float64); age < 0 || age > 1 {
		t.Errorf("signature_age_hours %v, want ~0", age)
	}
	if !strings.Contains(o.Message, "ClamAV") || !strings.Contains(o.Message, "27999") {
		t.Errorf("message %q", o.Message)
	}
	t.Logf("pass: %s", o.Message)
}

// 2. A database built 10 days ago fails a 3-day limit, and the message
// names the age. clamd itself loads the restamped database (and reports
// its date), so the age is the one clamd has in memory.
func TestClamdOldDatabaseFails(t *testing.T) {
	needClamAV(t)
	dbDir := filepath.Join(shortTempDir(t), "db")
	built := time.Now().Add(-10*24*time.Hour - time.Hour).Truncate(time.Minute)
	path := buildDB(t, dbDir, 27999, built)
	h, err := readClamDB(dbDir)
	if err != nil || h.Path != path || h.Version != 27999 || !h.Built.Equal(built) {
		t.Fatalf("restamped header: %+v, %v (want built %v)", h, err, built)
	}
	c := startClamd(t, dbDir)
	cv, err := queryClamd(context.Background(), c.socket)
	if err != nil || cv.DBVersion != 27999 || !cv.DBTime.Equal(built) {
		t.Fatalf("clamd did not load the restamped database: %+v, %v", cv, err)
	}

	o := pollRule(t, clamParams(c.socket, dbDir, "max_signature_age: 3d\n"))
	if o.Status != "fail" {
		t.Fatalf("status %q (%s), want fail", o.Status, o.Message)
	}
	if want := "ClamAV signatures are 10 days old (limit 3d)"; o.Message != want {
		t.Errorf("message %q, want %q", o.Message, want)
	}
	if p := clamProduct(t, o); p["signature_version"] != "27999" || p["running"] != true || p["signature_age_hours"].(float64) < 240 {
		t.Errorf("ClamAV details: %v", p)
	}

	// The same database passes a 14-day limit.
	if o := pollRule(t, clamParams(c.socket, dbDir, "max_signature_age: 14d\n")); o.Status != "pass" {
		t.Errorf("14d limit: %s %s", o.Status, o.Message)
	}
}

// 3. clamd stopped: the database is still on disk (ClamAV is installed)
// but protection is not running, so the rule fails; with
// require_realtime: false a current database alone passes.
func TestClamdStoppedFails(t *testing.T) {
	needClamAV(t)
	dbDir := filepath.Join(shortTempDir(t), "db")
	buildDB(t, dbDir, 28000, time.Time{})
	c := startClamd(t, dbDir)
	params := clamParams(c.socket, dbDir, "")
	if o := pollRule(t, params); o.Status != "pass" {
		t.Fatalf("running: %s %s", o.Status, o.Message)
	}
	c.stop(t)

	o := pollRule(t, params)
	if o.Status != "fail" {
		t.Fatalf("stopped: status %q (%s), want fail", o.Status, o.Message)
	}
	if !strings.HasPrefix(o.Message, "ClamAV protection is not running (clamd not answering on "+c.socket) {
		t.Errorf("message %q", o.Message)
	}
	p := clamProduct(t, o)
	if p["running"] != false || p["source"] != "clamav-db" || p["signature_version"] != "28000" {
		t.Errorf("ClamAV details: %v", p)
	}
	t.Logf("stopped: %s", o.Message)

	if o := pollRule(t, clamParams(c.socket, dbDir, "require_realtime: false\n")); o.Status != "pass" || !strings.Contains(o.Message, "ClamAV is installed") {
		t.Errorf("require_realtime false: %s %s", o.Status, o.Message)
	}
}

// Neither clamd nor a database: no product.
func TestNoClamAVNoProduct(t *testing.T) {
	o := pollRule(t, clamParams("", shortTempDir(t), ""))
	if o.Status != "fail" || !strings.HasPrefix(o.Message, "no accepted antivirus product found") && o.Message != "no antivirus product found" {
		t.Errorf("%s %s", o.Status, o.Message)
	}
}

// A daemon recognised by its process name (a real process named
// wdavdaemon, Microsoft Defender for Endpoint's daemon) is found through
// gopsutil's process list.
func TestProcessNameDetection(t *testing.T) {
	sleep, err := exec.LookPath("sleep")
	if err != nil {
		t.Skip("no sleep binary")
	}
	dir := shortTempDir(t)
	fake := filepath.Join(dir, "wdavdaemon")
	src, err := os.ReadFile(sleep)
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(fake, src, 0o755); err != nil {
		t.Fatal(err)
	}
	cmd := exec.Command(fake, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })

	params := "clamd_socket: /nonexistent/clamd.sock\nclamav_db_dir: " + dir + "\nproducts: [Defender]\n"
	o := pollRule(t, params)
	if o.Status != "pass" || o.Message != "Microsoft Defender for Endpoint is running (signature age not reported)" {
		t.Errorf("%s %q", o.Status, o.Message)
	}
	o = pollRule(t, params+"allow_unknown_signature_age: false\n")
	if o.Status != "fail" || o.Message != "Microsoft Defender for Endpoint does not report the age of its signatures" {
		t.Errorf("strict: %s %q", o.Status, o.Message)
	}
	cmd.Process.Kill()
	cmd.Wait()
	if o := pollRule(t, params); o.Status != "fail" {
		t.Errorf("after kill: %s %q", o.Status, o.Message)
	}
}

// the real process lister sees this test binary.
func TestProcessNames(t *testing.T) {
	names, err := processNames(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	self := filepath.Base(os.Args[0])
	if len(self) > linuxCommLen {
		self = self[:linuxCommLen]
	}
	found := false
	for _, n := range names {
		found = found || strings.HasPrefix(n, self)
	}
	if !found {
		t.Errorf("own process %q not in %d names", self, len(names))
	}
}
