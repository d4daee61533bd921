package e2e

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// Tests of the agent packages built by `vigil-collector package`, installed
// for real: the deb with dpkg inside a debootstrapped Debian root, the rpm
// inspected with rpm(8) and installed into a scratch root, the MSI with
// Wine's msiexec.

const versionVar = "github.com/vigil-safeguarding/vigil/internal/version.Version"

// buildAgent builds a release-like agent (static, no race detector: it must
// run inside the Debian root and under Wine) stamped with version.
func buildAgent(t *testing.T, goos, version string) string {
	t.Helper()
	return buildAgentArch(t, goos, "amd64", version)
}

func buildAgentArch(t *testing.T, goos, goarch, version string) string {
	t.Helper()
	name := "vigil-agent-" + goarch + "-" + version
	if goos == "windows" {
		name += ".exe"
	}
	out := filepath.Join(t.TempDir(), name)
	cmd := exec.Command("go", "build", "-ldflags", "-s -w -X "+versionVar+"="+version, "-o", out, "../agent/cmd/vigil-agent")
	cmd.Env = append(os.Environ(), "CGO_ENABLED=0", "GOOS="+goos, "GOARCH="+goarch)
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent %s/%s: %v\n%s", goos, version, err, b)
	}
	return out
}

var packagerOnce struct {
	sync.Once
	path string
	err  error
}

// buildPackage runs `vigil-collector package` and returns the file. It uses
// a collector binary built without the race detector: compressing a 16 MB
// agent under -race takes over a minute on a busy machine and tests
// nothing the race detector could find (the command is single-threaded).
func buildPackage(t *testing.T, c *collector, format, group, agentBin string, extra ...string) string {
	t.Helper()
	packagerOnce.Do(func() {
		packagerOnce.path = filepath.Join(binDir, "vigil-collector-norace")
		b, err := exec.Command("go", "build", "-o", packagerOnce.path, "../collector/cmd/vigil-collector").CombinedOutput()
		if err != nil {
			packagerOnce.err = fmt.Errorf("%v: %s", err, b)
		}
	})
	if packagerOnce.err != nil {
		t.Fatalf("build collector: %v", packagerOnce.err)
	}
	out := filepath.Join(t.TempDir(), "vigil-agent-"+group+"."+format)
	args := append([]string{"package", "--data", c.data, "--group", group, "--format", format,
		"--collector-address", c.grpc, "--agent-binary", agentBin, "--out", out}, extra...)
	mustSh(t, nil, packagerOnce.path, args...)
	return out
}

// verifyUnit lints a systemd unit offline. The only complaint allowed is
// that /usr/bin/vigil-agent does not exist on this (build) machine.
func verifyUnit(t *testing.T, unit string) {
	t.Helper()
	if _, err := exec.LookPath("systemd-analyze"); err != nil {
		t.Log("systemd-analyze not installed: unit not linted")
		return
	}
	out, _ := sh(t, nil, "systemd-analyze", "verify", unit)
	for _, line := range strings.Split(strings.TrimSpace(out), "\n") {
		if line != "" && !strings.Contains(line, "Command /usr/bin/vigil-agent is not executable") {
			t.Errorf("systemd-analyze verify %s: %s", unit, line)
		}
	}
}

func needTools(t *testing.T, tools ...string) {
	t.Helper()
	for _, tool := range tools {
		if _, err := exec.LookPath(tool); err != nil {
			t.Skipf("%s not installed (make deps installs it): %v", tool, err)
		}
	}
}

func needRoot(t *testing.T, why string) {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skipf("needs root: %s", why)
	}
}

// sh runs a command with a bound and returns its combined output.
func sh(t *testing.T, env []string, name string, args ...string) (string, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	if env != nil {
		cmd.Env = env
	}
	b, err := cmd.CombinedOutput()
	return string(b), err
}

func mustSh(t *testing.T, env []string, name string, args ...string) string {
	t.Helper()
	out, err := sh(t, env, name, args...)
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", name, strings.Join(args, " "), err, out)
	}
	return out
}

// logSize reports a package's size against the agent binary it carries.
func logSize(t *testing.T, pkg, bin string) {
	p, _ := os.Stat(pkg)
	b, _ := os.Stat(bin)
	t.Logf("BENCH size %s: %d bytes, agent binary %d bytes, ratio %.2f", filepath.Ext(pkg), p.Size(), b.Size(), float64(p.Size())/float64(b.Size()))
}

// debRoot gives a fresh minimal Debian bookworm root. debootstrap runs once
// (~30-80 s, ~200 MB, from the machine's configured mirror); the result is
// kept as .cache/debroot-bookworm.tar and unpacked for every test.
func debRoot(t *testing.T) string {
	t.Helper()
	needTools(t, "debootstrap", "tar", "chroot")
	cache, err := filepath.Abs("../.cache/debroot-bookworm.tar")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(cache); err != nil {
		if err := os.MkdirAll(filepath.Dir(cache), 0o755); err != nil {
			t.Fatal(err)
		}
		build := filepath.Join(t.TempDir(), "debootstrap")
		t.Logf("debootstrap --variant=minbase bookworm from %s (once; cached in %s)", debianMirror(), cache)
		mustSh(t, nil, "debootstrap", "--variant=minbase", "bookworm", build, debianMirror())
		mustSh(t, nil, "tar", "-C", build, "-cf", cache+".tmp", ".")
		if err := os.Rename(cache+".tmp", cache); err != nil {
			t.Fatal(err)
		}
	}
	root := filepath.Join(t.TempDir(), "root")
	if err := os.Mkdir(root, 0o755); err != nil {
		t.Fatal(err)
	}
	mustSh(t, nil, "tar", "-C", root, "-xf", cache)
	// start-stop-daemon and the agent need /proc. Registered after
	// t.TempDir, so it is unmounted before the root is deleted.
	mustSh(t, nil, "mount", "-t", "proc", "proc", filepath.Join(root, "proc"))
	t.Cleanup(func() {
		if out, err := sh(t, nil, "umount", "-l", filepath.Join(root, "proc")); err != nil {
			t.Errorf("umount proc: %v: %s", err, out)
		}
	})
	return root
}

