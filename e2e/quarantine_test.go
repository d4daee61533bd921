package e2e

import (
	"bytes"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestQuarantineCLI: a rule with action quarantine moves an unapproved
// executable out of a watched folder during `check --once`, and the
// `vigil-agent quarantine list|restore` commands show it and put it back
// byte-identical.
func TestQuarantineCLI(t *testing.T) {
	dir := t.TempDir()
	watched := filepath.Join(dir, "Downloads")
	rulesDir := filepath.Join(dir, "rules")
	state := filepath.Join(dir, "state")
	os.MkdirAll(watched, 0o755)
	os.MkdirAll(rulesDir, 0o700)
	elf, err := os.ReadFile("/bin/true")
	if err != nil {
		t.Fatal(err)
	}
	target := filepath.Join(watched, "game-launcher")
	if err := os.WriteFile(target, elf, 0o755); err != nil {
		t.Fatal(err)
	}
	rule := "apiVersion: vigil/v1\nid: exe-quarantine\nname: q\nrationale: test\nseverity: medium\ncategory: unapproved_software\ncheck: executables\n" +
		"params:\n  paths: [" + watched + "]\n  processes: false\n  software: false\n  action: quarantine\n"
	os.WriteFile(filepath.Join(rulesDir, "q.yaml"), []byte(rule), 0o600)

	out := mustRun(t, "vigil-agent", "check", "--once", "--rules", rulesDir, "--state", state, "--json")
	if !strings.Contains(out, "game-launcher") {
		t.Fatalf("executable not reported:\n%s", out)
	}
	if _, err := os.Stat(target); !os.IsNotExist(err) {
		t.Fatalf("executable still in place after quarantine: %v", err)
	}
	list := mustRun(t, "vigil-agent", "quarantine", "list", "--state", state, "--json")
	var entry struct {
		ID string `json:"id"`
	}
	if err := json.Unmarshal([]byte(strings.SplitN(list, "\n", 2)[0]), &entry); err != nil || entry.ID == "" {
		t.Fatalf("quarantine list: %q (%v)", list, err)
	}
	mustRun(t, "vigil-agent", "quarantine", "restore", "--state", state, entry.ID)
	back, err := os.ReadFile(target)
	if err != nil || !bytes.Equal(back, elf) {
		t.Fatalf("restore did not bring the file back intact: %v", err)
	}
}
