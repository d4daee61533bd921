package e2e

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
)

// frontend is a `vigil-collector frontend` process.
type frontend struct {
	name, data, grpc string
	p                *proc
}

// TestFrontendsNodeAndFrontendKilled: three nats-node processes form a
// JetStream cluster (R3); the store-owning collector (serve --ingest
// jetstream --nats) enrolls agents and drains the stream into Badger; three
// stateless front-ends hold the agents' streams. Agents stream to the
// front-ends (--stream-collectors, shuffled over the three). Under load one
// front-end holding agents and one NATS node are killed -9 and not brought
// back: the agents move to the remaining front-ends, and the store ends
// with exactly the emitted set, none lost, none duplicated.
func TestFrontendsNodeAndFrontendKilled(t *testing.T) {
	if testing.Short() {
		t.Skip("starts eleven processes")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))

	var clientURLs, routes []string
	for i := 0; i < 3; i++ {
		clientURLs = append(clientURLs, "nats://"+freePort(t))
		routes = append(routes, freePort(t))
	}
	urls := strings.Join(clientURLs, ",")
	// As deployed across machines: every bus member gets a certificate of
	// the bus CA from the store-owning collector's data dir, and every
	// NATS connection and route is mutual TLS with it.
	collectorData := filepath.Join(t.TempDir(), "collector")
	busTLS := func(name string) string {
		dir := filepath.Join(t.TempDir(), "bus-"+name)
		mustRun(t, "vigil-collector", "nats-cert", "--data", collectorData, "--name", name, "--out", dir)
		return dir
	}
	if err := os.MkdirAll(collectorData, 0o700); err != nil {
		t.Fatal(err)
	}
	nodes := make([]*proc, 3)
	for i := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		nodes[i] = start(t, "vigil-collector", "nats-node", "--data", filepath.Join(t.TempDir(), "nats"), "--name", name,
			"--listen", strings.TrimPrefix(clientURLs[i], "nats://"), "--cluster", "vigil-e2e", "--cluster-listen", routes[i],
			"--routes", strings.Join(routes, ","), "--tls", busTLS(name))
	}
	for i, n := range nodes {
		waitFor(t, 60*time.Second, fmt.Sprintf("nats node %d ready", i+1), func() bool {
			return strings.Contains(n.log.String(), "nats node ready")
		})
		if !strings.Contains(n.log.String(), "tls=true") {
			t.Fatalf("nats node %d is not on mutual TLS: %s", i+1, n.log.String())
		}
	}

	// The store-owning collector creates the stream, consumers and bucket
	// (R3) once the fresh cluster has elected its meta leader, which on a
	// loaded machine takes longer than the harness's usual start wait.
	c := &collector{t: t, data: collectorData, grpc: freePort(t), web: freePort(t),
		args: []string{"--ingest", "jetstream", "--nats", urls, "--nats-tls", busTLS("storer")}}
	c.p = start(t, "vigil-collector", append([]string{"serve", "--data", c.data, "--grpc-listen", c.grpc, "--http-listen", c.web,
		"--heartbeat", "2s"}, c.args...)...)
	waitFor(t, 4*time.Minute, "store-owning collector admin socket", func() bool {
		_, _, code := run(t, "vigil-collector", "devices", "list", "--data", c.data, "--json")
		return code == 0
	})
	if !strings.Contains(c.p.log.String(), "device records mirrored for front-ends") {
		t.Fatal("the storer did not say it mirrors device records")
	}
	fes := make([]*frontend, 3)
	var feAddrs []string
	for i := range fes {
		f := &frontend{name: fmt.Sprintf("fe%d", i+1), data: filepath.Join(t.TempDir(), "frontend"), grpc: freePort(t)}
		// A front-end terminates mTLS with the storer's CA and server
		// certificate (not the CA key, not the evidence key); it holds no
		// store.
		copyFiles(t, filepath.Join(c.data, "pki"), filepath.Join(f.data, "pki"), "ca.pem", "server.pem", "server.key")
		f.p = start(t, "vigil-collector", "frontend", "--data", f.data, "--nats", urls, "--nats-tls", busTLS(f.name), "--grpc-listen", f.grpc,
			"--name", f.name, "--heartbeat", "2s")
		fes[i] = f
		feAddrs = append(feAddrs, f.grpc)
	}
	for _, f := range fes {
		waitFor(t, 4*time.Minute, f.name+" serving", func() bool {
			return strings.Contains(f.p.log.String(), "stream front-end serving")
		})
	}

	// Two schools of a trust: every other agent enrolls in north, whose
	// findings and events travel under north's subjects to north's storer
	// (added while the collector runs, so its storer starts late).
	mustRun(t, "vigil-collector", "school", "add", "--data", c.data, "--name", "North Academy", "--id", "north")
	const nAgents = 6
	agents := make([]*agent, nAgents)
	toks := []string{c.token("pupils", "--uses", fmt.Sprint(nAgents)), c.token("pupils", "--uses", fmt.Sprint(nAgents), "--school", "north")}
	schoolOf := map[string]string{}
	for i := range agents {
		a := &agent{t: t, state: filepath.Join(t.TempDir(), "agent"), sock: filepath.Join(t.TempDir(), "run", "session.sock")}
		tok := toks[i%2]
		out := mustRun(t, "vigil-agent", "enroll", "--collector", c.grpc, "--token", tok, "--state", a.state,
			"--stream-collectors", strings.Join(feAddrs, ","))
		if fields := strings.Fields(out); len(fields) >= 3 {
			a.id = fields[2]
		} else {
			t.Fatalf("enroll output %q", out)
		}
		a.start()
		agents[i] = a
		schoolOf[a.id] = []string{"default", "north"}[i%2]
	}
	// A term North's DSL adds reaches North's agents through whichever
	// front-end holds them (the rules bucket), and no default-school agent.
	pwFile := filepath.Join(t.TempDir(), "pw")
	const pw = "correct horse battery staple 12"
	os.WriteFile(pwFile, []byte(pw+"\n"), 0o600)
	mustRun(t, "vigil-collector", "user", "add", "--data", c.data, "--username", "northdsl", "--role", "dsl",
		"--display-name", "North DSL", "--password-file", pwFile, "--school", "north")
	northDSL := signIn(t, c, "northdsl", pw)
	if code, b := northDSL.do("POST", "/api/v1/terms", map[string]string{"term": "northy nick", "category": "bullying", "severity": "high",
		"rationale": "heard at North", "cases": "+ lol northy nick\n- nothing here\n"}, nil); code != 201 {
		t.Fatalf("north adds a term: %d %s", code, b)
	}
	// And North's technician's override, written at the store-owning
	// collector only (front-ends have no rules folders): its bundle comes
	// to them over the bus.
	override := filepath.Join(c.data, "school-rules", "north", "keywords", "north-slang.txt")
	if err := os.MkdirAll(filepath.Dir(override), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(override, []byte("#! rule: keywords-north-slang\n#! category: bullying\n#! severity: medium\n#! name: North slang\nnorthslang ; severity=high # heard at North\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	for _, a := range agents {
		lib := filepath.Join(a.state, "rules", "keywords", "school-bullying.txt")
		slang := filepath.Join(a.state, "rules", "keywords", "north-slang.txt")
		if schoolOf[a.id] == "north" {
			waitFor(t, 2*time.Minute, "north's term and override reach agent "+a.id+" through a front-end", func() bool {
				b, _ := os.ReadFile(lib)
				o, _ := os.ReadFile(slang)
				return strings.Contains(string(b), "northy nick") && strings.Contains(string(o), "northslang")
			})
		}
	}
	for _, a := range agents {
		if schoolOf[a.id] == "north" {
			continue
		}
		if b, _ := os.ReadFile(filepath.Join(a.state, "rules", "keywords", "school-bullying.txt")); strings.Contains(string(b), "northy") {
			t.Errorf("north's term reached default-school agent %s", a.id)
		}
		if _, err := os.Stat(filepath.Join(a.state, "rules", "keywords", "north-slang.txt")); err == nil {
			t.Errorf("north's override reached default-school agent %s", a.id)
		}
	}

	// Each agent seals its evidence to its own school's key.
	recipientOf := map[string]string{}
	for school, file := range map[string]string{"default": filepath.Join(c.data, "pki", "evidence.key"), "north": filepath.Join(c.data, "pki", "schools", "north.key")} {
		b, err := os.ReadFile(file)
		if err != nil {
			t.Fatalf("%s's evidence key: %v", school, err)
		}
		id, err := age.ParseX25519Identity(strings.TrimSpace(string(b)))
		if err != nil {
			t.Fatal(err)
		}
		recipientOf[school] = id.Recipient().String()
	}
	for _, a := range agents {
		b, err := os.ReadFile(filepath.Join(a.state, "config.json"))
		if err != nil {
			t.Fatal(err)
		}
		var cfg struct {
			EvidenceRecipient string `json:"evidence_recipient"`
		}
		if err := json.Unmarshal(b, &cfg); err != nil || cfg.EvidenceRecipient != recipientOf[schoolOf[a.id]] {
			t.Errorf("agent %s of %s seals evidence to %q, want its school's %s (%v)", a.id, schoolOf[a.id], cfg.EvidenceRecipient, recipientOf[schoolOf[a.id]], err)
		}
	}
	waitFor(t, 60*time.Second, "north's storer started", func() bool {
		return strings.Contains(c.p.log.String(), `jetstream storer started" school=north`)
	})
	// holder is the live front-end that last welcomed id's stream after
	// offset since[f] of its log.
	holder := func(id string, since map[*frontend]int) *frontend {
		for _, f := range fes {
			if f.p == nil {
				continue
			}
			l := f.p.log.String()
			if strings.Contains(l[min(since[f], len(l)):], `agent stream held" device=`+id) {
				return f
			}
		}
		return nil
	}
	for _, a := range agents {
		waitFor(t, 60*time.Second, "agent "+a.id+" streaming to a front-end", func() bool {
			return a.status().Uplink.Connected && holder(a.id, nil) != nil
		})
	}
	// The front-end to kill: one holding agents (the one holding most).
	held := map[*frontend][]*agent{}
	for _, a := range agents {
		h := holder(a.id, nil)
		held[h] = append(held[h], a)
	}
	var victim *frontend
	for f, as := range held {
		if victim == nil || len(as) > len(held[victim]) {
			victim = f
		}
	}
	t.Logf("agents per front-end: %s %d, %s %d, %s %d; will kill %s",
		fes[0].name, len(held[fes[0]]), fes[1].name, len(held[fes[1]]), fes[2].name, len(held[fes[2]]), victim.name)
	deadNode := rng.IntN(3)

	const rounds, perRound = 6, 150
	var wg sync.WaitGroup
	errs := make(chan error, nAgents)
	roundDone := make([]chan struct{}, nAgents)
	for i, a := range agents {
		roundDone[i] = make(chan struct{}, rounds)
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := 0; r < rounds; r++ {
				if _, err := a.trigger(perRound, ""); err != nil {
					errs <- fmt.Errorf("agent %s round %d: %w", a.id, r, err)
					return
				}
				roundDone[i] <- struct{}{}
			}
		}()
	}
	// Under load: once every agent has emitted two rounds, kill the
	// front-end and a NATS node.
	for i := range agents {
		for k := 0; k < 2; k++ {
			select {
			case <-roundDone[i]:
			case err := <-errs:
				t.Fatal(err)
			case <-time.After(2 * time.Minute):
				t.Fatal("agents did not emit their first rounds")
			}
		}
	}
	// The logs' offsets are taken before the kill: a moved agent can be
	// welcomed by another front-end within milliseconds of it, before a
	// snapshot taken afterwards, and would then never be seen to move.
	since := map[*frontend]int{}
	for _, f := range fes {
		since[f] = len(f.p.log.String())
	}
	t.Logf("kill -9 %s and nats node n%d", victim.name, deadNode+1)
	victim.p.kill()
	nodes[deadNode].kill()
	killTime := time.Now()
	moved := held[victim]
	victim.p = nil
	wg.Wait()
	select {
	case err := <-errs:
		t.Fatal(err)
	default:
	}
	for _, a := range moved {
		waitFor(t, 120*time.Second, "agent "+a.id+" of the killed front-end streaming to another", func() bool {
			return holder(a.id, since) != nil && a.status().Uplink.Connected
		})
	}

	// checkStored waits until every agent's spool is drained and the store
	// holds exactly its emitted set.
	checkStored := func(atLeast uint64) {
		t.Helper()
		for _, a := range agents {
			emitted := a.status().Spool.NextSeq - 1
			if emitted < atLeast {
				t.Fatalf("agent %s emitted %d, want at least %d", a.id, emitted, atLeast)
			}
			storedExactly(t, c, a, emitted, nil, 180*time.Second)
		}
	}
	checkStored(rounds * perRound)
	// Control messages reach an agent through whichever front-end holds
	// it: a request made at the store-owning collector, to every agent
	// (those moved off the killed front-end included), is answered.
	// A request sent while the agent is between streams (none holds it)
	// or on a stream that then breaks is reported so at once, and the
	// requester sends it again, as an operator would; bounded.
	for _, a := range agents {
		waitFor(t, 120*time.Second, "request to "+a.id+" answered through its front-end", func() bool {
			out, errOut, code := run(t, "vigil-collector", "agent", "request", "--data", c.data, "--device", a.id, "--kind", "selftest",
				"--param", "count=1", "--timeout", "60s")
			var res struct {
				OK bool `json:"ok"`
			}
			if code == 0 && json.Unmarshal([]byte(out), &res) == nil && res.OK {
				return true
			}
			if !strings.Contains(errOut+out, "request lost with its stream") && !strings.Contains(errOut, "no front-end holds") {
				t.Fatalf("request to %s through its front-end: %q %q", a.id, out, errOut)
			}
			return false
		})
	}
	// A device no front-end holds is refused at once, not after the
	// timeout.
	_, errOut, code := run(t, "vigil-collector", "agent", "request", "--data", c.data, "--device", "no-such-device",
		"--kind", "selftest", "--timeout", "60s")
	if code == 0 || !strings.Contains(errOut, "no front-end holds") {
		t.Fatalf("request to an unheld device: exit %d, %q", code, errOut)
	}

	// Presence reaches the store through the device events the front-ends
	// publish: the store-owning collector lists every agent connected and
	// heard from since the kills, the moved ones included.
	waitFor(t, 60*time.Second, "every agent connected and recently seen in the store's device list", func() bool {
		n := 0
		for _, d := range c.devices() {
			if d.Connected && d.LastSeen.After(killTime) && d.AgentVersion != "" {
				n++
			}
		}
		return n == nAgents
	})
	// The selftest findings the requests made are stored exactly once too.
	checkStored(rounds*perRound + 1)
	// Each device is stored in its own school, and no message was refused
	// (a front-end publishing a device under another school's subjects is).
	for _, d := range c.devices() {
		got := d.School
		if got == "" {
			got = "default"
		}
		if got != schoolOf[d.DeviceID] {
			t.Errorf("device %s is in school %q, enrolled in %q", d.DeviceID, got, schoolOf[d.DeviceID])
		}
	}
	if strings.Contains(c.p.log.String(), "message refused") {
		t.Errorf("the store-owning collector refused bus messages:\n%s", c.p.log.String())
	}
	t.Logf("%d agents, %d moved off the killed front-end, every emitted finding stored exactly once", nAgents, len(moved))

	// North leaves the trust: deleting it removes its devices' records from
	// the bus too, so the front-ends end their streams and admit them no
	// more, while the default school's agents stream on.
	out := mustRun(t, "vigil-collector", "school", "delete", "--data", c.data, "--school", "north", "--confirm", "north", "--reason", "left the trust")
	t.Logf("school delete: %s", strings.TrimSpace(out))
	if _, err := os.Stat(filepath.Join(c.data, "pki", "schools", "north.key")); !strings.Contains(out, "evidence key is destroyed") || !os.IsNotExist(err) {
		t.Errorf("north's evidence key after the deletion: %v (%s)", err, out)
	}
	if _, err := os.Stat(filepath.Join(c.data, "school-rules", "north")); !strings.Contains(out, "rules overrides (1 files) are removed") || !os.IsNotExist(err) {
		t.Errorf("north's rules overrides after the deletion: %v (%s)", err, out)
	}
	waitFor(t, 2*time.Minute, "north's agents cut off by the front-ends", func() bool {
		for _, a := range agents {
			if schoolOf[a.id] == "north" && a.status().Uplink.Connected {
				return false
			}
		}
		return true
	})
	for _, a := range agents {
		if schoolOf[a.id] == "default" {
			waitFor(t, 60*time.Second, "default school's agent "+a.id+" still streaming", func() bool { return a.status().Uplink.Connected })
		}
	}
	for _, d := range c.devices() {
		if schoolOf[d.DeviceID] != "default" {
			t.Errorf("device %s of the deleted school is still listed", d.DeviceID)
		}
	}
}

// copyFiles copies the named files of src into dst (owner-only).
func copyFiles(t *testing.T, src, dst string, names ...string) {
	t.Helper()
	if err := os.MkdirAll(dst, 0o700); err != nil {
		t.Fatal(err)
	}
	for _, n := range names {
		b, err := os.ReadFile(filepath.Join(src, n))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dst, n), b, 0o600); err != nil {
			t.Fatal(err)
		}
	}
}
