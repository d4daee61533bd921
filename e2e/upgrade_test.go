package e2e

import (
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

const versionPkg = "github.com/vigil-safeguarding/vigil/internal/version"

// buildAgentVersion builds the agent with its version (and any other -X
// settings) linked in.
func buildAgentVersion(t *testing.T, out, version string, extraX ...string) {
	t.Helper()
	ldflags := "-X " + versionPkg + ".Version=" + version
	for _, x := range extraX {
		ldflags += " -X " + x
	}
	cmd := exec.Command("go", "build", "-ldflags", ldflags, "-o", out, "../agent/cmd/vigil-agent")
	if b, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent %s: %v\n%s", version, err, b)
	}
}

// upgradingAgent is an enrolled agent running its own copy of a binary,
// which upgrades replace. Its log is a file (not a pipe): the processes an
// upgrade starts (watchdog, restored agent) write to it too, and nothing
// waits on them.
type upgradingAgent struct {
	*agent
	binDir string
	exe    string
	log    string
}

func (a *upgradingAgent) startOwn(t *testing.T) {
	t.Helper()
	lf, err := os.OpenFile(a.log, os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer lf.Close()
	cmd := exec.Command(a.exe, "run", "--state", a.state, "--session-socket", a.sock, "--backoff-max", "2s",
		"--log-level", "debug", "--upgrade-watchdog", "20s")
	cmd.Stdout, cmd.Stderr = lf, lf
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	// Reaped in the background; the pid may live on through re-exec.
	go cmd.Wait()
}

func (a *upgradingAgent) logText() string {
	b, _ := os.ReadFile(a.log)
	return string(b)
}

// killUnder kills, one by one, the processes whose executable lives in dir:
// the agents and watchdogs this test started from its own binary copies.
func killUnder(dir string) {
	entries, _ := os.ReadDir("/proc")
	for _, e := range entries {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		exe, err := os.Readlink(filepath.Join("/proc", e.Name(), "exe"))
		if err == nil && strings.HasPrefix(exe, dir+string(filepath.Separator)) {
			syscall.Kill(pid, syscall.SIGKILL)
		}
	}
}

type releaseStatus struct {
	Group   string `json:"group"`
	Rollout *struct {
		Version string `json:"version"`
	} `json:"rollout"`
	Versions map[string]int `json:"versions"`
	Devices  []struct {
		DeviceID  string `json:"device_id"`
		Version   string `json:"version"`
		Connected bool   `json:"connected"`
		State     string `json:"state"`
		Failed    *struct {
			Outcome string `json:"outcome"`
			Reason  string `json:"reason"`
		} `json:"failed"`
	} `json:"devices"`
}

func (c *collector) releaseStatus(group string) releaseStatus {
	c.t.Helper()
	var st releaseStatus
	out := mustRun(c.t, "vigil-collector", "release", "status", "--data", c.data, "--group", group, "--json")
	if err := json.Unmarshal([]byte(out), &st); err != nil {
		c.t.Fatalf("release status %q: %v", out, err)
	}
	return st
}

// TestUpgradeRollout: version A -> B rolled out to a group of agents that
// run as separate processes, each from its own binary copy. A tampered
// release is refused (agents stay on A, a finding says why); a release
// that never connects is rolled back to A by the watchdog; B is then
// installed, reported in heartbeats and `release status`, with device IDs
// and spool sequence kept.
func TestUpgradeRollout(t *testing.T) {
	if testing.Short() {
		t.Skip("builds four agent versions")
	}
	const (
		verA   = "1.0.0"
		verB   = "1.1.0"
		verBad = "1.0.1-tampered"
		verNC  = "1.0.2-noconnect"
		group  = "pilot"
	)
	work := t.TempDir()
	builds := filepath.Join(work, "builds")
	binA, binB, binNC := filepath.Join(builds, "a"), filepath.Join(builds, "b"), filepath.Join(builds, "nc")
	buildAgentVersion(t, binA, verA)
	buildAgentVersion(t, binB, verB)
	buildAgentVersion(t, binNC, verNC, versionPkg+".FailBeforeDial=e2e-never-connects")

	c := newCollector(t)
	var agents []*upgradingAgent
	for i := 0; i < 2; i++ {
		a := &upgradingAgent{agent: enrollAgent(t, c, group), binDir: filepath.Join(work, fmt.Sprintf("agent%d-bin", i))}
		a.exe, a.log = filepath.Join(a.binDir, "vigil-agent"), filepath.Join(work, fmt.Sprintf("agent%d.log", i))
		if err := os.MkdirAll(a.binDir, 0o755); err != nil {
			t.Fatal(err)
		}
		b, _ := os.ReadFile(binA)
		if err := os.WriteFile(a.exe, b, 0o755); err != nil {
			t.Fatal(err)
		}
		agents = append(agents, a)
		t.Cleanup(func() {
			killUnder(a.binDir)
			if t.Failed() {
				t.Logf("--- agent %s log ---\n%s", a.id, tail(a.logText(), 6000))
			}
		})
		a.startOwn(t)
	}
	versions := func() map[string]string {
		out := map[string]string{}
		for _, d := range c.devices() {
			if d.Connected {
				out[d.DeviceID] = d.AgentVersion
			}
		}
		return out
	}
	allOn := func(v string) func() bool {
		return func() bool {
			vs := versions()
			for _, a := range agents {
				if vs[a.id] != v {
					return false
				}
			}
			return true
		}
	}
	waitFor(t, 60*time.Second, "agents connected on version A", allOn(verA))
	before := map[string]uint64{}
	for _, a := range agents {
		r, err := a.trigger(1, "")
		if err != nil {
			t.Fatal(err)
		}
		before[a.id] = r.LastSeq
	}

	add := func(bin, ver string) {
		mustRun(t, "vigil-collector", "release", "add", "--data", c.data, "--file", bin, "--version", ver, "--os", "linux", "--arch", "amd64")
	}
	failedAs := func(ver, outcome string) func() bool {
		return func() bool {
			st := c.releaseStatus(group)
			if st.Rollout == nil || st.Rollout.Version != ver {
				return false
			}
			n := 0
			for _, d := range st.Devices {
				if d.State == "failed" && d.Failed != nil && d.Failed.Outcome == outcome {
					n++
				}
			}
			return n == len(agents)
		}
	}

	// 1. A release whose bytes changed after signing is refused.
	add(binB, verBad)
	bad := filepath.Join(c.data, "releases", verBad+"_linux_amd64", "agent.bin")
	f, err := os.OpenFile(bad, os.O_WRONLY, 0)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := f.WriteAt([]byte{0xff, 0x00, 0xff}, 4096); err != nil {
		t.Fatal(err)
	}
	f.Close()
	mustRun(t, "vigil-collector", "release", "rollout", "--data", c.data, "--group", group, "--version", verBad)
	waitFor(t, 60*time.Second, "both agents to refuse the tampered release", failedAs(verBad, "refused"))
	for _, a := range agents {
		waitFor(t, 60*time.Second, "the refusal finding of "+a.id, func() bool {
			for _, f := range c.findings(a.id) {
				if f.RuleID == "agent-upgrade-refused" && strings.Contains(f.Message, "sha256") {
					return true
				}
			}
			return false
		})
		if !strings.Contains(a.logText(), "upgrade refused") {
			t.Errorf("agent %s did not log the refusal", a.id)
		}
		if out := mustRunPath(t, a.exe, "version"); strings.TrimSpace(out) != verA {
			t.Errorf("agent %s binary is %q after the refusal, want %s", a.id, out, verA)
		}
	}
	if vs := versions(); vs[agents[0].id] != verA || vs[agents[1].id] != verA {
		t.Fatalf("versions after the tampered release: %v", vs)
	}

	// 2. A release that never connects is rolled back to A by the watchdog.
	add(binNC, verNC)
	mustRun(t, "vigil-collector", "release", "rollout", "--data", c.data, "--group", group, "--version", verNC)
	waitFor(t, 120*time.Second, "both agents to roll back the release that never connects", failedAs(verNC, "rolled_back"))
	waitFor(t, 60*time.Second, "agents back on version A", allOn(verA))
	for _, a := range agents {
		if out := mustRunPath(t, a.exe, "version"); strings.TrimSpace(out) != verA {
			t.Errorf("agent %s binary is %q after the rollback, want %s", a.id, out, verA)
		}
		if !strings.Contains(a.logText(), "rolling back") {
			t.Errorf("agent %s: no watchdog rollback in its log", a.id)
		}
	}

	// 3. B is installed.
	add(binB, verB)
	mustRun(t, "vigil-collector", "release", "rollout", "--data", c.data, "--group", group, "--version", verB)
	waitFor(t, 120*time.Second, "agents on version B", allOn(verB))
	st := c.releaseStatus(group)
	if st.Versions[verB] != len(agents) {
		t.Errorf("release status versions %v, want %d on %s", st.Versions, len(agents), verB)
	}
	for _, d := range st.Devices {
		if d.State != "current" {
			t.Errorf("release status: device %s state %s, want current", d.DeviceID, d.State)
		}
	}
	for _, a := range agents {
		if out := mustRunPath(t, a.exe, "version"); strings.TrimSpace(out) != verB {
			t.Errorf("agent %s binary is %q, want %s", a.id, out, verB)
		}
		if _, err := os.Stat(a.exe + ".prev"); err != nil {
			t.Errorf("agent %s: previous binary not kept: %v", a.id, err)
		}
		// Same identity and the spool's sequence carried on.
		r, err := a.trigger(1, "")
		if err != nil {
			t.Fatal(err)
		}
		if r.LastSeq <= before[a.id] {
			t.Errorf("agent %s: seq %d after the upgrade, not above %d before", a.id, r.LastSeq, before[a.id])
		}
		waitFor(t, 60*time.Second, "the selftest after the upgrade", func() bool {
			for _, f := range c.findings(a.id) {
				if f.Seq == r.LastSeq {
					return true
				}
			}
			return false
		})
	}
	// Wait for the watchdog of the B swap to stand down: the B agents stay.
	waitFor(t, 60*time.Second, "pending upgrades confirmed", func() bool {
		for _, a := range agents {
			if _, err := os.Stat(filepath.Join(a.state, "upgrade-pending.json")); err == nil {
				return false
			}
		}
		return true
	})
}

// mustRunPath runs a binary given by path.
func mustRunPath(t *testing.T, path string, args ...string) string {
	t.Helper()
	out, err := exec.Command(path, args...).Output()
	if err != nil {
		t.Fatalf("%s %v: %v", path, args, err)
	}
	return string(out)
}
