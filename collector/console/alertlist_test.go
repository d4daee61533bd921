package console

import (
	"context"
	"encoding/csv"
	"fmt"
	"net/url"
	"slices"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

type alertPage struct {
	Alerts []AlertJSON `json:"alerts"`
	Next   string      `json:"next_cursor"`
}

// pageAll follows next_cursor from query and returns every alert id,
// failing if a page that has a cursor is not full.
func pageAll(t *testing.T, c *client, query string, limit int) []string {
	t.Helper()
	var got []string
	cursor := ""
	for i := 0; i < 1000; i++ {
		var p alertPage
		if code := c.getJSON(fmt.Sprintf("/api/v1/alerts?%s&limit=%d&cursor=%s", query, limit, cursor), &p); code != 200 {
			t.Fatalf("%s: status %d", query, code)
		}
		for _, a := range p.Alerts {
			got = append(got, a.ID)
		}
		if p.Next == "" {
			return got
		}
		if len(p.Alerts) != limit {
			t.Errorf("%s: page %d holds %d alerts and a cursor: want full pages of %d", query, i, len(p.Alerts), limit)
		}
		cursor = p.Next
	}
	t.Fatalf("%s: more than 1000 pages", query)
	return nil
}

// TestSelectiveFilterReturnsFullPages: a filter that matches 7 alerts
// behind 20,050 newer ones on another device returns all 7, newest first,
// in full pages. Before the alert indexes the walk stopped at its scan
// bound (20,000 entries, 35 ms) and answered empty pages with a cursor.
func TestSelectiveFilterReturnsFullPages(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	const quiet, busy = "quietquietquietquietquiet1", "busybusybusybusybusybusyb1"
	if err := e.st.PutDevice(store.Device{DeviceID: quiet, Group: "pupils", Hostname: "Library-PC-07"}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.PutDevice(store.Device{DeviceID: busy, Group: "pupils", Hostname: "LAB-PC-01"}); err != nil {
		t.Fatal(err)
	}
	base := time.Now().Add(-72 * time.Hour)
	mk := func(dev string, seq uint64, at time.Time) *vigilv1.Finding {
		return &vigilv1.Finding{DeviceId: dev, Seq: seq, Group: "pupils", ObservedAt: timestamppb.New(at), User: "pupil1",
			Check: "screen", RuleId: "screen-keywords", Severity: vigilv1.Severity_SEVERITY_HIGH, Category: "bullying",
			Message:     "bullying term in the active window title",
			ScreenMatch: &vigilv1.ScreenMatch{Term: "loser", Library: "keywords-bullying", Category: "bullying", User: "pupil1"}}
	}
	var want []string
	var batch []*vigilv1.Finding
	for i := 1; i <= 7; i++ {
		batch = append(batch, mk(quiet, uint64(i), base.Add(time.Duration(i)*time.Second)))
		want = append([]string{AlertID(quiet, uint64(i))}, want...)
	}
	ctx := context.Background()
	if _, _, err := e.st.CommitFindings(ctx, batch); err != nil {
		t.Fatal(err)
	}
	for start := 1; start <= 20_050; start += 5000 {
		batch = batch[:0]
		for i := start; i < start+5000 && i <= 20_050; i++ {
			batch = append(batch, mk(busy, uint64(i), base.Add(time.Hour+time.Duration(i)*time.Second)))
		}
		if _, _, err := e.st.CommitFindings(ctx, batch); err != nil {
			t.Fatal(err)
		}
	}
	c := e.login("dsl1")
	for _, q := range []string{"device=" + quiet, "device=library-pc", "device=PC-07&status=new&category=bullying"} {
		if got := pageAll(t, c, q, 3); !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", q, got, want)
		}
	}
	var p alertPage
	c.getJSON("/api/v1/alerts?device=library-pc&limit=1", &p)
	if len(p.Alerts) != 1 || p.Alerts[0].Hostname != "Library-PC-07" {
		t.Errorf("the queue names the device by hostname: %+v", p.Alerts)
	}
}

// TestFiltersMatchWhatADSLTypes: person by display name or login
// (case-insensitive, part of it), device by hostname, group in any case;
// the category filter offers only the categories of alerts the viewer may
// see; reviewers are named by display name in the form and the CSV.
func TestFiltersMatchWhatADSLTypes(t *testing.T) {
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "")
	e.user("dsl2", RoleDSL, false, "")
	e.user("head", RoleHeadteacher, false, "")
	e.people(
		store.Person{Username: `SCHOOL\lucja.w`, DisplayName: "Łucja Wiśniewska", Role: "pupil"},
		store.Person{Username: "tom.b", DisplayName: "Tom Brown", Role: "pupil"},
		store.Person{Username: "mr.staff", DisplayName: "Alan Staff", Role: "staff"},
	)
	if err := e.st.PutDevice(store.Device{DeviceID: testDevice, Group: "pupils", Hostname: "LAB-PC-01"}); err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Hour)
	lucja := e.alert("lucja.w", "self_harm", vigilv1.Severity_SEVERITY_HIGH, "hurt myself", at)
	tom := e.alert("tom.b", "bullying", vigilv1.Severity_SEVERITY_MEDIUM, "loser", at.Add(time.Minute))
	zed := e.alert(`SCHOOL\zed.unlisted`, "drugs", vigilv1.Severity_SEVERITY_MEDIUM, "weed", at.Add(2*time.Minute))
	e.alert("mr.staff", "gambling", vigilv1.Severity_SEVERITY_MEDIUM, "casino", at.Add(3*time.Minute))

	c := e.login("dsl1")
	for q, want := range map[string][]string{
		"person=" + url.QueryEscape("WIŚNIEWSKA"): {lucja},
		"person=lucja": {lucja},
		"person=" + url.QueryEscape(`school\LUCJA.W`): {lucja},
		"person=brown":               {tom},
		"person=TOM.B":               {tom},
		"person=zed":                 {zed},
		"person=nobody-of-that-name": nil,
		"device=lab-pc":              {zed, tom, lucja},
		"device=" + testDevice:       {zed, tom, lucja},
		"device=no-such-host":        nil,
		"group=PUPILS":               {zed, tom, lucja},
		// Part of a login matches the login, not its domain (SCHOOL\).
		"group=Pupils&person=o": {tom},
	} {
		if got := pageAll(t, c, q, 2); !slices.Equal(got, want) {
			t.Errorf("%s: got %v, want %v", q, got, want)
		}
	}

	var cats struct {
		Categories []string `json:"categories"`
	}
	if code := c.getJSON("/api/v1/alert-categories", &cats); code != 200 || !slices.Equal(cats.Categories, []string{"bullying", "drugs", "self_harm"}) {
		t.Errorf("dsl categories: %d %v, want the DSL's alerts' categories only (not gambling, a staff alert)", code, cats.Categories)
	}
	h := e.login("head")
	if h.getJSON("/api/v1/alert-categories", &cats); !slices.Equal(cats.Categories, []string{"gambling"}) {
		t.Errorf("headteacher categories: %v", cats.Categories)
	}

	// Reviewers by display name: the form (detail JSON) and the CSV.
	if code, _ := c.action(tom, map[string]string{"action": "start_review", "reason": "check"}); code != 200 {
		t.Fatalf("start_review: %d", code)
	}
	c.action(tom, map[string]string{"action": "sign"})
	code, d := e.login("dsl2").action(tom, map[string]string{"action": "sign"})
	if code != 200 || d.Review.FirstReviewerName != "Dsl1 Name" || d.Review.SecondReviewerName != "Dsl2 Name" {
		t.Errorf("form reviewers: %d %q %q", code, d.Review.FirstReviewerName, d.Review.SecondReviewerName)
	}
	if code, _ := c.action(tom, map[string]string{"action": "conclude", "conclusion": "no_concern"}); code != 200 {
		t.Fatalf("conclude: %d", code)
	}
	code, b := c.do("GET", "/api/v1/incidents.csv", nil)
	rows, err := csv.NewReader(strings.NewReader(string(b))).ReadAll()
	if code != 200 || err != nil || len(rows) != 2 {
		t.Fatalf("csv: %d %v %q", code, err, b)
	}
	if !strings.HasPrefix(rows[1][7], "Dsl1 Name") || !strings.HasPrefix(rows[1][8], "Dsl2 Name") {
		t.Errorf("csv reviewers %q %q, want display names", rows[1][7], rows[1][8])
	}
}
