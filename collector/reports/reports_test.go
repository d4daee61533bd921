package reports

import (
	"bytes"
	"context"
	"fmt"
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

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/triage"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

var now = time.Date(2026, 12, 2, 12, 0, 0, 0, time.UTC)

// fixture is a real store with people, devices, alerts in several review
// states and exclusions; everything identifying is listed so the governors'
// report can be checked against it.
type fixture struct {
	st         *store.Store
	identities []string // names, usernames, terms, hostnames, device ids
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	f := &fixture{st: st}
	people := []store.Person{
		{Username: "jbloggs", DisplayName: "Jordan Bloggs", Role: "pupil", Year: "9"},
		{Username: "amirpatel", DisplayName: "Amir Patel", Role: "pupil", Year: "10"},
		{Username: "cwhitfield", DisplayName: "Chloe Whitfield", Role: "pupil", Year: "7"},
		{Username: "mr.okafor", DisplayName: "Daniel Okafor", Role: "staff"},
	}
	if err := st.PutPeople(people); err != nil {
		t.Fatal(err)
	}
	for _, p := range people {
		f.identities = append(f.identities, p.Username, p.DisplayName)
	}
	devices := []store.Device{
		{DeviceID: "d-7f3a91c2", Hostname: "LAB-PC-07", Group: "pupils", OS: "linux", LastSeen: now.Add(-time.Hour)},
		{DeviceID: "d-04be55aa", Hostname: "LIBRARY-LAPTOP-3", Group: "pupils", OS: "windows", LastSeen: now.Add(-72 * time.Hour)},
		{DeviceID: "d-c0ffee11", Hostname: "STAFFROOM-MAC", Group: "staff", OS: "darwin", LastSeen: now.Add(-5 * time.Minute)},
		{DeviceID: "d-dead0001", Hostname: "OLD-NETBOOK", Group: "pupils", OS: "linux", LastSeen: now.Add(-900 * time.Hour), Revoked: true},
	}
	for _, d := range devices {
		if err := st.PutDevice(d); err != nil {
			t.Fatal(err)
		}
		f.identities = append(f.identities, d.DeviceID, d.Hostname)
	}
	terms := map[string][]string{
		"self-harm": {"hurting myself", "cutting tips"},
		"bullying":  {"everyone hates chloe", "fat loser"},
		"extremism": {"join the movement now"},
	}
	for _, ts := range terms {
		f.identities = append(f.identities, ts...)
	}
	seq := uint64(0)
	add := func(dev, user, cat, term string, sev vigilv1.Severity, at time.Time, state func(*store.AlertState)) {
		seq++
		details, _ := structpb.NewStruct(map[string]any{"term": term, "context": "searching for " + term, "title": term + " - search", "process": "firefox"})
		fd := &vigilv1.Finding{DeviceId: dev, Seq: seq, Group: "pupils", ObservedAt: timestamppb.New(at), User: user,
			Check: "screen", RuleId: "screen-keywords", Severity: sev, Category: cat, Message: cat + " term in the active window title", Details: details}
		store.UpgradeLegacyAlert(fd) // as the collector's ingest does: the typed ScreenMatch makes it an alert
		if _, _, err := st.CommitFindings(context.Background(), []*vigilv1.Finding{fd}); err != nil {
			t.Fatal(err)
		}
		if state != nil {
			if _, err := st.UpdateAlertState(dev, seq, func(s *store.AlertState) error { state(s); return nil }); err != nil {
				t.Fatal(err)
			}
		}
	}
	concluded := func(at time.Time, first, closeAfter time.Duration, c string) func(*store.AlertState) {
		return func(s *store.AlertState) {
			s.Status, s.Reason, s.FirstReviewer = triage.Concluded, "fixture", "dsl1"
			s.History = []store.HistoryEntry{{Time: at.Add(first), By: "dsl1", Action: string(triage.StartReview)}, {Time: at.Add(closeAfter), By: "dsl1", Action: string(triage.Conclude)}}
			s.FirstSignedAt, s.Conclusion, s.ConcludedAt = at.Add(first), c, at.Add(closeAfter)
		}
	}
	// Autumn 2026: September to November, plenty of self-harm, a few of
	// the others; this week (from 2026-11-25): five alerts.
	for i := range 12 {
		at := time.Date(2026, 9, 3+i, 10, 0, 0, 0, time.UTC)
		add("d-7f3a91c2", "jbloggs", "self-harm", terms["self-harm"][i%2], vigilv1.Severity_SEVERITY_HIGH, at, concluded(at, time.Hour, 24*time.Hour, "no_concern"))
	}
	for i := range 7 {
		at := time.Date(2026, 10, 5+i, 11, 0, 0, 0, time.UTC)
		add("d-04be55aa", "amirpatel", "bullying", terms["bullying"][i%2], vigilv1.Severity_SEVERITY_MEDIUM, at, concluded(at, 2*time.Hour, 48*time.Hour, "kept_on_file"))
	}
	at := time.Date(2026, 10, 20, 9, 0, 0, 0, time.UTC)
	add("d-c0ffee11", "mr.okafor", "extremism", terms["extremism"][0], vigilv1.Severity_SEVERITY_CRITICAL, at, concluded(at, 30*time.Minute, 72*time.Hour, "referred_police"))
	// This week: reviewed after 1h, 2h, 3h, 10h; one untouched; one a
	// false positive.
	week := time.Date(2026, 11, 26, 9, 0, 0, 0, time.UTC)
	for i, d := range []time.Duration{time.Hour, 2 * time.Hour, 3 * time.Hour, 10 * time.Hour} {
		a := week.Add(time.Duration(i) * time.Hour)
		add("d-7f3a91c2", "cwhitfield", "self-harm", terms["self-harm"][0], vigilv1.Severity_SEVERITY_HIGH, a, concluded(a, d, 2*d, "parents_informed"))
	}
	add("d-04be55aa", "cwhitfield", "bullying", terms["bullying"][0], vigilv1.Severity_SEVERITY_LOW, week.Add(5*time.Hour), nil)
	fpAt := week.Add(6 * time.Hour)
	add("d-04be55aa", "amirpatel", "bullying", terms["bullying"][1], vigilv1.Severity_SEVERITY_LOW, fpAt, func(s *store.AlertState) {
		s.Status, s.FalsePositiveReason, s.FalsePositiveBy, s.FalsePositiveAt = triage.FalsePositive, "a song lyric", "dsl1", fpAt.Add(30*time.Minute)
		s.History = []store.HistoryEntry{{Time: fpAt.Add(30 * time.Minute), By: "dsl1", Action: string(triage.MarkFalse)}}
	})
	for _, x := range []store.Exclusion{
		{ID: "x1", RuleID: "kw-77", Term: "fat loser", Category: "bullying", Status: "approved", ApprovedBy: "dsl1", ExpiresAt: now.Add(5 * 24 * time.Hour)},
		{ID: "x2", RuleID: "kw-12", Term: "cutting tips", Category: "self-harm", Status: "approved", ApprovedBy: "head1", ExpiresAt: now.Add(60 * 24 * time.Hour)},
		{ID: "x3", RuleID: "kw-13", Term: "hurting myself", Category: "self-harm", Status: "approved", ApprovedBy: "head1", ExpiresAt: now.Add(-time.Hour)},
		{ID: "x4", RuleID: "kw-14", Term: "join the movement now", Category: "extremism", Status: "pending", ProposedBy: "dsl1"},
	} {
		if err := st.PutExclusion(x); err != nil {
			t.Fatal(err)
		}
	}
	return f
}

// judge: LAB-PC-07 fails antivirus; the Mac is connected.
func judge(d store.Device) (DeviceStatus, error) {
	ds := DeviceStatus{Device: d, Connected: d.DeviceID == "d-c0ffee11", Compliance: map[string]string{"antivirus": "pass", "bluetooth": "pass"}}
	if d.DeviceID == "d-7f3a91c2" {
		ds.Compliance["antivirus"], ds.Compliance["executables"] = "fail", "fail"
	}
	return ds, nil
}

func (f *fixture) snapshot(t *testing.T) Snapshot {
	t.Helper()
	s, err := Load(context.Background(), f.st, now, time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC), judge)
	if err != nil {
		t.Fatal(err)
	}
	return s
}

