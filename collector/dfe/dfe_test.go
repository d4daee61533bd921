package dfe

import (
	"bytes"
	"context"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/fleetcheck"
	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/rulesdist"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/triage"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

var now = time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return st
}

func pdfText(t *testing.T, fn func(io.Writer) error) string {
	t.Helper()
	var b bytes.Buffer
	if err := fn(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b.Bytes(), []byte("%PDF-")) {
		t.Fatalf("not a PDF: %q", b.Bytes()[:min(20, b.Len())])
	}
	p := filepath.Join(t.TempDir(), "pack.pdf")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-layout", p, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v: %s", err, out)
	}
	return string(out)
}

// TestEvidencePackFromRecords builds the pack from a real store holding
// every record it reads (the register, a review nearly a year old, a
// rules edit recorded by the distributor, exclusions, a revocation in the
// access log, a completed fleet check and selftest findings) and checks
// the PDF's text and the CSV say what those records say.
func TestEvidencePackFromRecords(t *testing.T) {
	st := openStore(t)
	svc := &Service{Store: st, Checks: &fleetcheck.Service{Store: st}, Now: func() time.Time { return now }}

	if _, err := svc.SetRoles("head1", []store.RoleHolder{
		{Role: store.DFESeniorLeader, Name: "Priya Shah", Contact: "p.shah@school.test"},
		{Role: store.DFEGovernor, Name: "Tom Evans"},
		{Role: store.DFEDSL, Name: "Grace Obi"},
		{Role: store.DFEITProvider, Name: "Northgate IT Ltd", Contact: "support desk"},
	}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.SetRoles("head1", []store.RoleHolder{{Role: "caretaker", Name: "x"}}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("unknown role: %v", err)
	}
	reviewDay := now.AddDate(0, 0, -350)
	if _, err := svc.AddReview("head1", store.DFEReview{Date: reviewDay, Attendees: []string{"Priya Shah", "Tom Evans", "Grace Obi"},
		Findings: "Blocklists current; screen monitoring on every pupil laptop", Actions: []string{"Add the sixth-form laptops to the pupil group"}}); err != nil {
		t.Fatal(err)
	}
	if _, err := svc.AddReview("head1", store.DFEReview{Date: reviewDay, Attendees: []string{"x"}, Findings: "y", NextReview: reviewDay.AddDate(2, 0, 0)}); !errors.Is(err, ErrBadRequest) {
		t.Fatalf("a next review two years on was accepted: %v", err)
	}
	st0, err := svc.Status()
	if err != nil || st0.State != reports.ReviewDueSoon || !strings.Contains(st0.Reminder, "is due on 2026-12-18") {
		t.Fatalf("review status %+v, %v", st0, err)
	}

	// The rules history, recorded by the real distributor: the seeded
	// default pack, then an edit of one file.
	rulesDir := filepath.Join(t.TempDir(), "rules")
	// The distributor's clock ticks inside the pack's period whatever the
	// day the test runs (the history is keyed by time).
	tick := now.Add(-2 * time.Hour)
	clock := rulesdist.WithClock(func() time.Time { tick = tick.Add(time.Minute); return tick })
	dist, err := rulesdist.New(rulesDir, slog.New(slog.NewTextHandler(io.Discard, nil)), rulesdist.WithHistory(st), clock)
	if err != nil {
		t.Fatal(err)
	}
	var edited string
	filepath.WalkDir(filepath.Join(rulesDir, "default"), func(p string, d os.DirEntry, err error) error {
		if edited == "" && err == nil && strings.HasSuffix(p, ".txt") {
			edited = p
		}
		return nil
	})
	if edited == "" {
		t.Fatal("no keyword library in the default pack")
	}
	b, _ := os.ReadFile(edited)
	if err := os.WriteFile(edited, append(b, []byte("\n# reviewed by the DSL\n")...), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := dist.Reload(); err != nil {
		t.Fatal(err)
	}
	changes, err := st.RulesChanges()
	if err != nil || len(changes) != 2 {
		t.Fatalf("rules history: %d changes, %v", len(changes), err)
	}
	rel, _ := filepath.Rel(filepath.Join(rulesDir, "default"), edited)
	if got := changes[1].Changed; len(got) != 1 || got[0] != filepath.ToSlash(rel) || changes[1].PrevHash != changes[0].Hash {
		t.Fatalf("edit recorded as %+v", changes[1])
	}
	// A restart with nothing changed records nothing more.
	if _, err := rulesdist.New(rulesDir, slog.New(slog.NewTextHandler(io.Discard, nil)), rulesdist.WithHistory(st), clock); err != nil {
		t.Fatal(err)
	}
	if again, _ := st.RulesChanges(); len(again) != 2 {
		t.Fatalf("a restart recorded %d changes", len(again)-2)
	}

	for _, x := range []store.Exclusion{
		{ID: "x1", RuleID: "kw-bullying", Term: "sick burn", Category: "bullying", Status: "approved", ProposedBy: "dsl2", ProposedAt: now.Add(-40 * 24 * time.Hour),
			ProposalReason: "game slang", ApprovedBy: "Grace Obi", ApprovedAt: now.Add(-39 * 24 * time.Hour), ApprovalReason: "agreed: slang", ExpiresAt: now.Add(50 * 24 * time.Hour)},
		{ID: "x2", RuleID: "kw-selfharm", Term: "cut the cake", Category: "self-harm", Status: "approved", ProposedBy: "dsl2", ProposedAt: now.Add(-100 * 24 * time.Hour),
			ProposalReason: "food tech lesson", ApprovedBy: "Grace Obi", ApprovedAt: now.Add(-99 * 24 * time.Hour), ApprovalReason: "for the lesson", ExpiresAt: now.Add(-90 * 24 * time.Hour)},
	} {
		if err := st.PutExclusion(x); err != nil {
			t.Fatal(err)
		}
	}
	if err := st.LogAccess(store.AccessEntry{Time: now.Add(-5 * 24 * time.Hour), Who: "tech1", Action: "revoke-device", DeviceID: "d-stolen", Reason: "laptop stolen"}); err != nil {
		t.Fatal(err)
	}

	devices := []store.Device{
		{DeviceID: "d-ok", Hostname: "LAB-PC-01", Group: "pupils", LastSeen: now},
		{DeviceID: "d-helper", Hostname: "LAB-PC-02", Group: "pupils", LastSeen: now},
		{DeviceID: "d-silent", Hostname: "LAB-PC-03", Group: "pupils", LastSeen: now.Add(-3 * time.Hour)},
		{DeviceID: "d-new", Hostname: "LAB-PC-04", Group: "pupils", LastSeen: now},
		{DeviceID: "d-stolen", Hostname: "STOLEN-LAPTOP", Group: "pupils", Revoked: true},
	}
	for _, d := range devices {
		if err := st.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	provedOK, provedHelper := now.Add(-10*time.Minute), now.Add(-9*time.Minute)
	for i, f := range []struct {
		dev string
		at  time.Time
	}{{"d-ok", provedOK}, {"d-helper", provedHelper}} {
		d, _ := structpb.NewStruct(map[string]any{"trigger": "collector", "nonce": "n" + f.dev})
		fd := &vigilv1.Finding{DeviceId: f.dev, Seq: uint64(i + 1), ObservedAt: timestamppb.New(f.at), Check: "selftest", RuleId: "selftest", Category: "selftest", Details: d}
		if _, _, err := st.CommitFindings(context.Background(), []*vigilv1.Finding{fd}); err != nil {
			t.Fatal(err)
		}
	}
	check := store.FleetCheck{ID: "fc-1", RequestedBy: "head1", RequestedAt: now.Add(-11 * time.Minute), CompletedAt: now.Add(-8 * time.Minute), Devices: []store.FleetCheckDevice{
		{DeviceID: "d-ok", Hostname: "LAB-PC-01", Group: "pupils", Outcome: fleetcheck.Working, ProvedAt: provedOK},
		{DeviceID: "d-helper", Hostname: "LAB-PC-02", Group: "pupils", Outcome: fleetcheck.SessionHelperMissing, Detail: "the selftest arrived, but a graphical session has had no session helper"},
		{DeviceID: "d-silent", Hostname: "LAB-PC-03", Group: "pupils", Outcome: fleetcheck.NotConnected, Detail: "silent: no heartbeat for 3h"},
	}}
	if err := st.PutFleetCheck(check); err != nil {
		t.Fatal(err)
	}

	alerts := reports.BuildMonitoring(reports.Snapshot{Now: now, Alerts: []store.Alert{
		{Finding: &vigilv1.Finding{ObservedAt: timestamppb.New(now.Add(-48 * time.Hour)), Category: "bullying"},
			State: store.AlertState{Status: triage.Concluded, Conclusion: "no_concern", ConcludedAt: now.Add(-46 * time.Hour),
				History: []store.HistoryEntry{{Time: now.Add(-47 * time.Hour), Action: string(triage.StartReview)}}}},
	}}, now.AddDate(0, 0, -365), now.Add(24*time.Hour))
	p, err := svc.Pack(now.AddDate(0, 0, -365), now.Add(24*time.Hour), alerts)
	if err != nil {
		t.Fatal(err)
	}

	text := pdfText(t, p.WritePDF)
	flat := strings.Join(strings.Fields(text), " ")
	for _, want := range []string{
		"Filtering and monitoring: evidence pack",
		"Senior leadership team member responsible", "Priya Shah", "Tom Evans", "Grace Obi", "Northgate IT Ltd",
		"REMINDER: The review of filtering and monitoring is due on 2026-12-18",
		"Blocklists current; screen monitoring on every pupil laptop", "Action: Add the sixth-form laptops to the pupil group",
		"rules change group default bundle", "changed keywords/", "exclusion expired",
		`exclusion approved rule kw-bullying term "sick burn" (bullying), proposed by dsl2. Reason: agreed: slang. Approved by Grace Obi. Expires 2027-01-22.`,
		"device revoked d-stolen. By tech1. Reason: laptop stolen.", "roles register updated",
		"Alert handling: 1 alerts", "first review",
		"Fleet check fc-1 requested by head1",
		"4 devices, 1 working end to end, 3 not.",
		"LAB-PC-01", "Working end to end",
		"LAB-PC-02 (d-helper): Session helper missing: screen not monitored",
		"LAB-PC-03 (d-silent): Not connected. silent: no heartbeat for 3h",
		"LAB-PC-04 (d-new): Not in a fleet check yet",
		"2026-12-03 09:50 UTC", // LAB-PC-01's last selftest
	} {
		if !strings.Contains(flat, want) {
			t.Errorf("the pack's PDF lacks %q:\n%s", want, text)
		}
	}
	if strings.Contains(flat, "STOLEN-LAPTOP") {
		t.Errorf("a revoked device is in the check record:\n%s", text)
	}

	var csv bytes.Buffer
	if err := p.WriteCSV(&csv); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{
		"role,dsl,Grace Obi,",
		"review_status,due_soon,2026-12-18,",
		`"exclusion approved: rule kw-bullying term ""sick burn"" (bullying), proposed by dsl2",reason: agreed: slang; approved by Grace Obi; expires 2027-01-22`,
		"rules change: group default bundle " + shortHash(changes[1].Hash) + ": changed " + filepath.ToSlash(rel) + ",by rules folder on the collector",
		"check_device,LAB-PC-02,session_helper_missing,",
		"check_device,LAB-PC-03,not_connected,d-silent; last proved never; silent: no heartbeat for 3h",
		"check_device,LAB-PC-01,working,d-ok; last proved 2026-12-03 09:50 UTC;",
	} {
		if !strings.Contains(csv.String(), want) {
			t.Errorf("the pack's CSV lacks %q:\n%s", want, csv.String())
		}
	}
}

// TestReviewReminderInMonitoringReport: the monitoring report carries the
// reminder once no review is within the year.
func TestReviewReminderInMonitoringReport(t *testing.T) {
	st := openStore(t)
	svc := &Service{Store: st, Now: func() time.Time { return now }}
	if _, err := svc.AddReview("head1", store.DFEReview{Date: now.AddDate(-1, 0, -3), Attendees: []string{"Priya Shah"}, Findings: "fine"}); err != nil {
		t.Fatal(err)
	}
	snap, err := reports.Load(context.Background(), st, now, now.AddDate(0, 0, -7), func(d store.Device) (reports.DeviceStatus, error) {
		return reports.DeviceStatus{Device: d}, nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m := reports.BuildMonitoring(snap, now.AddDate(0, 0, -7), now)
	text := strings.Join(strings.Fields(pdfText(t, m.WritePDF)), " ")
	if m.Review.State != reports.ReviewOverdue || !strings.Contains(text, "REMINDER: The review of filtering and monitoring was due on 2026-11-30") {
		t.Fatalf("monitoring report: state %s\n%s", m.Review.State, text)
	}
}

func shortHash(h string) string { return strings.TrimPrefix(h, "sha256:")[:12] }
