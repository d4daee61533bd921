package inventory

import (
	"context"
	"os"
	"os/exec"
	"strings"
	"testing"
)

// TestCollectLinux collects from this machine's real sources: dpkg's
// database, /etc/passwd, gopsutil's hardware facts.
func TestCollectLinux(t *testing.T) {
	if _, err := os.Stat("/var/lib/dpkg/status"); err != nil {
		t.Skip("no dpkg database on this machine")
	}
	c := &Collector{}
	inv, err := c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("dpkg-query", "-W", "-f", "${Package} ${Version}\n", "bash").Output()
	if err != nil {
		t.Fatal(err)
	}
	want := strings.Fields(string(out))
	var found bool
	for _, s := range inv.Software {
		if s.Name == "bash" && s.Version == want[1] && s.Source == "dpkg" && s.InstallDate != "" {
			found = true
		}
	}
	if !found {
		t.Errorf("bash %s (as dpkg-query says) not in the software list of %d items", want[1], len(inv.Software))
	}
	if inv.Hardware.CpuCores <= 0 || inv.Hardware.MemoryBytes == 0 || len(inv.Hardware.Interfaces) == 0 || inv.Os.Name == "" || inv.Os.LastBoot == nil {
		t.Errorf("hardware/os facts missing: %v %v", inv.Hardware, inv.Os)
	}
	var root bool
	for _, a := range inv.Accounts {
		root = root || (a.Name == "root" && a.Administrator)
	}
	if !root {
		t.Errorf("root administrator not among accounts %v", inv.Accounts)
	}
	if inv.CpuMicros < 0 || inv.WallMicros <= 0 {
		t.Errorf("cost not measured: cpu %d wall %d", inv.CpuMicros, inv.WallMicros)
	}
	t.Logf("%d software items, %d errors (%v), %d µs CPU", len(inv.Software), len(inv.Errors), inv.Errors, inv.CpuMicros)
}
