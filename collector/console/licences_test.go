package console

import (
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/inventory"
	"github.com/vigil-safeguarding/vigil/collector/licences"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestLicencesConsole: the technician keeps the register (a bad file is
// refused naming line and column, changing nothing), the headteacher reads
// the reconciliation and the inventory but may not edit, the governor
// sees neither.
func TestLicencesConsole(t *testing.T) {
	e := newEnv(t)
	e.user("tech", RoleTechnician, false, "")
	e.user("head", RoleHeadteacher, false, "")
	e.user("gov", RoleGovernor, false, "")
	if err := e.st.PutDevice(store.Device{DeviceID: strings.Repeat("K", 26), Hostname: "lab-1", EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	tech, head, gov := e.login("tech"), e.login("head"), e.login("gov")

	code, body := tech.do("POST", "/api/v1/licences/import", map[string]string{"csv": "product,seats,expiry\nOffice 2021,3,\nReader,2,next year\n"})
	if code != 400 || !strings.Contains(string(body), `line 3, column 3 (expiry): \"next year\"`) {
		t.Fatalf("bad file: %d %s", code, body)
	}
	var ls []store.Licence
	if tech.getJSON("/api/v1/licences", &ls); len(ls) != 0 {
		t.Fatalf("a refused file imported %v", ls)
	}
	if code, body := tech.do("POST", "/api/v1/licences/import", map[string]string{"csv": "product,seats\nOffice 2021,3\n"}); code != 200 {
		t.Fatalf("import: %d %s", code, body)
	}
	if code, _ := head.do("POST", "/api/v1/licences/import", map[string]string{"csv": "product,seats\nX,1\n"}); code != 403 {
		t.Errorf("headteacher import: %d, want 403", code)
	}
	var rep licences.Report
	if code := head.getJSON("/api/v1/licences/reconcile", &rep); code != 200 || len(rep.Products) != 1 || rep.Products[0].Unused != 3 {
		t.Errorf("headteacher reconcile: %d %+v", code, rep)
	}
	var items []inventory.Item
	if code := head.getJSON("/api/v1/inventory", &items); code != 200 || len(items) != 1 || items[0].Hostname != "lab-1" {
		t.Errorf("inventory: %d %+v", code, items)
	}
	for _, p := range []string{"/api/v1/licences", "/api/v1/licences/reconcile", "/api/v1/inventory"} {
		if code, _ := gov.do("GET", p, nil); code != 403 {
			t.Errorf("governor %s: %d, want 403", p, code)
		}
	}
	tech.getJSON("/api/v1/licences", &ls)
	if code, body := tech.do("POST", "/api/v1/licences/aliases", map[string]any{"title": "Office Pro 2021", "licence_id": ls[0].ID}); code != 200 {
		t.Errorf("alias: %d %s", code, body)
	}
	if code, _ := tech.do("DELETE", "/api/v1/licences/"+ls[0].ID, nil); code != 200 {
		t.Errorf("remove: %d", code)
	}
	if code, _ := tech.do("DELETE", "/api/v1/licences/"+ls[0].ID, nil); code != 404 {
		t.Errorf("second remove: %d, want 404", code)
	}
}
