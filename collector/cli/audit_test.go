package cli

import (
	"bytes"
	"flag"
	"strings"
	"testing"

	"github.com/vigil-safeguarding/vigil/collector/audit"
)

func TestParseWithID(t *testing.T) {
	fs, data := dataFlags("audit show")
	asJSON := fs.Bool("json", false, "")
	id, err := parseWithID(fs, []string{"--data", "/d", "au-1", "--json"}, data)
	if err != nil || id != "au-1" || *data != "/d" || !*asJSON {
		t.Fatalf("id %q data %q json %v err %v", id, *data, *asJSON, err)
	}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	data = fs.String("data", "", "")
	if _, err := parseWithID(fs, []string{"--data", "/d"}, data); err == nil || !strings.Contains(err.Error(), "audit list") {
		t.Errorf("missing ID: %v", err)
	}
	fs = flag.NewFlagSet("x", flag.ContinueOnError)
	data = fs.String("data", "", "")
	if _, err := parseWithID(fs, []string{"--data", "/d", "a", "b"}, data); err == nil {
		t.Error("two IDs accepted")
	}
}

func TestProgressLine(t *testing.T) {
	p := audit.Progress{Total: 340, Answered: 312, Queued: 28, Offline: 28}
	if got := progressLine(p); got != "312/340 answered, 28 offline: queued" {
		t.Errorf("line %q", got)
	}
	p = audit.Progress{Total: 10, Answered: 5, NoAnswer: 3, NotReached: 2, Queued: 2, Offline: 1}
	if got := progressLine(p); got != "5/10 answered, 1 could not answer, 2 not reached, 1 offline: queued, 1 collecting" {
		t.Errorf("line %q", got)
	}
	if b := bar(audit.Progress{Total: 4, Queued: 1}, 8); b != "[######..]" {
		t.Errorf("bar %q", b)
	}
	if isTerminal(&bytes.Buffer{}) {
		t.Error("a buffer is no terminal")
	}
}

// A changed export is refused without any collector.
func TestAuditVerifyFileRefusesBadInput(t *testing.T) {
	var out bytes.Buffer
	dir := t.TempDir()
	if err := auditVerifyCmd([]string{"--file", dir + "/missing.json"}, &out); err == nil {
		t.Error("a missing file must be an error")
	}
}
