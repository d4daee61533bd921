package reports

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func testRecord(t *testing.T) audit.Record {
	t.Helper()
	inv := &vigilv1.Inventory{
		Hardware: &vigilv1.Hardware{Manufacturer: "Dell Inc.", Model: "OptiPlex 7090", Serial: "SN-4471", CpuModel: "Intel Core i5", CpuCores: 6, MemoryBytes: 16 << 30,
			Disks: []*vigilv1.Disk{{Mountpoint: "/", Fstype: "ext4", TotalBytes: 256 << 30, FreeBytes: 100 << 30}}},
		Os:       &vigilv1.OperatingSystem{Name: "debian", Version: "12.8", Kernel: "6.1.0", Arch: "amd64"},
		Accounts: []*vigilv1.LocalAccount{{Name: "itadmin", Administrator: true}, {Name: "pupil"}},
		Software: []*vigilv1.SoftwareItem{{Name: "libreoffice-writer", Version: "4:7.4.7", Publisher: "Debian LibreOffice Maintainers"}, {Name: "=cmd|calc", Version: "1"}},
		Compliance: []*vigilv1.ComplianceState{
			{RuleId: "av.clamav", Check: "antivirus", Status: "pass"},
			{RuleId: "bt.off", Check: "bluetooth", Key: "hci0", Status: "fail"},
		},
		Agent: &vigilv1.AgentHealth{Version: "1.4.0", RulesHash: "abcdef0123456789", SpoolDepth: 3},
	}
	body, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(inv)
	if err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 9, 30, 0, 0, time.UTC)
	return audit.Record{
		Header: audit.Header{ID: "a-20261202-0001", Scope: audit.Scope{Kind: "group", Value: "ict-suite"}, RequestedBy: "head1",
			Reason: "Annual ICT inventory for the governors", RequestedAt: at, ExpiresAt: at.Add(72 * time.Hour)},
		Hash: "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", Verified: true,
		Progress: audit.Progress{Total: 2, Answered: 1, NoAnswer: 1, NotReached: 1, Done: true},
		Results: []audit.DeviceResult{
			{DeviceInfo: audit.DeviceInfo{DeviceID: "dev-1", Hostname: "ict-pc-01", Group: "ict-suite"}, Status: "answered", AnsweredAt: at.Add(time.Minute), Inventory: json.RawMessage(body)},
			{DeviceInfo: audit.DeviceInfo{DeviceID: "dev-2", Hostname: "ict-pc-02", Group: "ict-suite"}, Status: "no-answer", NoAnswer: &audit.NoAnswer{Reason: audit.NotReached, Detail: "did not connect"}},
		},
		Signoffs: []audit.SignoffRecord{{Signoff: audit.Signoff{By: "Helen Head", Note: "Reviewed with the business manager"}, At: at.Add(2 * time.Hour), Hash: "1234567890abcdef"}},
		Diff:     &audit.Diff{Previous: "a-20261101-0001", PreviousAt: "2026-11-01T09:00:00Z", Devices: []audit.DeviceChange{{DeviceID: "dev-1", SoftwareAdded: []string{"libreoffice-writer 4:7.4.7"}}}},
	}
}

func pdfText(t *testing.T, pdf []byte) string {
	t.Helper()
	if _, err := exec.LookPath("pdftotext"); err != nil {
		t.Fatalf("pdftotext (poppler-utils) is needed: %v", err)
	}
	p := filepath.Join(t.TempDir(), "r.pdf")
	if err := os.WriteFile(p, pdf, 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-layout", p, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v: %s", err, out)
	}
	return string(out)
}

func TestAuditPDF(t *testing.T) {
	var b bytes.Buffer
	if err := AuditPDF(&b, testRecord(t)); err != nil {
		t.Fatal(err)
	}
	text := pdfText(t, b.Bytes())
	for _, want := range []string{
		"Device audit a-20261202-0001", "group ict-suite", "Annual ICT inventory for the governors", "head1",
		"9f86d081884c7d659a2feaa0c55ad015a3bf4f1b2b0b822cd15d6c15b0f00a08", "verified",
		"ict-pc-01", "ict-pc-02", "not reached: did not connect",
		"libreoffice-writer", "4:7.4.7", "Debian LibreOffice Maintainers", "OptiPlex 7090", "SN-4471", "debian 12.8",
		"itadmin", "Compliance by check", "antivirus", "bluetooth", "pass", "fail",
		"Signed off by Helen Head", "Reviewed with the business manager",
		"software added: libreoffice-writer",
	} {
		if !strings.Contains(text, want) {
			t.Errorf("PDF text lacks %q:\n%s", want, text)
		}
	}
}

func TestAuditPDFUnsignedAndUnverified(t *testing.T) {
	rec := testRecord(t)
	rec.Signoffs, rec.Verified, rec.VerifyError, rec.Diff = nil, false, "entry 2 was changed", nil
	var b bytes.Buffer
	if err := AuditPDF(&b, rec); err != nil {
		t.Fatal(err)
	}
	text := pdfText(t, b.Bytes())
	for _, want := range []string{"Not signed off.", "DOES NOT VERIFY: entry 2 was changed", "No earlier audit of this scope."} {
		if !strings.Contains(text, want) {
			t.Errorf("PDF text lacks %q:\n%s", want, text)
		}
	}
}

func TestAuditCSV(t *testing.T) {
	var b bytes.Buffer
	if err := AuditCSV(&b, testRecord(t)); err != nil {
		t.Fatal(err)
	}
	rows, err := csv.NewReader(&b).ReadAll()
	if err != nil {
		t.Fatal(err)
	}
	// header, two packages of dev-1, one no-answer row of dev-2
	if len(rows) != 4 {
		t.Fatalf("got %d rows, want 4: %q", len(rows), rows)
	}
	if rows[1][6] != "ict-pc-01" || rows[1][13] != "libreoffice-writer" || rows[1][2] != "Annual ICT inventory for the governors" {
		t.Errorf("first package row: %q", rows[1])
	}
	if rows[2][13] != "'=cmd|calc" {
		t.Errorf("a formula-like software name is not defused: %q", rows[2][13])
	}
	if rows[3][6] != "ict-pc-02" || !strings.Contains(rows[3][17], "not reached") {
		t.Errorf("no-answer row: %q", rows[3])
	}
}
