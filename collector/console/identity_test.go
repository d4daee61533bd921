package console

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// selfForms are spellings of the console account dsl1 (e-mail
// dana.lead@school.example) that a device or directory may report as the
// finding's user. Before personid, "upn", "zero width" and everything
// Unicode were shown to dsl1 (issue 8 item 8).
var selfForms = map[string]string{
	"plain":               "dsl1",
	"upper":               "DSL1",
	"netbios domain":      `SCHOOL\dsl1`,
	"upn":                 "dsl1@school.example",
	"upn upper":           "DSL1@School.Example",
	"zero width space":    "dsl\u200b1",
	"zero width joiner":   "ds\u200dl1",
	"bom":                 "\ufeffdsl1",
	"soft hyphen":         "dsl\u00ad1",
	"fullwidth":           "ｄｓｌ１",
	"fullwidth domain":    "ＳＣＨＯＯＬ＼ＤＳＬ１",
	"trailing spaces":     "dsl1   ",
	"nbsp":                "\u00a0dsl1",
	"account e-mail":      "dana.lead@school.example",
	"e-mail local part":   `SCHOOL\Dana.Lead`,
	"e-mail zero width":   "dana\u200b.lead",
	"mixed, all at once ": " \u200bSCHOOL＼Ｄ\u00adsl1@school.example ",
}