// renderText renders with fn and extracts the text with poppler's pdftotext.
func renderText(t *testing.T, fn func(io.Writer) error) string {
	t.Helper()
	var b bytes.Buffer
	if err := fn(&b); err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(b.Bytes(), []byte("%PDF-")) {
		t.Fatalf("not a PDF: %q", b.Bytes()[:min(20, b.Len())])
	}
	p := filepath.Join(t.TempDir(), "r.pdf")
	if err := os.WriteFile(p, b.Bytes(), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command("pdftotext", "-layout", p, "-").CombinedOutput()
	if err != nil {
		t.Fatalf("pdftotext: %v: %s", err, out)
	}
	return string(out)
}

func TestMonitoringFromStore(t *testing.T) {
	f := newFixture(t)
	from := time.Date(2026, 11, 25, 0, 0, 0, 0, time.UTC)
	m := BuildMonitoring(f.snapshot(t), from, now)
	if m.Total != 6 {
		t.Fatalf("total %d, want 6", m.Total)
	}
	if fmt.Sprint(m.ByCategory) != fmt.Sprint([]Count{{"self-harm", "self-harm", 4}, {"bullying", "bullying", 2}}) {
		t.Errorf("by category %v", m.ByCategory)
	}
	if fmt.Sprint(m.BySeverity) != fmt.Sprint([]Count{{"high", "high", 4}, {"low", "low", 2}}) {
		t.Errorf("by severity %v", m.BySeverity)
	}
	outcomes := map[string]int{}
	for _, c := range m.ByOutcome {
		outcomes[c.Key] = c.N
	}
	if outcomes["new"] != 1 || outcomes["parents_informed"] != 4 || outcomes["false_positive"] != 1 || outcomes["no_concern"] != 0 {
		t.Errorf("by outcome %v", m.ByOutcome)
	}
	// First review after 1h, 2h, 3h, 10h and 30m (the false positive):
	// median 2h, p90 (nearest rank, 5 values) 10h. Closed after 30m, 2h,
	// 4h, 6h, 20h: median 4h, p90 20h.
	if m.ToFirstReview != (Durations{5, 2 * time.Hour, 10 * time.Hour}) {
		t.Errorf("to first review %+v", m.ToFirstReview)
	}
	if m.ToConclusion != (Durations{5, 4 * time.Hour, 20 * time.Hour}) {
		t.Errorf("to conclusion %+v", m.ToConclusion)
	}
	if len(m.InForce) != 2 || m.InForce[0].ID != "x1" || !m.InForce[0].Expiring || m.InForce[1].ID != "x2" || m.InForce[1].Expiring {
		t.Errorf("in force %+v (want x1 expiring, x2; x3 expired)", m.InForce)
	}
	if len(m.Pending) != 1 || m.Pending[0].ID != "x4" {
		t.Errorf("pending %+v", m.Pending)
	}
	if len(m.OutOfCompliance) != 1 || m.OutOfCompliance[0].Hostname != "LAB-PC-07" || strings.Join(m.OutOfCompliance[0].Failing, ",") != "antivirus,executables" {
		t.Errorf("out of compliance %+v", m.OutOfCompliance)
	}
	if len(m.NotReporting) != 1 || m.NotReporting[0].Hostname != "LIBRARY-LAPTOP-3" {
		t.Errorf("not reporting %+v (the revoked netbook is not listed)", m.NotReporting)
	}

	text := renderText(t, m.WritePDF)
	for _, want := range []string{"Monitoring report", "2026-11-25", "Alerts: 6", "By category", "self-harm", "By outcome", "Parents informed",
		"False positive", "first review", "2h 00m", "10h 00m", "4h 00m", "20h 00m", "Exclusions in force: 2", "fat loser", "(expiring)",
		"Devices out of compliance: 1", "LAB-PC-07", "antivirus, executables", "Devices not reporting: 1", "LIBRARY-LAPTOP-3", "2026-11-29 12:00 UTC"} {
		if !strings.Contains(text, want) {
			t.Errorf("monitoring PDF lacks %q:\n%s", want, text)
		}
	}
	for _, gone := range []string{"hurting myself", "OLD-NETBOOK"} { // the expired exclusion, the revoked device
		if strings.Contains(text, gone) {
			t.Errorf("monitoring PDF shows %q", gone)
		}
	}
	var csv bytes.Buffer
	if err := m.WriteCSV(&csv); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"alerts,total,6,", "by_category,self-harm,4,", "to_first_review,median_minutes,120,", "to_conclusion,p90_minutes,1200,",
		"exclusion_in_force,x1,kw-77 fat loser,", "EXPIRING 2026-12-07", "out_of_compliance,LAB-PC-07,antivirus executables,d-7f3a91c2", "not_reporting,LIBRARY-LAPTOP-3,"} {
		if !strings.Contains(csv.String(), want) {
			t.Errorf("monitoring CSV lacks %q:\n%s", want, csv.String())
		}
	}
}