// debianMirror is the first Debian mirror the machine's apt uses.
func debianMirror() string {
	files, _ := filepath.Glob("/etc/apt/sources.list.d/*")
	files = append([]string{"/etc/apt/sources.list"}, files...)
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n") {
			f := strings.Fields(line)
			switch {
			case len(f) >= 2 && f[0] == "URIs:" && !strings.Contains(f[1], "security"):
				return f[1]
			case len(f) >= 3 && f[0] == "deb" && !strings.Contains(line, "security"):
				if strings.HasPrefix(f[1], "[") {
					return f[2]
				}
				return f[1]
			}
		}
	}
	return "http://deb.debian.org/debian"
}

var chrootEnv = []string{"PATH=/usr/sbin:/usr/bin:/sbin:/bin", "LANG=C", "HOME=/root", "DEBIAN_FRONTEND=noninteractive"}

type wantFile struct {
	path  string
	mode  fs.FileMode
	isDir bool
}

func checkFiles(t *testing.T, root string, want []wantFile) {
	t.Helper()
	for _, w := range want {
		st, err := os.Lstat(filepath.Join(root, w.path))
		if err != nil {
			t.Errorf("%s: %v", w.path, err)
			continue
		}
		if st.IsDir() != w.isDir || st.Mode().Perm() != w.mode {
			t.Errorf("%s: mode %v, want %v (dir %v)", w.path, st.Mode(), w.mode, w.isDir)
		}
		if sys, ok := st.Sys().(*syscall.Stat_t); ok && (sys.Uid != 0 || sys.Gid != 0) {
			t.Errorf("%s: owner %d:%d, want root:root", w.path, sys.Uid, sys.Gid)
		}
	}
}

func readAgentConfig(t *testing.T, path string) (cfg struct {
	DeviceID  string `json:"device_id"`
	Group     string `json:"group"`
	Collector string `json:"collector"`
}) {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("agent config: %v", err)
	}
	if err := json.Unmarshal(b, &cfg); err != nil {
		t.Fatalf("agent config %s: %v", b, err)
	}
	return cfg
}

// pidAlive reports whether the pid in a pidfile names a live process.
func pidAlive(pidfile string) bool {
	b, err := os.ReadFile(pidfile)
	if err != nil {
		return false
	}
	var pid int
	if _, err := fmt.Sscan(string(b), &pid); err != nil || pid <= 0 {
		return false
	}
	return syscall.Kill(pid, 0) == nil
}

