package admin

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/inventory"
	"github.com/vigil-safeguarding/vigil/collector/licences"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestLicencesAndDisposal: a licence file is imported on the socket (a
// bad one is refused naming its line and column, importing nothing), the
// reconciliation reads the device's audit, and a disposed device is
// revoked, kept in the inventory, and cannot be unrevoked.
func TestLicencesAndDisposal(t *testing.T) {
	e := newEnv(t)
	dev := strings.Repeat("L", 26)
	if err := e.st.PutDevice(store.Device{DeviceID: dev, Group: "staff", Hostname: "head-laptop", EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour).UTC()
	hb, _ := json.Marshal(audit.Header{ID: "au-x", Scope: audit.Scope{Kind: "all"}, Devices: []audit.DeviceInfo{{DeviceID: dev}}})
	if _, err := e.st.CreateAudit("au-x", at, hb, []store.AuditQueued{{DeviceID: dev, ExpiresAt: at.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	inv := `{"software":[{"name":"Microsoft Office Professional Plus 2021","version":"16.0.1","publisher":"Microsoft Corporation","source":"registry"}]}`
	if _, err := e.st.AppendAuditEntry("au-x", store.AuditAnswerEntry, dev, at, []byte(inv)); err != nil {
		t.Fatal(err)
	}

	wantErr(t, e.do(t, "bursar", "POST", "/v1/licences/import", LicenceImport{CSV: "product,seats\nOffice 2021,1\nReader,many\n"}, nil), `line 3, column 2 (seats): "many"`)
	var ls []store.Licence
	if e.do(t, "", "GET", "/v1/licences", nil, &ls); len(ls) != 0 {
		t.Fatalf("a refused file imported %v", ls)
	}
	var res licences.ImportResult
	if err := e.do(t, "bursar", "POST", "/v1/licences/import", LicenceImport{CSV: "product,seats,reference\nMicrosoft Office 2021,1,EES\n"}, &res); err != nil || res.Added != 1 {
		t.Fatalf("import %+v %v", res, err)
	}
	var rep licences.Report
	if err := e.do(t, "", "GET", "/v1/licences/reconcile", nil, &rep); err != nil {
		t.Fatal(err)
	}
	if len(rep.Products) != 1 || rep.Products[0].Installed != 1 || rep.Products[0].Unused != 0 || len(rep.Matches) != 1 || rep.Matches[0].Rule != licences.RuleExact {
		t.Fatalf("reconcile %+v", rep)
	}

	wantErr(t, e.do(t, "tech", "POST", "/v1/devices/"+dev+"/dispose", inventory.DisposeRequest{AuthorisedBy: "head", PersonalData: "staff email", Method: "recycler"}, nil), "how its storage was wiped")
	wantErr(t, e.do(t, "tech", "POST", "/v1/devices/nope/dispose", inventory.DisposeRequest{AuthorisedBy: "head", PersonalData: "none", Method: "waste"}, nil), "no device")
	var d store.Disposal
	if err := e.do(t, "tech", "POST", "/v1/devices/"+dev+"/dispose", inventory.DisposeRequest{AuthorisedBy: "head", LicencesVerified: true,
		PersonalData: "staff email", Wiped: "overwritten 3 passes", Method: "WEEE recycler", Receipt: "R-1", Date: "2026-12-01"}, &d); err != nil {
		t.Fatal(err)
	}
	if len(d.Licensed) != 1 || d.Licensed[0] != "Microsoft Office 2021" || d.RecordedBy != "tech" {
		t.Errorf("disposal %+v: want the licensed product and who recorded it", d)
	}
	wantErr(t, e.do(t, "tech", "POST", "/v1/devices/"+dev+"/dispose", inventory.DisposeRequest{AuthorisedBy: "head", PersonalData: "none", Method: "waste"}, nil), "already disposed")
	wantErr(t, e.do(t, "tech", "POST", "/v1/devices/"+dev+"/unrevoke", RevokeRequest{Reason: "found"}, nil), "disposed of")
	var items []inventory.Item
	if err := e.do(t, "", "GET", "/v1/inventory", nil, &items); err != nil {
		t.Fatal(err)
	}
	if len(items) != 1 || items[0].Disposed == nil || !items[0].Revoked || items[0].LastAuditID != "au-x" || items[0].Disposed.Date.Format("2006-01-02") != "2026-12-01" {
		t.Fatalf("inventory %+v", items)
	}
	// A disposed device holds no seat.
	if e.do(t, "", "GET", "/v1/licences/reconcile", nil, &rep); rep.Products[0].Installed != 0 || rep.Devices != 0 {
		t.Errorf("disposed device still counted: %+v", rep.Products[0])
	}
}