func TestGovernorsFromStore(t *testing.T) {
	f := newFixture(t)
	term := TermOf(now)
	if term.Name != "Autumn 2026" || !term.From.Equal(time.Date(2026, 9, 1, 0, 0, 0, 0, time.UTC)) {
		t.Fatalf("term %+v", term)
	}
	g := BuildGovernors(f.snapshot(t), term.From, term.To)
	// Term: self-harm 12 (Sep) + 4 (Nov) = 16, bullying 7 (Oct) + 2 (Nov)
	// = 9, extremism 1 (Oct): 26 alerts.
	if g.ByCategory.Total.String() != "26" {
		t.Errorf("total %v", g.ByCategory.Total)
	}
	col := func(gr *Grid, key string) Cell {
		for j, c := range gr.Cols {
			if c == key {
				return gr.ColTotal[j]
			}
		}
		t.Fatalf("no column %q in %v", key, gr.Cols)
		return Cell{}
	}
	if c := col(g.ByCategory, "extremism"); !c.Suppressed {
		t.Errorf("extremism (1 alert) shown as %v", c)
	}
	if c := col(g.ByCategory, "self-harm"); c.Hidden() || c.N != 16 {
		t.Errorf("self-harm %v, want 16 shown", c)
	}
	checkProtected(t, g.ByCategory, g.ByOutcome)

	text := renderText(t, g.WritePDF)
	var csv bytes.Buffer
	if err := g.WriteCSV(&csv); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"governors' report", "2026-09-01", "Alerts: 26", "Alerts by month and category", "Sep 2026", "self-harm", "16",
		"fewer than 5", "The term by outcome", "No concern", "Referred to Police"} {
		if !strings.Contains(text, want) {
			t.Errorf("governors' PDF lacks %q:\n%s", want, text)
		}
	}
	if !strings.Contains(csv.String(), "by_category,term,self-harm,16") || !strings.Contains(csv.String(), "by_category,term,extremism,fewer than 5") {
		t.Errorf("governors' CSV:\n%s", csv.String())
	}
	// The very data that produced the report: no name, username, term,
	// hostname or device id appears in the PDF's text or the CSV.
	pdfFlat := strings.ToLower(strings.Join(strings.Fields(text), " "))
	csvFlat := strings.ToLower(csv.String())
	if len(f.identities) < 20 {
		t.Fatalf("fixture lists only %d identities", len(f.identities))
	}
	for _, id := range f.identities {
		if strings.Contains(pdfFlat, strings.ToLower(id)) {
			t.Errorf("governors' PDF contains %q", id)
		}
		if strings.Contains(csvFlat, strings.ToLower(id)) {
			t.Errorf("governors' CSV contains %q", id)
		}
	}
	// And the monitoring report, built from the same store, does contain
	// the hostnames and terms: the check above is not vacuous.
	mon := renderText(t, BuildMonitoring(f.snapshot(t), term.From, now).WritePDF)
	if !strings.Contains(mon, "LAB-PC-07") || !strings.Contains(mon, "fat loser") {
		t.Errorf("monitoring PDF lacks the identities the governors' must not have")
	}
}
