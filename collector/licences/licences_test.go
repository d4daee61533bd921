package licences

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func openStore(t *testing.T) *store.Store {
	t.Helper()
	s, err := store.Open(t.TempDir(), store.Options{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// recordAudit writes an audit the way collector/audit does: a header, then
// each device's inventory as protojson with proto names.
func recordAudit(t *testing.T, s *store.Store, id string, at time.Time, answers map[string][]*vigilv1.SoftwareItem) {
	t.Helper()
	h := audit.Header{ID: id, Scope: audit.Scope{Kind: "all"}, RequestedBy: "head", Reason: "licences", RequestedAt: at, ExpiresAt: at.Add(time.Hour)}
	var queue []store.AuditQueued
	for d := range answers {
		h.Devices = append(h.Devices, audit.DeviceInfo{DeviceID: d})
		queue = append(queue, store.AuditQueued{DeviceID: d, ExpiresAt: at.Add(time.Hour)})
	}
	hb, _ := json.Marshal(h)
	if _, err := s.CreateAudit(id, at, hb, queue); err != nil {
		t.Fatal(err)
	}
	for d, sw := range answers {
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(&vigilv1.Inventory{Software: sw})
		if err != nil {
			t.Fatal(err)
		}
		if _, err := s.AppendAuditEntry(id, store.AuditAnswerEntry, d, at.Add(time.Minute), b); err != nil {
			t.Fatal(err)
		}
	}
}

func win(name, version, publisher string) *vigilv1.SoftwareItem {
	return &vigilv1.SoftwareItem{Name: name, Version: version, Publisher: publisher, Source: "registry"}
}

const licenceCSV = `Product,Publisher,Seats,Expiry,Reference
Microsoft Office 2021,Microsoft,2,,EES-1
Adobe Acrobat Reader,Adobe,5,2027-08-31,ADB-7
SMART Notebook,SMART Technologies,3,31/07/2026,SM-22
`

func TestReconcileOverAudits(t *testing.T) {
	s := openStore(t)
	now := time.Date(2026, 12, 2, 10, 0, 0, 0, time.UTC)
	svc := &Service{Store: s, Now: func() time.Time { return now }}
	ctx := context.Background()
	res, err := svc.Import(ctx, strings.NewReader(licenceCSV), "bursar")
	if err != nil || res.Added != 3 {
		t.Fatalf("import: %+v %v", res, err)
	}
	a, b, c, gone := strings.Repeat("A", 26), strings.Repeat("B", 26), strings.Repeat("C", 26), strings.Repeat("D", 26)
	office := win("Microsoft Office Professional Plus 2021", "16.0.14332.20255", "Microsoft Corporation")
	// An older audit: device A had Zoom then; its latest audit is what counts.
	recordAudit(t, s, "au-old", now.Add(-48*time.Hour), map[string][]*vigilv1.SoftwareItem{
		a: {win("Zoom Workplace", "6.0", "Zoom Video Communications")},
	})
	recordAudit(t, s, "au-new", now.Add(-time.Hour), map[string][]*vigilv1.SoftwareItem{
		a: {office, win("Adobe Acrobat Reader DC (64-bit)", "24.001", "Adobe Inc."),
			win("Microsoft Visual C++ 2015-2022 Redistributable (x64)", "14.38", "Microsoft Corporation"),
			{Name: "libreoffice-core", Version: "4:7.3", Publisher: "Debian", Source: "dpkg"}},
		b: {office, win("Microsoft Office Standard 2021 - en-gb", "16.0.1", "Microsoft Corporation"), // one seat per device
			win("SMART Notebook 22.1", "22.1.5", "SMART Technologies"),
			win("Minecraft Education", "1.20", "Mojang"), win("Notepad++ (64-bit x64)", "8.6", "Notepad++ Team")},
		c:    {office, win("Minecraft: Education Edition", "1.21", "Mojang"), win("Notepad++", "8.5", "Notepad++ Team")},
		gone: {office},
	})
	// A disposed device no longer holds a seat.
	if err := s.PutDevice(store.Device{DeviceID: gone, Hostname: "old-lab-1"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Dispose(store.Disposal{DeviceID: gone, AuthorisedBy: "head", Wiped: "DBAN", Method: "WEEE recycler", RecordedAt: now}); err != nil {
		t.Fatal(err)
	}
	// The technician says Notepad++ is free: ignore it.
	if _, err := svc.SetAlias(ctx, "Notepad++ 8.6", "", true, "tech"); err != nil {
		t.Fatal(err)
	}
	rep, err := svc.Reconcile(ctx)
	if err != nil {
		t.Fatal(err)
	}
	prods := map[string]Product{}
	for _, p := range rep.Products {
		prods[p.Title] = p
	}
	if rep.Devices != 3 {
		t.Errorf("devices %d, want 3 (the disposed device left out)", rep.Devices)
	}
	if p := prods["microsoft office 2021"]; p.Purchased != 2 || p.Installed != 3 || p.OverQuota != 1 || p.Unused != 0 {
		t.Errorf("office: %+v, want 2 purchased, 3 installed, 1 over quota", p)
	}
	if p := prods["adobe acrobat reader"]; p.Installed != 1 || p.Unused != 4 || p.Expired {
		t.Errorf("reader: %+v", p)
	}
	if p := prods["smart notebook"]; !p.Expired || p.ExpiredSeats != 3 || p.Valid != 0 || p.Installed != 1 || p.OverQuota != 1 {
		t.Errorf("notebook (expired July 2026): %+v", p)
	}
	if len(rep.Unlicensed) != 1 || rep.Unlicensed[0].Title != "minecraft" || rep.Unlicensed[0].Installed != 2 || len(rep.Unlicensed[0].Names) != 2 {
		t.Errorf("unlicensed %+v, want only Minecraft on 2 devices (Zoom is gone from A's latest audit, the runtime and dpkg packages are components, Notepad++ ignored)", rep.Unlicensed)
	}
	rules := map[string]string{}
	for _, m := range rep.Matches {
		rules[m.DeviceID+" "+m.Name] = m.Rule
	}
	for k, want := range map[string]string{
		a + " Microsoft Office Professional Plus 2021": RuleExact,
		a + " Adobe Acrobat Reader DC (64-bit)":        RuleExact,
		b + " Notepad++ (64-bit x64)":                  RuleIgnored,
		b + " Minecraft Education":                     RuleNone,
	} {
		if rules[k] != want {
			t.Errorf("%s: rule %q, want %q", k, rules[k], want)
		}
	}
	// Corrected: Minecraft is covered by the Office agreement (say).
	var officeID string
	for _, l := range mustList(t, svc) {
		if l.Reference == "EES-1" {
			officeID = l.ID
		}
	}
	if _, err := svc.SetAlias(ctx, "Minecraft: Education Edition", officeID, false, "tech"); err != nil {
		t.Fatal(err)
	}
	rep, _ = svc.Reconcile(ctx)
	if len(rep.Unlicensed) != 0 {
		t.Errorf("after the alias, unlicensed %+v", rep.Unlicensed)
	}
	for _, m := range rep.Matches {
		if m.Name == "Minecraft Education" && (m.Rule != RuleAlias || m.LicenceID != officeID) {
			t.Errorf("aliased match %+v", m)
		}
	}
	// Re-importing the same file updates rather than doubles.
	if res, err := svc.Import(ctx, strings.NewReader(licenceCSV), "bursar"); err != nil || res.Updated != 3 || res.Added != 0 {
		t.Fatalf("re-import: %+v %v", res, err)
	}
	if n := len(mustList(t, svc)); n != 3 {
		t.Fatalf("%d licences after re-import", n)
	}
}

func mustList(t *testing.T, svc *Service) []store.Licence {
	t.Helper()
	ls, err := svc.List(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return ls
}

func TestImportErrors(t *testing.T) {
	s := openStore(t)
	svc := &Service{Store: s}
	ctx := context.Background()
	for _, c := range []struct{ name, csv, want string }{
		{"seats", "product,seats\nOffice 2021,ten\n", `line 2, column 2 (seats): "ten"`},
		{"zero seats", "seats,product\n0,Office\n", `line 2, column 1 (seats)`},
		{"date", "product,seats,expiry\nOffice,3,2027-13-01\nReader,1,31/02/2027\n", `line 2, column 3 (expiry): "2027-13-01" is not a date`},
		{"second bad row too", "product,seats,expiry\nOffice,3,2027-13-01\nReader,1,31/02/2027\n", `line 3, column 3 (expiry)`},
		{"empty product", "product,seats\nOffice,1\n,4\n", `line 3, column 1 (product): empty`},
		{"version only", "product,seats\n16.0.1 (x64),4\n", `line 2, column 1 (product)`},
		{"unknown column", "product,seats,colour\nOffice,1,red\n", `line 1, column 3: unknown column "colour"`},
		{"no seats column", "product,publisher\nOffice,MS\n", `no "seats" column`},
		{"quote", "product,seats\n\"Office,1\n", `line 2`},
		{"empty", "", "empty"},
	} {
		_, err := svc.Import(ctx, strings.NewReader(c.csv), "bursar")
		if err == nil || !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), c.want) {
			t.Errorf("%s: %v, want an error with %q", c.name, err, c.want)
		}
	}
	// A file with good rows and one bad row imports nothing.
	_, err := svc.Import(ctx, strings.NewReader("product,seats\nOffice,1\nReader,2\nNotebook,x\n"), "bursar")
	if err == nil {
		t.Fatal("bad row imported")
	}
	if ls := mustList(t, svc); len(ls) != 0 {
		t.Fatalf("half an import: %v", ls)
	}
	// BOM and any column order, blank lines.
	res, err := svc.Import(ctx, strings.NewReader("\ufeffSeats,PRODUCT,reference\n\n4,Office 2021,X\n"), "bursar")
	if err != nil || res.Added != 1 {
		t.Fatalf("%+v %v", res, err)
	}
}
