package console

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"testing"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

func TestParsePeopleCSV(t *testing.T) {
	// As SIMS/Arbor-style exports come: BOM, CRLF, columns in another
	// order, extra columns, "Name" and "Class" headers, quoted commas.
	in := "\ufeffClass,Role,Name,Username,UPN,DOB\r\n" +
		"7B,Pupil,\"Smith, Alice\",asmith,asmith@school.org,2014-01-02\r\n" +
		"\r\n" +
		",Staff,Mr Green,SCHOOL\\GGreen,,\r\n" +
		"7C,Head Teacher,Mrs Head,jhead,,\r\n" +
		"8A,Student,Bob,BOB,,\r\n"
	people, bad, err := ParsePeopleCSV(strings.NewReader(in))
	if err != nil || len(bad) != 0 {
		t.Fatalf("%v %v", err, bad)
	}
	want := []store.Person{
		{Username: "asmith", DisplayName: "Smith, Alice", Role: "pupil", Year: "7B"},
		{Username: "ggreen", DisplayName: "Mr Green", Role: "staff"},
		{Username: "jhead", DisplayName: "Mrs Head", Role: "headteacher", Year: "7C"},
		{Username: "bob", DisplayName: "Bob", Role: "pupil", Year: "8A"},
	}
	if !reflect.DeepEqual(people, want) {
		t.Errorf("got %+v", people)
	}

	// Bad rows by line number, including after a quoted multi-line field.
	in = "username;display_name;role;year\n" +
		"a1;A;pupil;7\n" +
		"a2;A;visitor;7\n" + // line 3: role
		";Nameless;pupil;7\n" + // line 4: no username
		"a3;\"two\nlines\";pupil;7\n" + // lines 5-6, fine
		"a1;Again;pupil;7\n" + // line 7: duplicate
		"a4;short\n" // line 8: no role column value
	people, bad, err = ParsePeopleCSV(strings.NewReader(in))
	if err != nil {
		t.Fatal(err)
	}
	if len(people) != 2 || people[1].DisplayName != "two\nlines" {
		t.Errorf("good rows: %+v", people)
	}
	var lines []int
	for _, b := range bad {
		lines = append(lines, b.Line)
	}
	if !reflect.DeepEqual(lines, []int{3, 4, 7, 8}) {
		t.Errorf("bad lines %v (%+v)", lines, bad)
	}

	for name, in := range map[string]string{
		"empty":       "",
		"no username": "name,role\nA,pupil\n",
		"no role":     "username,name\na,A\n",
	} {
		if _, _, err := ParsePeopleCSV(strings.NewReader(in)); err == nil {
			t.Errorf("%s: no error", name)
		}
	}
	// Tab-separated.
	people, _, _ = ParsePeopleCSV(strings.NewReader("username\trole\nx\tstaff\n"))
	if len(people) != 1 || people[0].Role != "staff" {
		t.Errorf("tsv: %+v", people)
	}
}

// TestAdminPeopleImport: the admin-socket endpoint imports all or nothing
// (unless skip_bad) and routing follows at once.
func TestAdminPeopleImport(t *testing.T) {
	e := newEnv(t)
	h := e.srv.AdminHandler()
	post := func(path string, body any) (int, map[string]any) {
		b, _ := json.Marshal(body)
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, httptest.NewRequest("POST", path, bytes.NewReader(b)))
		var m map[string]any
		json.Unmarshal(rec.Body.Bytes(), &m)
		return rec.Code, m
	}
	csv := "username,name,role\nt1,Teacher,staff\nx,X,alien\n"
	code, m := post("/v1/people/import", PeopleImportRequest{CSV: csv})
	if code != http.StatusUnprocessableEntity || !strings.Contains(m["error"].(string), "line 3") {
		t.Fatalf("bad rows: %d %v", code, m)
	}
	if _, ok := e.srv.person("t1"); ok {
		t.Fatal("partial import")
	}
	code, m = post("/v1/people/import", PeopleImportRequest{CSV: csv, SkipBad: true})
	if code != 200 || m["imported"].(float64) != 1 {
		t.Fatalf("skip bad: %d %v", code, m)
	}
	if p, ok := e.srv.person("T1"); !ok || p.Role != "staff" {
		t.Errorf("person after import: %+v", p)
	}
	code, m = post("/v1/users", UserAddRequest{Username: "Dsl9", Role: "dsl", Password: testPassword, TOTP: true})
	if code != 200 || !strings.HasPrefix(m["totp_uri"].(string), "otpauth://totp/") {
		t.Fatalf("user add: %d %v", code, m)
	}
	if u, err := e.st.GetUser("dsl9"); err != nil || u.TOTPSecret == "" {
		t.Errorf("user: %+v %v", u, err)
	}
	for _, req := range []UserAddRequest{
		{Username: "dsl9", Role: "dsl", Password: testPassword},           // exists
		{Username: "x y", Role: "dsl", Password: testPassword},            // name
		{Username: "z", Role: "root", Password: testPassword},             // role
		{Username: "z", Role: "dsl", Password: "short"},                   // password
		{Username: "z", Role: "dsl", Password: testPassword, Chair: true}, // chair not governor
	} {
		if code, _ := post("/v1/users", req); code/100 != 4 {
			t.Errorf("%+v: %d", req, code)
		}
	}
}
