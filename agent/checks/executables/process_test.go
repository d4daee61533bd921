package executables

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"
)

// startDenied runs a copy of sleep named nmap-test.
func startDenied(t *testing.T) *exec.Cmd {
	t.Helper()
	var src string
	for _, p := range []string{"/bin/sleep", "/usr/bin/sleep"} {
		if _, err := os.Stat(p); err == nil {
			src = p
			break
		}
	}
	if src == "" {
		t.Skip("no sleep binary")
	}
	data, err := os.ReadFile(src)
	if err != nil {
		t.Fatal(err)
	}
	exe := filepath.Join(t.TempDir(), "nmap-test")
	writeFile(t, exe, data, 0o755)
	cmd := exec.Command(exe, "30")
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	return cmd
}

const procRule = `files: false
software: false
deny:
  - {name: "nmap*", category: hacking_tools, severity: high, reason: network scanner}
`

func TestProcessScanFindsDenied(t *testing.T) {
	cmd := startDenied(t)
	s := newSink()
	if err := testCheck.Poll(context.Background(), testRule(t, procRule), s.emit); err != nil {
		t.Fatal(err)
	}
	obs := s.all()
	if len(obs) != 1 {
		t.Fatalf("observations %+v", obs)
	}
	o := obs[0]
	exe, _ := os.Readlink("/proc/" + itoa(cmd.Process.Pid) + "/exe")
	data, _ := os.ReadFile(cmd.Path)
	if o.Details["pid"] != int64(cmd.Process.Pid) || o.Details["path"] != exe || o.Details["sha256"] != sha(data) ||
		o.Details["action_taken"] != "alert" || o.Key != exe+":"+sha(data) || o.Severity.String() != "high" {
		t.Fatalf("%+v", o)
	}
	if m := o.Details["matched"].(map[string]any); m["category"] != "hacking_tools" {
		t.Errorf("matched %v", m)
	}
	if cmd.ProcessState != nil {
		t.Error("process ended without kill")
	}
}

func TestProcessScanKills(t *testing.T) {
	cmd := startDenied(t)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	s := newSink()
	if err := testCheck.Poll(context.Background(), testRule(t, procRule+"kill: true\n"), s.emit); err != nil {
		t.Fatal(err)
	}
	if obs := s.all(); len(obs) != 1 || obs[0].Details["action_taken"] != "killed" {
		t.Fatalf("%+v", obs)
	}
	select {
	case err := <-done:
		if err == nil {
			t.Error("process exited normally, not killed")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("denied process still running")
	}
}

func itoa(n int) string { return fmtInt(int64(n)) }