// TestSelfExclusionEveryIdentityForm: an alert about dsl1, however its user
// is spelled, is hidden from dsl1 on every path that shows an alert or its
// evidence (list, detail, actions, evidence, PDF, CSV, device timeline,
// person filter, e-mail notification), while dsl2 sees each one, so the
// test cannot pass by hiding everything.
func TestSelfExclusionEveryIdentityForm(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "Dana.Lead@school.example")
	e.user("dsl2", RoleDSL, false, "dsl2@school.example")
	if err := e.st.PutDevice(store.Device{DeviceID: testDevice, Group: "pupils", Hostname: "lap-09", OS: "windows", Arch: "amd64", LastSeen: time.Now()}); err != nil {
		t.Fatal(err)
	}
	now := time.Now()
	ids := map[string]string{} // form name -> alert id
	for name, form := range selfForms {
		id := e.alert(form, "bullying", vigilv1.Severity_SEVERITY_HIGH, "t-"+name, now.Add(-time.Minute))
		e.conclude(id, "dsl2", "dsl3", "no_concern")
		ids[name] = id
	}
	control := e.alert("pupil1", "bullying", vigilv1.Severity_SEVERITY_HIGH, "control", now)
	e.conclude(control, "dsl2", "dsl3", "no_concern")

	listed := func(c *client, query string) map[string]bool {
		t.Helper()
		var resp struct {
			Alerts []AlertJSON `json:"alerts"`
		}
		if code := c.getJSON("/api/v1/alerts?limit=200"+query, &resp); code != 200 {
			t.Fatalf("list: %d", code)
		}
		out := map[string]bool{}
		for _, a := range resp.Alerts {
			out[a.ID] = true
		}
		return out
	}
	csvIDs := func(c *client) map[string]bool {
		t.Helper()
		code, b := c.do("GET", "/api/v1/incidents.csv", nil)
		rows, err := csv.NewReader(bytes.NewReader(b)).ReadAll()
		if code != 200 || err != nil {
			t.Fatalf("CSV: %d %v", code, err)
		}
		out := map[string]bool{}
		for _, r := range rows[1:] {
			out[r[0]] = true
		}
		return out
	}
	timeline := func(c *client) map[string]bool {
		t.Helper()
		var d DeviceDetailJSON
		if code := c.getJSON("/api/v1/devices/"+testDevice, &d); code != 200 {
			t.Fatalf("device: %d", code)
		}
		out := map[string]bool{}
		for _, f := range d.Timeline {
			out[f.AlertID] = true
		}
		return out
	}
	self, other := e.login("dsl1"), e.login("dsl2")
	selfList, otherList := listed(self, ""), listed(other, "")
	selfCSV, otherCSV := csvIDs(self), csvIDs(other)
	selfTL, otherTL := timeline(self), timeline(other)
	selfByPerson := listed(self, "&person=DSL1") // the filter canonicalises too
	otherByPerson := listed(other, "&person="+strings.ReplaceAll(`SCHOOL\dsl1`, `\`, "%5C"))
	if !selfList[control] || !selfCSV[control] || !selfTL[control] {
		t.Fatalf("dsl1 does not see the control alert about pupil1: list %v csv %v timeline %v", selfList[control], selfCSV[control], selfTL[control])
	}
	for name, id := range ids {
		form := selfForms[name]
		ev := "ev" + strings.Repeat("0", 30-len(id[len(testDevice)+1:])) + id[len(testDevice)+1:]
		type call struct {
			method, path string
			body         any
		}
		paths := map[string]call{
			"detail":   {"GET", "/api/v1/alerts/" + id, nil},
			"evidence": {"POST", "/api/v1/evidence/" + id + "/" + ev, map[string]string{"reason": "review"}},
			"pdf":      {"GET", "/api/v1/alerts/" + id + "/form.pdf", nil},
		}
		for what, p := range paths {
			if code, _ := other.do(p.method, p.path, p.body); code != 200 {
				t.Errorf("%s (%q): dsl2 %s: %d, want 200", name, form, what, code)
			}
			if code, b := self.do(p.method, p.path, p.body); code != 404 {
				t.Errorf("%s (%q): dsl1 gets its own alert's %s: %d %.80q", name, form, what, code, b)
			}
		}
		if code, _ := self.do("POST", "/api/v1/alerts/"+id+"/actions", map[string]string{"action": "note", "text": "mine"}); code != 404 {
			t.Errorf("%s (%q): dsl1 acts on its own alert: %d", name, form, code)
		}
		for what, pair := range map[string][2]map[string]bool{
			"list": {selfList, otherList}, "csv": {selfCSV, otherCSV}, "device timeline": {selfTL, otherTL},
		} {
			if pair[0][id] {
				t.Errorf("%s (%q): in dsl1's %s", name, form, what)
			}
			if !pair[1][id] {
				t.Errorf("%s (%q): missing from dsl2's %s", name, form, what)
			}
		}
		if selfByPerson[id] {
			t.Errorf("%s (%q): dsl1 finds it with person=DSL1", name, form)
		}
		// The person filter is one identity too; the e-mail forms are
		// dana.lead, a different name from dsl1.
		if !strings.Contains(strings.ToLower(name), "e-mail") && !otherByPerson[id] {
			t.Errorf("%s (%q): dsl2's person=SCHOOL\\dsl1 filter misses it", name, form)
		}
		// E-mail notifications (collector/notify asks Reviews) use the same rule.
		a, err := e.st.GetAlert(testDevice, mustSeq(t, id))
		if err != nil {
			t.Fatal(err)
		}
		users, err := e.st.Users()
		if err != nil {
			t.Fatal(err)
		}
		var to []string
		for _, u := range users {
			if e.srv.Reviews(&u, RouteDSL, a.Finding) {
				to = append(to, u.Username)
			}
		}
		if strings.Join(to, ",") != "dsl2" {
			t.Errorf("%s (%q): e-mailed to %v, want dsl2 only", name, form, to)
		}
	}
}

func mustSeq(t *testing.T, id string) uint64 {
	t.Helper()
	_, seq, ok := parseAlertID(id)
	if !ok {
		t.Fatalf("alert id %q", id)
	}
	return seq
}

// TestRoutingOneIdentity: the people directory is imported from a CSV in one
// spelling and devices report others; routing finds the record for each
// (a staff alert goes to the headteacher, not the DSL), and the import
// refuses two rows that are one person.
func TestRoutingOneIdentity(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	e.user("head", RoleHeadteacher, false, "")
	h := e.srv.AdminHandler()
	if code, body := adminPost(h, "/v1/people/import", PeopleImportRequest{CSV: "Username,Name,Role\r\nSCHOOL\\T.Green,Tom Green,Staff\r\n"}); code != 200 {
		t.Fatalf("import: %d %s", code, body)
	}
	// Same person twice in one file, in two forms: refused with both lines.
	code, body := adminPost(h, "/v1/people/import", PeopleImportRequest{CSV: "username,role\nSCHOOL\\jsmith,staff\njsmith@school.example,pupil\n"})
	if code != 422 || !strings.Contains(body, "already on line 2") {
		t.Errorf("one person twice: %d %s", code, body)
	}
	// A file with only e-mail addresses imports under the same identity.
	if code, body := adminPost(h, "/v1/people/import", PeopleImportRequest{CSV: "Email,Role\nT.Green@School.Example,staff\nP.One@school.example,pupil\n"}); code != 200 {
		t.Fatalf("e-mail import: %d %s", code, body)
	}
	if p, ok := e.srv.person("p.one"); !ok || p.Role != "pupil" {
		t.Errorf("e-mail-only row: %+v %v", p, ok)
	}
	if code, body := adminPost(h, "/v1/people/import", PeopleImportRequest{CSV: "Username,Name,Role\r\nSCHOOL\\T.Green,Tom Green,Staff\r\n"}); code != 200 {
		t.Fatalf("re-import: %d %s", code, body)
	}

	forms := []string{"t.green", `SCHOOL\t.green`, "t.green@school.example", "T.GREEN", "t.gr\u200been", "ｔ.ｇｒｅｅｎ", "t.green\t"}
	var ids []string
	for _, f := range forms {
		ids = append(ids, e.alert(f, "gambling", vigilv1.Severity_SEVERITY_HIGH, "bet", time.Now()))
	}
	head, dsl := e.login("head"), e.login("dsl1")
	for i, id := range ids {
		var d alertDetail
		if code := head.getJSON("/api/v1/alerts/"+id, &d); code != 200 || d.RoutedTo != RouteHeadteacher || d.PersonName != "Tom Green" || d.Person != "t.green" {
			t.Errorf("%q: headteacher gets %d %+v", forms[i], code, d.AlertJSON)
		}
		if code, _ := dsl.do("GET", "/api/v1/alerts/"+id, nil); code != 404 {
			t.Errorf("%q: a staff alert reached the DSL: %d", forms[i], code)
		}
	}
}

// adminPost sends a JSON body to the admin-socket handler.
func adminPost(h http.Handler, path string, body any) (int, string) {
	b, _ := json.Marshal(body)
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("POST", path, bytes.NewReader(b)))
	return rec.Code, rec.Body.String()
}
