package e2e

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"
)

// auditRecord is the part of `audit show --json` this test reads.
type auditRecord struct {
	ID          string `json:"id"`
	RequestedBy string `json:"requested_by"`
	Reason      string `json:"reason"`
	Hash        string `json:"hash"`
	Verified    bool   `json:"verified"`
	Scope       struct{ Kind, Value string }
	Progress    struct {
		Total, Answered, Queued, Offline int
		Done                             bool
	} `json:"progress"`
	Results []struct {
		DeviceID  string `json:"device_id"`
		Status    string `json:"status"`
		Inventory struct {
			Hardware struct {
				CPUModel    string `json:"cpu_model"`
				CPUCores    int    `json:"cpu_cores"`
				MemoryBytes string `json:"memory_bytes"` // uint64: a JSON string in protojson
				Disks       []struct {
					Mountpoint string `json:"mountpoint"`
					TotalBytes string `json:"total_bytes"`
					FreeBytes  string `json:"free_bytes"`
				} `json:"disks"`
				Interfaces []struct {
					Name      string   `json:"name"`
					Addresses []string `json:"addresses"`
				} `json:"interfaces"`
			} `json:"hardware"`
			OS struct {
				Name     string `json:"name"`
				LastBoot string `json:"last_boot"`
			} `json:"os"`
			Accounts []struct {
				Name          string `json:"name"`
				Administrator bool   `json:"administrator"`
			} `json:"accounts"`
			Software []struct {
				Name, Version, Publisher, Source string
				InstallDate                      string `json:"install_date"`
			} `json:"software"`
			Compliance []struct {
				RuleID string `json:"rule_id"`
				Check  string `json:"check"`
				Status string `json:"status"`
			} `json:"compliance"`
			Agent struct {
				Version   string `json:"version"`
				RulesHash string `json:"rules_hash"`
			} `json:"agent"`
		} `json:"inventory"`
	} `json:"results"`
	Signoffs []struct{ By string } `json:"signoffs"`
}

func (c *collector) audit(id string) auditRecord {
	c.t.Helper()
	var r auditRecord
	out := mustRun(c.t, "vigil-collector", "audit", "show", "--data", c.data, id, "--json")
	if err := json.Unmarshal([]byte(out), &r); err != nil {
		c.t.Fatalf("audit show --json: %v\n%s", err, tail(out, 2000))
	}
	return r
}

