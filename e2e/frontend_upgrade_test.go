package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestUpgradeThroughFrontend: an agent whose stream a front-end holds is
// upgraded by a rollout made at the store-owning collector, as deployed
// across machines (one nats-node, bus TLS): a release that never connects
// is rolled back by the agent's watchdog and its report reaches the
// collector's release status through the front-end; then version B is
// offered by the front-end, downloaded from it (its copy fetched from the
// bus) and installed, and the agent comes back on B through the front-end.
func TestUpgradeThroughFrontend(t *testing.T) {
	if testing.Short() {
		t.Skip("builds three agent versions and starts a node, a collector and a front-end")
	}
	const (
		verA  = "1.0.0"
		verB  = "1.1.0"
		verNC = "1.0.2-noconnect"
		group = "pupils"
	)
	work := t.TempDir()
	binA, binB, binNC := filepath.Join(work, "a"), filepath.Join(work, "b"), filepath.Join(work, "nc")
	buildAgentVersion(t, binA, verA)
	buildAgentVersion(t, binB, verB)
	buildAgentVersion(t, binNC, verNC, versionPkg+".FailBeforeDial=e2e-never-connects")

	collectorData := filepath.Join(t.TempDir(), "collector")
	if err := os.MkdirAll(collectorData, 0o700); err != nil {
		t.Fatal(err)
	}
	busTLS := func(name string) string {
		dir := filepath.Join(t.TempDir(), "bus-"+name)
		mustRun(t, "vigil-collector", "nats-cert", "--data", collectorData, "--name", name, "--out", dir)
		return dir
	}
	natsAddr := freePort(t)
	node := start(t, "vigil-collector", "nats-node", "--data", filepath.Join(t.TempDir(), "nats"), "--name", "n1",
		"--listen", natsAddr, "--tls", busTLS("n1"))
	waitFor(t, 60*time.Second, "nats node ready", func() bool { return strings.Contains(node.log.String(), "nats node ready") })
	url := "nats://" + natsAddr
	c := &collector{t: t, data: collectorData, grpc: freePort(t), web: freePort(t),
		args: []string{"--ingest", "jetstream", "--nats", url, "--nats-replicas", "1", "--nats-tls", busTLS("storer")}}
	c.p = start(t, "vigil-collector", append([]string{"serve", "--data", c.data, "--grpc-listen", c.grpc, "--http-listen", c.web,
		"--heartbeat", "2s"}, c.args...)...)
	waitFor(t, 4*time.Minute, "store-owning collector admin socket", func() bool {
		_, _, code := run(t, "vigil-collector", "devices", "list", "--data", c.data, "--json")
		return code == 0
	})
	fe := &frontend{name: "fe1", data: filepath.Join(t.TempDir(), "frontend"), grpc: freePort(t)}
	copyFiles(t, filepath.Join(c.data, "pki"), filepath.Join(fe.data, "pki"), "ca.pem", "server.pem", "server.key")
	fe.p = start(t, "vigil-collector", "frontend", "--data", fe.data, "--nats", url, "--nats-replicas", "1", "--nats-tls", busTLS(fe.name),
		"--grpc-listen", fe.grpc, "--name", fe.name, "--heartbeat", "2s")
	waitFor(t, 4*time.Minute, "front-end serving", func() bool { return strings.Contains(fe.p.log.String(), "stream front-end serving") })

	a := &upgradingAgent{agent: &agent{t: t, state: filepath.Join(t.TempDir(), "agent"), sock: filepath.Join(t.TempDir(), "run", "session.sock")},
		binDir: filepath.Join(work, "agent-bin")}
	out := mustRun(t, "vigil-agent", "enroll", "--collector", c.grpc, "--token", c.token(group), "--state", a.state, "--stream-collectors", fe.grpc)
	if fields := strings.Fields(out); len(fields) >= 3 {
		a.id = fields[2]
	} else {
		t.Fatalf("enroll output %q", out)
	}
	a.exe, a.log = filepath.Join(a.binDir, "vigil-agent"), filepath.Join(work, "agent.log")
	if err := os.MkdirAll(a.binDir, 0o755); err != nil {
		t.Fatal(err)
	}
	b, _ := os.ReadFile(binA)
	if err := os.WriteFile(a.exe, b, 0o755); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		killUnder(a.binDir)
		if t.Failed() {
			t.Logf("--- agent log ---\n%s", tail(a.logText(), 6000))
			t.Logf("--- front-end log ---\n%s", tail(fe.p.log.String(), 4000))
		}
	})
	a.startOwn(t)
	on := func(v string) func() bool {
		return func() bool {
			for _, d := range c.devices() {
				if d.DeviceID == a.id {
					return d.Connected && d.AgentVersion == v
				}
			}
			return false
		}
	}
	waitFor(t, 2*time.Minute, "the agent held by the front-end on version A", on(verA))

	add := func(bin, ver string) {
		mustRun(t, "vigil-collector", "release", "add", "--data", c.data, "--file", bin, "--version", ver, "--os", "linux", "--arch", "amd64")
	}
	// A release that never connects: the watchdog rolls it back, and the
	// report goes from the front-end to the collector.
	add(binNC, verNC)
	mustRun(t, "vigil-collector", "release", "rollout", "--data", c.data, "--group", group, "--version", verNC)
	waitFor(t, 3*time.Minute, "the rollback reported to the collector through the front-end", func() bool {
		for _, d := range c.releaseStatus(group).Devices {
			if d.DeviceID == a.id && d.State == "failed" && d.Failed != nil && d.Failed.Outcome == "rolled_back" {
				return true
			}
		}
		return false
	})
	waitFor(t, 2*time.Minute, "the agent back on version A", on(verA))

	// B, offered and served by the front-end.
	add(binB, verB)
	mustRun(t, "vigil-collector", "release", "rollout", "--data", c.data, "--group", group, "--version", verB)
	waitFor(t, 3*time.Minute, "the agent on version B through the front-end", on(verB))
	if out := mustRunPath(t, a.exe, "version"); strings.TrimSpace(out) != verB {
		t.Errorf("the agent's binary is %q, want %s", out, verB)
	}
	if cached, _ := filepath.Glob(filepath.Join(fe.data, "release-cache", "1=2E1=2E0-linux-amd64")); len(cached) != 1 {
		t.Errorf("the front-end did not serve B from its own copy: %v", cached)
	}
	waitFor(t, 60*time.Second, "the pending upgrade confirmed", func() bool {
		_, err := os.Stat(filepath.Join(a.state, "upgrade-pending.json"))
		return err != nil
	})
}