// TestDebInstallUpgradeRemovePurge installs the group's deb into a real
// Debian root: the maintainer scripts start the SysV service, which
// enrolls by itself from the baked configuration with the collector on
// loopback (the chroot shares the network namespace) and delivers a
// finding; an upgrade to a newer build keeps the device ID and findings
// spooled while the collector was down; remove stops the service and keeps
// the state; purge deletes it.
func TestDebInstallUpgradeRemovePurge(t *testing.T) {
	needRoot(t, "dpkg -i inside a chroot")
	needTools(t, "dpkg-deb")
	root := debRoot(t)
	// invoke-rc.d blocks service starts when no init system runs (as in any
	// chroot) unless policy-rc.d allows them; a booted system needs none.
	if err := os.WriteFile(filepath.Join(root, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	pidfile := filepath.Join(root, "run/vigil-agent.pid")
	t.Cleanup(func() {
		sh(t, chrootEnv, "chroot", root, "/etc/init.d/vigil-agent", "stop")
		if b, err := os.ReadFile(pidfile); err == nil {
			var pid int
			if fmt.Sscan(string(b), &pid); pid > 0 {
				syscall.Kill(pid, syscall.SIGKILL)
			}
		}
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(root, "var/log/vigil-agent.log"))
			t.Logf("--- agent log in the root ---\n%s", tail(string(b), 4000))
		}
	})

	c := newPkgCollector(t)
	// 1.0.0 without --version: the package takes the binary's own version.
	agent1 := buildAgent(t, "linux", "1.0.0")
	deb1 := buildPackage(t, c, "deb", "pupils", agent1)
	deb2 := buildPackage(t, c, "deb", "pupils", buildAgent(t, "linux", "1.0.1"), "--version", "1.0.1")
	info := mustSh(t, nil, "dpkg-deb", "-f", deb1, "Package", "Version", "Architecture")
	if !strings.Contains(info, "Version: 1.0.0") || !strings.Contains(info, "Package: vigil-agent") {
		t.Fatalf("deb control fields:\n%s", info)
	}
	for _, p := range []string{deb1, deb2} {
		b, _ := os.ReadFile(p)
		if err := os.WriteFile(filepath.Join(root, "tmp", filepath.Base(filepath.Dir(p))+".deb"), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	in1 := "/tmp/" + filepath.Base(filepath.Dir(deb1)) + ".deb"
	in2 := "/tmp/" + filepath.Base(filepath.Dir(deb2)) + ".deb"

	// Install: files, owners, modes; the service starts and enrolls.
	t0 := time.Now()
	out := mustSh(t, chrootEnv, "chroot", root, "dpkg", "-i", in1)
	dpkgTime := time.Since(t0)
	t.Logf("dpkg -i (%v):\n%s", dpkgTime.Round(time.Millisecond), out)
	if !strings.Contains(out, "will enroll at first start") {
		t.Errorf("postinst did not say how enrollment happens:\n%s", out)
	}
	checkFiles(t, root, []wantFile{
		{path: "usr/bin/vigil-agent", mode: 0o755},
		{path: "etc/vigil-agent", mode: 0o755, isDir: true},
		{path: "etc/vigil-agent/enroll.conf", mode: 0o600},
		{path: "lib/systemd/system/vigil-agent.service", mode: 0o644},
		{path: "etc/init.d/vigil-agent", mode: 0o755},
		{path: "etc/xdg/autostart/vigil-session.desktop", mode: 0o644},
		{path: "var/lib/vigil-agent", mode: 0o700, isDir: true},
	})
	conf, _ := os.ReadFile(filepath.Join(root, "etc/vigil-agent/enroll.conf"))
	if !strings.Contains(string(conf), `"collector": "`+c.grpc+`"`) || !strings.Contains(string(conf), `"token": "vgl1.`) ||
		!strings.Contains(string(conf), `"ca_fingerprint": "`) {
		t.Errorf("enroll.conf lacks collector, token or CA pin:\n%s", conf)
	}
	if links, _ := filepath.Glob(filepath.Join(root, "etc/rc2.d/S*vigil-agent")); len(links) != 1 {
		t.Errorf("update-rc.d did not enable the SysV service at runlevel 2: %v", links)
	}
	verifyUnit(t, filepath.Join(root, "lib/systemd/system/vigil-agent.service"))
	stateDir := filepath.Join(root, "var/lib/vigil-agent")
	waitFor(t, 90*time.Second, "the installed service to enroll", func() bool {
		_, err := os.Stat(filepath.Join(stateDir, "config.json"))
		return err == nil
	})
	cfg := readAgentConfig(t, filepath.Join(stateDir, "config.json"))
	if cfg.Group != "pupils" || cfg.Collector != c.grpc {
		t.Fatalf("enrolled as %+v", cfg)
	}
	enrolled := time.Since(t0)
	if !pidAlive(pidfile) {
		t.Fatal("the SysV service is not running after install")
	}
	// The installed agent, run from inside the root, delivers a finding.
	trigger := func(n int) {
		t.Helper()
		waitFor(t, 30*time.Second, "the installed agent's control socket", func() bool {
			_, err := sh(t, chrootEnv, "chroot", root, "/usr/bin/vigil-agent", "status")
			return err == nil
		})
		mustSh(t, chrootEnv, "chroot", root, "/usr/bin/vigil-agent", "trigger-test", "--count", fmt.Sprint(n))
	}
	trigger(1)
	waitFor(t, 60*time.Second, "the first finding from the installed agent", func() bool {
		return len(c.findings(cfg.DeviceID)) > 0
	})
	firstFinding := time.Since(t0)
	t.Logf("BENCH deb: dpkg -i %v, install-to-enrolled %v, install-to-first-finding %v (%.2fx dpkg -i)",
		dpkgTime.Round(time.Millisecond), enrolled.Round(time.Millisecond), firstFinding.Round(time.Millisecond),
		float64(firstFinding)/float64(dpkgTime))
	logSize(t, deb1, agent1)
	before := len(c.findings(cfg.DeviceID))

	// Collector down: findings spool on the device.
	if err := c.p.stop(); err != nil {
		t.Fatal(err)
	}
	trigger(3)
	spooled := func() int {
		out, err := sh(t, chrootEnv, "chroot", root, "/usr/bin/vigil-agent", "status")
		if err != nil {
			return -1
		}
		var st agentStatus
		if i := strings.Index(out, "{"); i >= 0 {
			json.Unmarshal([]byte(out[i:]), &st)
		}
		return st.Spool.Count
	}
	if n := spooled(); n < 3 {
		t.Fatalf("spool holds %d findings with the collector down, want >= 3", n)
	}

	// Upgrade in place to 1.0.1 (prerm stops the old agent, postinst
	// starts the new one), then a reinstall of the same version.
	out = mustSh(t, chrootEnv, "chroot", root, "dpkg", "-i", in2)
	t.Logf("dpkg -i (upgrade):\n%s", out)
	if !strings.Contains(out, "already enrolled") {
		t.Errorf("upgrade postinst did not keep the identity:\n%s", out)
	}
	if v := mustSh(t, chrootEnv, "chroot", root, "dpkg-query", "-W", "-f", "${Version}", "vigil-agent"); v != "1.0.1" {
		t.Errorf("installed version %q after upgrade", v)
	}
	// The upgraded service has just been started: wait for its control
	// socket rather than asking once.
	n := -1
	for deadline := time.Now().Add(60 * time.Second); time.Now().Before(deadline); time.Sleep(200 * time.Millisecond) {
		if n = spooled(); n >= 3 {
			break
		}
	}
	if n < 3 {
		t.Errorf("spool holds %d findings after the upgrade, want >= 3", n)
	}
	mustSh(t, chrootEnv, "chroot", root, "dpkg", "-i", in2)
	if got := readAgentConfig(t, filepath.Join(stateDir, "config.json")); got.DeviceID != cfg.DeviceID {
		t.Fatalf("device ID changed across upgrade/reinstall: %s -> %s", cfg.DeviceID, got.DeviceID)
	}
	startPatiently(c)
	waitFor(t, 90*time.Second, "the spooled findings to arrive after the upgrade", func() bool {
		return len(c.findings(cfg.DeviceID)) >= before+3
	})
	waitFor(t, 60*time.Second, "the device to report version 1.0.1", func() bool {
		for _, d := range c.devices() {
			if d.DeviceID == cfg.DeviceID && d.AgentVersion == "1.0.1" {
				return true
			}
		}
		return false
	})
	if n := len(c.devices()); n != 1 {
		t.Errorf("collector lists %d devices after install+upgrade+reinstall, want 1", n)
	}

	// Remove: service stopped, files gone, state kept.
	out = mustSh(t, chrootEnv, "chroot", root, "dpkg", "-r", "vigil-agent")
	t.Logf("dpkg -r:\n%s", out)
	if pidAlive(pidfile) {
		t.Error("the agent still runs after dpkg -r")
	}
	for _, gone := range []string{"usr/bin/vigil-agent", "etc/vigil-agent/enroll.conf", "lib/systemd/system/vigil-agent.service"} {
		if _, err := os.Stat(filepath.Join(root, gone)); err == nil {
			t.Errorf("%s still there after dpkg -r", gone)
		}
	}
	if _, err := os.Stat(filepath.Join(stateDir, "device.key")); err != nil {
		t.Errorf("dpkg -r removed the device identity: %v", err)
	}
	// Purge: state and configuration gone.
	out = mustSh(t, chrootEnv, "chroot", root, "dpkg", "--purge", "vigil-agent")
	t.Logf("dpkg --purge:\n%s", out)
	for _, gone := range []string{"var/lib/vigil-agent", "etc/vigil-agent", "etc/init.d/vigil-agent"} {
		if _, err := os.Stat(filepath.Join(root, gone)); err == nil {
			t.Errorf("%s still there after purge", gone)
		}
	}
	if links, _ := filepath.Glob(filepath.Join(root, "etc/rc*.d/*vigil-agent")); len(links) != 0 {
		t.Errorf("rc links left after purge: %v", links)
	}
	// Purging again is harmless (idempotent scripts).
	mustSh(t, chrootEnv, "chroot", root, "dpkg", "--purge", "vigil-agent")
}

// TestDebInstallCollectorUnreachable: installing while the collector is
// down is not a failure; the service keeps retrying and enrolls once the
// collector is back.
func TestDebInstallCollectorUnreachable(t *testing.T) {
	needRoot(t, "dpkg -i inside a chroot")
	root := debRoot(t)
	if err := os.WriteFile(filepath.Join(root, "usr/sbin/policy-rc.d"), []byte("#!/bin/sh\nexit 0\n"), 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		sh(t, chrootEnv, "chroot", root, "/etc/init.d/vigil-agent", "stop")
		if t.Failed() {
			b, _ := os.ReadFile(filepath.Join(root, "var/log/vigil-agent.log"))
			t.Logf("--- agent log in the root ---\n%s", tail(string(b), 4000))
		}
	})
	c := newPkgCollector(t)
	deb := buildPackage(t, c, "deb", "staff", buildAgent(t, "linux", "1.0.0"))
	b, _ := os.ReadFile(deb)
	os.WriteFile(filepath.Join(root, "tmp/x.deb"), b, 0o644)
	if err := c.p.stop(); err != nil {
		t.Fatal(err)
	}
	mustSh(t, chrootEnv, "chroot", root, "dpkg", "-i", "/tmp/x.deb")
	logPath := filepath.Join(root, "var/log/vigil-agent.log")
	waitFor(t, 60*time.Second, "the agent to log that the collector is unreachable", func() bool {
		b, _ := os.ReadFile(logPath)
		return bytes.Contains(b, []byte("collector not reachable yet"))
	})
	if !pidAlive(filepath.Join(root, "run/vigil-agent.pid")) {
		t.Fatal("the agent exited while the collector was unreachable")
	}
	startPatiently(c)
	waitFor(t, 120*time.Second, "enrollment once the collector is back", func() bool {
		for _, d := range c.devices() {
			if d.Group == "staff" && d.Connected {
				return true
			}
		}
		return false
	})
}

// TestRPMPackage checks the rpm's contents, modes and scripts with rpm(8),
// then installs, upgrades and erases it in a scratch root (the Debian root:
// rpm --root runs the scriptlets chrooted and needs a /bin/sh there). No
// systemd runs in the root, so the scriptlets take their no-systemd path;
// the unit itself is linted with systemd-analyze.
func TestRPMPackage(t *testing.T) {
	needTools(t, "rpm")
	home := t.TempDir()
	env := append(os.Environ(), "HOME="+home, "XDG_CONFIG_HOME="+home, "XDG_CACHE_HOME="+home, "TMPDIR="+home)
	c := newPkgCollector(t)
	agent1 := buildAgent(t, "linux", "1.0.0")
	rpm1 := buildPackage(t, c, "rpm", "pupils", agent1)
	logSize(t, rpm1, agent1)
	rpm2 := buildPackage(t, c, "rpm", "pupils", buildAgent(t, "linux", "1.0.1"), "--version", "1.0.1")

	if got := mustSh(t, env, "rpm", "-qp", "--qf", "%{NAME} %{VERSION}-%{RELEASE} %{ARCH}", rpm1); got != "vigil-agent 1.0.0-1 x86_64" {
		t.Errorf("rpm header: %q", got)
	}
	list := strings.Fields(mustSh(t, env, "rpm", "-qpl", rpm1))
	want := []string{"/etc/vigil-agent", "/etc/vigil-agent/enroll.conf", "/etc/xdg/autostart/vigil-session.desktop",
		"/usr/bin/vigil-agent", "/usr/lib/systemd/system/vigil-agent.service"}
	if strings.Join(list, " ") != strings.Join(want, " ") {
		t.Errorf("rpm -qpl:\n%s\nwant\n%s", strings.Join(list, "\n"), strings.Join(want, "\n"))
	}
	long := mustSh(t, env, "rpm", "-qplv", rpm1)
	for _, w := range []struct{ mode, path string }{
		{"-rwxr-xr-x", "/usr/bin/vigil-agent"}, {"-rw-------", "/etc/vigil-agent/enroll.conf"},
		{"-rw-r--r--", "/usr/lib/systemd/system/vigil-agent.service"}, {"drwxr-xr-x", "/etc/vigil-agent"},
	} {
		found := false
		for _, line := range strings.Split(long, "\n") {
			f := strings.Fields(line)
			if len(f) > 3 && f[len(f)-1] == w.path {
				found = f[0] == w.mode && f[2] == "root" && f[3] == "root"
			}
		}
		if !found {
			t.Errorf("rpm -qplv: %s not %s root root:\n%s", w.path, w.mode, long)
		}
	}
	scripts := mustSh(t, env, "rpm", "-qp", "--scripts", rpm1)
	for _, w := range []string{"postinstall scriptlet", "preuninstall scriptlet", "postuninstall scriptlet",
		`install -d -m 0700 -o root -g root "$STATE"`, "systemctl disable --now vigil-agent.service", "systemctl restart vigil-agent.service"} {
		if !strings.Contains(scripts, w) {
			t.Errorf("rpm scripts lack %q:\n%s", w, scripts)
		}
	}

	if os.Geteuid() != 0 {
		t.Skip("rpm --root into a scratch root needs root")
	}
	root := debRoot(t)
	for i, p := range []string{rpm1, rpm2} {
		b, _ := os.ReadFile(p)
		os.WriteFile(filepath.Join(root, fmt.Sprintf("tmp/%d.rpm", i+1)), b, 0o644)
	}
	out := mustSh(t, env, "rpm", "--root", root, "-i", "--nodeps", filepath.Join(root, "tmp/1.rpm"))
	if !strings.Contains(out, "will enroll at first start") {
		t.Errorf("%%post output:\n%s", out)
	}
	checkFiles(t, root, []wantFile{
		{path: "usr/bin/vigil-agent", mode: 0o755},
		{path: "etc/vigil-agent/enroll.conf", mode: 0o600},
		{path: "usr/lib/systemd/system/vigil-agent.service", mode: 0o644},
		{path: "var/lib/vigil-agent", mode: 0o700, isDir: true},
	})
	verifyUnit(t, filepath.Join(root, "usr/lib/systemd/system/vigil-agent.service"))
	// A device identity, as the service leaves after enrolling: the upgrade
	// and the erase must keep it.
	ident := filepath.Join(root, "var/lib/vigil-agent/config.json")
	os.WriteFile(ident, []byte(`{"device_id":"kept"}`), 0o600)
	out = mustSh(t, env, "rpm", "--root", root, "-U", "--nodeps", filepath.Join(root, "tmp/2.rpm"))
	if !strings.Contains(out, "already enrolled") {
		t.Errorf("upgrade %%post output:\n%s", out)
	}
	if v := mustSh(t, env, "rpm", "--root", root, "-q", "--qf", "%{VERSION}", "vigil-agent"); v != "1.0.1" {
		t.Errorf("installed version %q after rpm -U", v)
	}
	mustSh(t, env, "rpm", "--root", root, "-e", "vigil-agent")
	if _, err := os.Stat(filepath.Join(root, "usr/bin/vigil-agent")); err == nil {
		t.Error("binary left after rpm -e")
	}
	if b, err := os.ReadFile(ident); err != nil || string(b) != `{"device_id":"kept"}` {
		t.Errorf("rpm -e touched the device state: %q %v", b, err)
	}
}

// wineEnv is a private Wine prefix (HOME and XDG dirs inside it) with the
// ProcessPrng stub DLL that Go >= 1.24 Windows binaries need under Wine 8
// (see scripts/wine-test.sh).
type wineEnv struct {
	t      *testing.T
	prefix string
	env    []string
}

func newWine(t *testing.T) *wineEnv {
	t.Helper()
	needTools(t, "wine", "wineboot", "wineserver")
	cc := ""
	for _, c := range []string{"x86_64-w64-mingw32-gcc-posix", "x86_64-w64-mingw32-gcc"} {
		if _, err := exec.LookPath(c); err == nil {
			cc = c
			break
		}
	}
	if cc == "" {
		t.Skip("x86_64-w64-mingw32-gcc not installed (package gcc-mingw-w64-x86-64-posix)")
	}
	home := t.TempDir()
	w := &wineEnv{t: t, prefix: filepath.Join(home, "prefix")}
	w.env = []string{"PATH=" + os.Getenv("PATH"), "HOME=" + home, "WINEPREFIX=" + w.prefix, "WINEDEBUG=-all",
		"XDG_CONFIG_HOME=" + home + "/.config", "XDG_CACHE_HOME=" + home + "/.cache", "XDG_DATA_HOME=" + home + "/.local/share",
		"TMPDIR=" + home, "WINEDLLOVERRIDES=mscoree,mshtml="}
	src := filepath.Join(home, "stub.c")
	os.WriteFile(src, []byte(`#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buf, ULONG len);
BOOL WINAPI ProcessPrng(PBYTE p, SIZE_T n) {
	while (n > 0) { ULONG k = n > 0x40000000UL ? 0x40000000UL : (ULONG)n; if (!SystemFunction036(p, k)) return FALSE; p += k; n -= k; }
	return TRUE;
}
BOOL WINAPI DllMain(HINSTANCE i, DWORD r, LPVOID x) { return TRUE; }
`), 0o644)
	def := filepath.Join(home, "stub.def")
	os.WriteFile(def, []byte("LIBRARY bcryptprimitives.dll\nEXPORTS\n    ProcessPrng\n"), 0o644)
	dll := filepath.Join(home, "bcryptprimitives.dll")
	mustSh(t, nil, cc, "-shared", "-O2", "-s", "-static-libgcc", "-o", dll, src, def, "-ladvapi32")
	t.Cleanup(func() { sh(t, w.env, "wineserver", "-k") })
	mustSh(t, w.env, "wineboot", "-i")
	b, _ := os.ReadFile(dll)
	if err := os.WriteFile(filepath.Join(w.prefix, "drive_c/windows/system32/bcryptprimitives.dll"), b, 0o644); err != nil {
		t.Fatal(err)
	}
	return w
}

func (w *wineEnv) run(args ...string) (string, error) {
	w.t.Helper()
	out, err := sh(w.t, w.env, "wine", args...)
	return strings.ReplaceAll(out, "\r", ""), err
}

// regQuery returns name -> value under key, or nil if the key is absent.
func (w *wineEnv) regQuery(key string) map[string]string {
	w.t.Helper()
	out, err := w.run("reg", "query", key)
	if err != nil {
		return nil
	}
	vals := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		f := strings.Fields(line)
		if len(f) >= 3 && strings.HasPrefix(f[1], "REG_") {
			vals[f[0]] = strings.Join(f[2:], " ")
		}
	}
	return vals
}