// TestAuditGroupWithOfflineDevice: a headteacher audits a group of three
// real agents, one of them offline; the CLI shows progress and prints the
// audit ID; the offline one answers when it reconnects; the record lists
// this machine's real dpkg software, hardware facts and each agent's
// compliance; the hash chain verifies, sign-off is one more link, and a
// changed export is refused.
func TestAuditGroupWithOfflineDevice(t *testing.T) {
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		t.Skip("needs a dpkg system")
	}
	c := newCollector(t)
	agents := []*agent{enrollAgent(t, c, "staff"), enrollAgent(t, c, "staff"), enrollAgent(t, c, "staff")}
	other := enrollAgent(t, c, "pupils")
	agents[0].start()
	agents[1].start()
	other.start()
	// Wait for the running agents' posture (default rules) to reach the
	// collector, so the compliance they report can be compared.
	for _, a := range agents[:2] {
		waitFor(t, 60*time.Second, "posture findings of "+a.id, func() bool {
			for _, f := range c.findings(a.id) {
				if f.Status == "pass" || f.Status == "fail" {
					return true
				}
			}
			return false
		})
	}
	waitFor(t, 60*time.Second, "two staff agents connected", func() bool {
		n := 0
		for _, d := range c.devices() {
			if d.Group == "staff" && d.Connected {
				n++
			}
		}
		return n == 2
	})

	stdout, stderr, code := run(t, "vigil-collector", "audit", "request", "--data", c.data, "--group", "staff",
		"--reason", "termly ICT audit (000 §5.2)", "--by", "Mrs Head", "--wait", "2m")
	if code != 0 {
		t.Fatalf("audit request: exit %d: %s", code, stderr)
	}
	id := strings.TrimSpace(stdout)
	if !strings.HasPrefix(id, "au-") || strings.Contains(id, "\n") {
		t.Fatalf("stdout must be the audit ID alone, got %q", stdout)
	}
	if !strings.Contains(stderr, "2/3 answered, 1 offline: queued") {
		t.Fatalf("progress on stderr: %q", stderr)
	}
	r := c.audit(id)
	if r.Progress.Answered != 2 || r.Progress.Offline != 1 || r.Progress.Done || r.RequestedBy != "Mrs Head" || r.Scope.Kind != "group" {
		t.Fatalf("record before the third connects: %+v", r.Progress)
	}

	// The queue is durable: the collector restarts before the offline
	// device comes back, which then gets the request when it connects.
	if err := c.p.stop(); err != nil {
		t.Fatal(err)
	}
	c.start()
	agents[2].start()
	waitFor(t, 60*time.Second, "the reconnected agent's answer", func() bool { return c.audit(id).Progress.Done })
	r = c.audit(id)
	if !r.Verified || r.Progress.Answered != 3 || len(r.Results) != 3 {
		t.Fatalf("record: verified %v progress %+v", r.Verified, r.Progress)
	}

	// Real facts of this machine.
	q, err := exec.Command("dpkg-query", "-W", "-f", "${Version}", "bash").Output()
	if err != nil {
		t.Fatal(err)
	}
	bashVersion := string(q)
	for _, res := range r.Results {
		inv := res.Inventory
		if res.Status != "answered" {
			t.Fatalf("device %s: %s", res.DeviceID, res.Status)
		}
		var bash bool
		for _, s := range inv.Software {
			bash = bash || (s.Name == "bash" && s.Version == bashVersion && s.Source == "dpkg" && s.Publisher != "" && s.InstallDate != "")
		}
		if !bash || len(inv.Software) < 50 {
			t.Errorf("device %s: bash %s not among %d software items", res.DeviceID, bashVersion, len(inv.Software))
		}
		hw := inv.Hardware
		if hw.CPUCores != runtime.NumCPU() || hw.MemoryBytes == "" || hw.MemoryBytes == "0" || len(hw.Disks) == 0 {
			t.Errorf("device %s hardware: %+v", res.DeviceID, hw)
		}
		var lo bool
		for _, i := range hw.Interfaces {
			for _, a := range i.Addresses {
				lo = lo || strings.HasPrefix(a, "127.0.0.1")
			}
		}
		if !lo {
			t.Errorf("device %s: no interface with 127.0.0.1: %+v", res.DeviceID, hw.Interfaces)
		}
		var root bool
		for _, a := range inv.Accounts {
			root = root || (a.Name == "root" && a.Administrator)
		}
		if !root || inv.OS.Name == "" || inv.OS.LastBoot == "" {
			t.Errorf("device %s: accounts %v os %+v", res.DeviceID, inv.Accounts, inv.OS)
		}
		if inv.Agent.Version == "" || !strings.HasPrefix(inv.Agent.RulesHash, "sha256:") {
			t.Errorf("device %s agent health %+v", res.DeviceID, inv.Agent)
		}
	}
	// Compliance matches what the agents reported as posture findings.
	for _, a := range agents[:2] {
		latest := map[string]string{}
		for _, f := range c.findings(a.id) {
			if f.Status != "" {
				latest[f.RuleID] = f.Status
			}
		}
		for _, res := range r.Results {
			if res.DeviceID != a.id {
				continue
			}
			matched := 0
			for _, cs := range res.Inventory.Compliance {
				if want, ok := latest[cs.RuleID]; ok && want == cs.Status && cs.Check != "" {
					matched++
				}
			}
			if matched == 0 || matched < len(latest) {
				t.Errorf("device %s: compliance %+v does not match its posture findings %v", a.id, res.Inventory.Compliance, latest)
			}
		}
	}

	// Verify, sign off, export, and a changed export is refused.
	if out := mustRun(t, "vigil-collector", "audit", "verify", "--data", c.data, id); !strings.Contains(out, "verified") {
		t.Fatalf("verify: %s", out)
	}
	signOut := mustRun(t, "vigil-collector", "audit", "sign", "--data", c.data, id, "--by", "Mrs Head")
	r2 := c.audit(id)
	if len(r2.Signoffs) != 1 || r2.Signoffs[0].By != "Mrs Head" || r2.Hash == r.Hash || !r2.Verified || !strings.Contains(signOut, r2.Hash) {
		t.Fatalf("after sign-off: %s / %+v", signOut, r2.Signoffs)
	}
	export := filepath.Join(t.TempDir(), "audit.json")
	mustRun(t, "vigil-collector", "audit", "export", "--data", c.data, id, "--out", export)
	if out := mustRun(t, "vigil-collector", "audit", "verify", "--file", export); !strings.Contains(out, r2.Hash) {
		t.Fatalf("verify --file: %s", out)
	}
	b, _ := os.ReadFile(export)
	changed := strings.Replace(string(b), `{"name":"bash","version":"`+bashVersion+`"`, `{"name":"bash","version":"0.0-forged"`, 1)
	if changed == string(b) {
		t.Fatalf("bash version not found in the export to change")
	}
	os.WriteFile(export, []byte(changed), 0o600)
	out, _, code := run(t, "vigil-collector", "audit", "verify", "--file", export)
	if code == 0 || !strings.Contains(out, "DOES NOT VERIFY") || !strings.Contains(out, "was changed") {
		t.Fatalf("a changed record must be refused: exit %d: %s", code, out)
	}
	// The pupil device outside the scope is not in the record; list shows the audit.
	for _, res := range r2.Results {
		if res.DeviceID == other.id {
			t.Error("device outside the scope in the record")
		}
	}
	if out := mustRun(t, "vigil-collector", "audit", "list", "--data", c.data); !strings.Contains(out, id) || !strings.Contains(out, "termly ICT audit") {
		t.Errorf("audit list: %s", out)
	}
	if out := mustRun(t, "vigil-collector", "audit", "show", "--data", c.data, id); !strings.Contains(out, "verified") || !strings.Contains(out, "signed off by Mrs Head") {
		t.Errorf("audit show: %s", out)
	}

	// The agents that were online before the restart reconnect with a
	// backoff; a device still waiting on it would be "offline: queued" in
	// the next audit and show up as missing from the comparison.
	waitFor(t, 60*time.Second, "all four agents reconnected after the restart", func() bool {
		n := 0
		for _, d := range c.devices() {
			if d.Connected {
				n++
			}
		}
		return n == 4
	})

	// A second audit of the same group is compared with this one: same
	// machine, same software, so no changes, and it names its previous.
	id2 := strings.TrimSpace(mustRun(t, "vigil-collector", "audit", "request", "--data", c.data, "--group", "staff", "--reason", "follow-up", "--wait", "2m"))
	var again struct {
		Diff *struct {
			Previous       string   `json:"previous"`
			DevicesNew     []string `json:"devices_new"`
			DevicesMissing []string `json:"devices_missing"`
		} `json:"diff"`
		PreviousHash string `json:"previous_hash"`
	}
	if err := json.Unmarshal([]byte(mustRun(t, "vigil-collector", "audit", "show", "--data", c.data, id2, "--json")), &again); err != nil {
		t.Fatal(err)
	}
	if again.Diff == nil || again.Diff.Previous != id || again.PreviousHash != r2.Hash || len(again.Diff.DevicesNew)+len(again.Diff.DevicesMissing) != 0 {
		t.Errorf("second audit's comparison: %+v (previous hash %s, want %s)", again.Diff, again.PreviousHash, r2.Hash)
	}

	// On a terminal the progress is a bar redrawn in place (script(1)
	// gives the CLI a pseudo-terminal); the whole fleet is four devices.
	if _, err := exec.LookPath("script"); err == nil {
		cmd := exec.Command("script", "-qec", filepath.Join(binDir, "vigil-collector")+" audit request --data "+c.data+" --all --reason 'tty check' --wait 2m", "/dev/null")
		b, err := cmd.CombinedOutput()
		if err != nil {
			t.Fatalf("audit request on a pty: %v: %s", err, b)
		}
		if !strings.Contains(string(b), "\r[##############################] 4/4 answered") {
			t.Errorf("no progress bar on a terminal: %q", b)
		}
	}
}