// products lists the DisplayVersion of every installed "Vigil agent".
func (w *wineEnv) products() []string {
	w.t.Helper()
	const uninst = `HKLM\Software\Microsoft\Windows\CurrentVersion\Uninstall`
	out, _ := w.run("reg", "query", uninst)
	var vers []string
	for _, line := range strings.Split(out, "\n") {
		line = strings.TrimSpace(line)
		if !strings.HasPrefix(line, "HKEY_") || !strings.Contains(line, "{") {
			continue
		}
		v := w.regQuery(line)
		if v["DisplayName"] == "Vigil agent" {
			vers = append(vers, v["DisplayVersion"])
		}
	}
	return vers
}

func (w *wineEnv) drive(path string) string { return filepath.Join(w.prefix, "drive_c", path) }

func winPath(p string) string { return `Z:` + strings.ReplaceAll(p, "/", `\`) }

// TestMSIUnderWine installs the group MSI silently with Wine's msiexec:
// files, the enrollment configuration, the service registration (read back
// from the registry); a newer MSI with property overrides upgrades in place;
// /x removes everything but the device state. The installed service enrolls
// by itself with the collector on loopback. Wine cannot start a service on
// request (StartService), which is why the MSI starts it with an action
// whose failure is ignored (see installer/README.md).
func TestMSIUnderWine(t *testing.T) {
	needTools(t, "wixl", "msiinfo")
	w := newWine(t)
	c := newPkgCollector(t)
	exe1, exe2 := buildAgent(t, "windows", "1.0.0"), buildAgent(t, "windows", "1.0.1")
	msi1 := buildPackage(t, c, "msi", "pupils", exe1, "--version", "1.0.0")
	msi2 := buildPackage(t, c, "msi", "pupils", exe2, "--version", "1.0.1")
	logSize(t, msi1, exe1)

	props := mustSh(t, nil, "msiinfo", "export", msi1, "Property")
	for _, want := range []string{"VIGIL_COLLECTOR\t" + c.grpc, "VIGIL_GROUP\tpupils", "VIGIL_TOKEN\tvgl1.", "UpgradeCode\t{6B0E8D4A-3C1F-4E57-9A2D-7F1B5C9E0A41}", "MsiHiddenProperties\tVIGIL_TOKEN"} {
		if !strings.Contains(props, want) {
			t.Errorf("MSI Property table lacks %q:\n%s", want, props)
		}
	}

	exePath := w.drive("Program Files/Vigil/agent/vigil-agent.exe")
	enrollJSON := w.drive("ProgramData/Vigil/enroll.json")
	const svcKey = `HKLM\SYSTEM\CurrentControlSet\Services\vigil-agent`
	const cfgKey = `HKLM\SOFTWARE\Vigil\Agent`
	readEnroll := func() (b struct{ Collector, Token, Group, CAFingerprint string }) {
		t.Helper()
		raw, err := os.ReadFile(enrollJSON)
		if err != nil {
			t.Fatalf("enrollment configuration: %v", err)
		}
		var j struct {
			Collector     string `json:"collector"`
			Token         string `json:"token"`
			Group         string `json:"group"`
			CAFingerprint string `json:"ca_fingerprint"`
		}
		if err := json.Unmarshal(raw, &j); err != nil {
			t.Fatalf("enroll.json %s: %v", raw, err)
		}
		b.Collector, b.Token, b.Group, b.CAFingerprint = j.Collector, j.Token, j.Group, j.CAFingerprint
		return b
	}
	sameFile := func(a, b string) bool {
		x, _ := os.ReadFile(a)
		y, _ := os.ReadFile(b)
		return len(x) > 0 && bytes.Equal(x, y)
	}

	// Silent install with nothing else on the command line.
	if out, err := w.run("msiexec", "/i", winPath(msi1), "/qn"); err != nil {
		t.Fatalf("msiexec /i /qn: %v\n%s", err, out)
	}
	if !sameFile(exePath, exe1) {
		t.Fatalf("%s is not the 1.0.0 agent", exePath)
	}
	e := readEnroll()
	if e.Collector != c.grpc || e.Group != "pupils" || !strings.HasPrefix(e.Token, "vgl1.") || e.CAFingerprint == "" {
		t.Errorf("baked enrollment configuration: %+v", e)
	}
	svc := w.regQuery(svcKey)
	if !strings.Contains(svc["ImagePath"], `vigil-agent.exe run --state "C:\ProgramData\Vigil\agent" --enroll-config "C:\ProgramData\Vigil\enroll.json"`) ||
		svc["Start"] != "0x2" || svc["ObjectName"] != "LocalSystem" {
		t.Errorf("service registration: %v", svc)
	}
	// sc.exe failure (restart on failure) runs with its result ignored;
	// whether Wine's sc.exe implements it is only reported.
	t.Logf("service recovery actions set under Wine: %v", svc["FailureActions"] != "")
	if cfg := w.regQuery(cfgKey); cfg["Collector"] != c.grpc || cfg["Group"] != "pupils" || cfg["Version"] != "1.0.0" {
		t.Errorf("HKLM\\SOFTWARE\\Vigil\\Agent: %v", cfg)
	}
	if p := w.products(); len(p) != 1 || p[0] != "1.0.0" {
		t.Errorf("installed products after the first MSI: %v", p)
	}
	// Wine's service manager starts auto-start services when it comes up
	// (msiexec brings it up), though it cannot start one on request: so the
	// installed service runs and enrolls itself from enroll.json.
	deviceCfg := w.drive("ProgramData/Vigil/agent/config.json")
	waitFor(t, 120*time.Second, "the installed Windows service to enroll from enroll.json", func() bool {
		for _, d := range c.devices() {
			if d.Group == "pupils" && d.AgentVersion == "1.0.0" {
				return true
			}
		}
		return false
	})
	waitFor(t, 30*time.Second, "the device identity in C:\\ProgramData\\Vigil\\agent", func() bool {
		_, err := os.Stat(deviceCfg)
		return err == nil
	})
	before, _ := os.ReadFile(deviceCfg)

	// Upgrade in place with every property overridden.
	staffToken := c.token("staff", "--uses", "5")
	out, err := w.run("msiexec", "/i", winPath(msi2), "/qn", "VIGIL_COLLECTOR=127.0.0.2:7443", "VIGIL_GROUP=staff", "VIGIL_TOKEN="+staffToken)
	if err != nil {
		t.Fatalf("msiexec /i (upgrade): %v\n%s", err, out)
	}
	if !sameFile(exePath, exe2) {
		t.Errorf("%s is not the 1.0.1 agent after the upgrade", exePath)
	}
	if e := readEnroll(); e.Collector != "127.0.0.2:7443" || e.Group != "staff" || e.Token != staffToken {
		t.Errorf("property overrides not in enroll.json: %+v", e)
	}
	if cfg := w.regQuery(cfgKey); cfg["Collector"] != "127.0.0.2:7443" || cfg["Group"] != "staff" || cfg["Version"] != "1.0.1" {
		t.Errorf("HKLM\\SOFTWARE\\Vigil\\Agent after upgrade: %v", cfg)
	}
	if p := w.products(); len(p) != 1 || p[0] != "1.0.1" {
		t.Errorf("installed products after the upgrade: %v (want only 1.0.1: major upgrade in place)", p)
	}
	if w.regQuery(svcKey) == nil {
		t.Error("service not registered after the upgrade")
	}
	if after, _ := os.ReadFile(deviceCfg); !bytes.Equal(before, after) {
		t.Errorf("device identity changed across the upgrade:\n%s\n%s", before, after)
	}

	// Uninstall: program, service and configuration keys gone.
	if out, err := w.run("msiexec", "/x", winPath(msi2), "/qn"); err != nil {
		t.Fatalf("msiexec /x: %v\n%s", err, out)
	}
	if _, err := os.Stat(exePath); err == nil {
		t.Error("agent binary left after /x")
	}
	if w.regQuery(svcKey) != nil {
		t.Error("service still registered after /x")
	}
	if w.regQuery(cfgKey) != nil {
		t.Error("HKLM\\SOFTWARE\\Vigil\\Agent left after /x")
	}
	if p := w.products(); len(p) != 0 {
		t.Errorf("products after /x: %v", p)
	}
}

// newPkgCollector is newCollector with a longer start bound: these tests
// run beside debootstrap, dpkg and Wine, and a race-built collector's
// first start (CA keys, the first admin's password hash) can take longer
// than the harness's 20 s on a loaded 2-core machine.
func newPkgCollector(t *testing.T) *collector {
	c := &collector{t: t, data: filepath.Join(t.TempDir(), "collector"), grpc: freePort(t), web: freePort(t)}
	startPatiently(c)
	return c
}

func startPatiently(c *collector) {
	c.t.Helper()
	c.p = start(c.t, "vigil-collector", "serve", "--data", c.data, "--grpc-listen", c.grpc, "--http-listen", c.web, "--heartbeat", "2s")
	waitFor(c.t, 120*time.Second, "collector admin socket", func() bool {
		_, _, code := run(c.t, "vigil-collector", "devices", "list", "--data", c.data, "--json")
		return code == 0
	})
}

// TestTokenListRevokeAndEnrollFromConfig: a token written with
// `enroll --later` enrolls with plain `vigil-agent enroll`; `token revoke`
// stops further enrollments with a token (the package's token is retired)
// while the device enrolled with it keeps working.
func TestTokenListRevokeAndEnrollFromConfig(t *testing.T) {
	c := newPkgCollector(t)
	tok := c.token("pupils", "--uses", "5", "--ttl", "8760h")
	id := strings.Split(tok, ".")[1]
	conf := filepath.Join(t.TempDir(), "enroll.conf")
	mustRun(t, "vigil-agent", "enroll", "--later", "--collector", c.grpc, "--token", tok, "--group", "pupils", "--enroll-config", conf)
	if st, err := os.Stat(conf); err != nil || st.Mode().Perm() != 0o600 {
		t.Fatalf("enroll --later wrote %v %v", st, err)
	}
	a := &agent{t: t, state: filepath.Join(t.TempDir(), "agent")}
	out := mustRun(t, "vigil-agent", "enroll", "--enroll-config", conf, "--state", a.state)
	if !strings.Contains(out, "in group pupils") {
		t.Fatalf("enroll from the configuration: %q", out)
	}
	a.id = strings.Fields(out)[2]

	list := mustRun(t, "vigil-collector", "token", "list", "--data", c.data, "--json")
	if !strings.Contains(list, `"id":"`+id+`"`) || !strings.Contains(list, `"state":"active"`) || !strings.Contains(list, `"uses":1`) {
		t.Fatalf("token list:\n%s", list)
	}
	mustRun(t, "vigil-collector", "token", "revoke", "--data", c.data, "--id", id)
	if list := mustRun(t, "vigil-collector", "token", "list", "--data", c.data, "--json"); !strings.Contains(list, `"state":"revoked"`) {
		t.Errorf("revoked token still listed as usable:\n%s", list)
	}
	_, errOut, code := run(t, "vigil-agent", "enroll", "--enroll-config", conf, "--state", filepath.Join(t.TempDir(), "other"))
	if code == 0 || !strings.Contains(errOut, "expired") {
		t.Errorf("enrollment with a revoked token: exit %d: %s", code, errOut)
	}
	if _, errOut, code := run(t, "vigil-collector", "token", "revoke", "--data", c.data, "--id", "0000000000000000"); code == 0 || !strings.Contains(errOut, "no token") {
		t.Errorf("revoking an unknown token: exit %d: %s", code, errOut)
	}
	// The device enrolled before the revocation still delivers findings.
	a.start()
	if _, err := a.trigger(1, ""); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "a finding from the device enrolled before the revocation", func() bool {
		return len(c.findings(a.id)) > 0
	})
	// Running with the configuration does not enroll the device again.
	if err := a.p.stop(); err != nil {
		t.Fatal(err)
	}
	a.start("--enroll-config", conf)
	if got := readAgentConfig(t, filepath.Join(a.state, "config.json")); got.DeviceID != a.id {
		t.Errorf("run re-enrolled: %s -> %s", a.id, got.DeviceID)
	}
}

// TestPackageArm64AndRefusals: arm64 packages carry the right architecture;
// a wrong binary, an unknown format or pkg are refused before any token is
// made (so no unused credential is left behind).
func TestPackageArm64AndRefusals(t *testing.T) {
	needTools(t, "dpkg-deb", "rpm")
	c := newPkgCollector(t)
	arm := buildAgentArch(t, "linux", "arm64", "1.2.0")
	deb := buildPackage(t, c, "deb", "pupils", arm, "--arch", "arm64")
	if got := strings.TrimSpace(mustSh(t, nil, "dpkg-deb", "-f", deb, "Architecture")); got != "arm64" {
		t.Errorf("arm64 deb Architecture %q", got)
	}
	home := t.TempDir()
	rpmPkg := buildPackage(t, c, "rpm", "pupils", arm, "--arch", "arm64")
	if got := mustSh(t, append(os.Environ(), "HOME="+home), "rpm", "-qp", "--qf", "%{ARCH}", rpmPkg); got != "aarch64" {
		t.Errorf("arm64 rpm arch %q", got)
	}
	tokens := func() int {
		return strings.Count(mustRun(t, "vigil-collector", "token", "list", "--data", c.data, "--json"), `"id"`)
	}
	n := tokens()
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"--format", "deb", "--arch", "amd64", "--agent-binary", arm}, "built for linux/arm64"},
		{[]string{"--format", "msi", "--agent-binary", arm, "--version", "1.0.0"}, "needs windows/amd64"},
		{[]string{"--format", "pkg", "--agent-binary", arm}, "pkgbuild"},
		{[]string{"--format", "zip", "--agent-binary", arm}, "want deb, rpm or msi"},
		{[]string{"--format", "deb", "--agent-binary", filepath.Join(t.TempDir(), "missing")}, "not a Go executable"},
		{[]string{"--format", "deb", "--agent-binary", arm, "--arch", "arm64", "--group", "Year 7"}, "use 1-64 of a-z"},
	} {
		args := append([]string{"package", "--data", c.data, "--group", "pupils", "--collector-address", c.grpc,
			"--out", filepath.Join(t.TempDir(), "x")}, tc.args...)
		_, errOut, code := run(t, "vigil-collector", args...)
		if code == 0 || !strings.Contains(errOut, tc.want) {
			t.Errorf("package %v: exit %d, stderr %q, want %q", tc.args, code, errOut, tc.want)
		}
	}
	if got := tokens(); got != n {
		t.Errorf("refused builds left %d tokens behind", got-n)
	}
}
