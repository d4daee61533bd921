package console

import (
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

const (
	benchFindings = 1_000_000
	benchDevices  = 500
	benchAlertPct = 5
)

// fillBench writes n findings over 90 days from benchDevices devices, 5 %
// of them screen alerts, through store.Import (commitGroup's layout and
// indexes, without a sync per batch); 30 % of alerts get a triage record.
// Every device is enrolled with a hostname and 1,500 pupils are in the
// people directory, so the hostname and display-name filters resolve.
func fillBench(tb testing.TB, st *store.Store, n int) (alerts int) {
	end := time.Now()
	span := 90 * 24 * time.Hour
	cats := []string{"self_harm", "bullying", "violence", "drugs", "extremism", "gambling", "hate", "challenges"}
	devs := make([]string, benchDevices)
	for i := range devs {
		devs[i] = fmt.Sprintf("bench%021d", i)
		must(tb, st.PutDevice(store.Device{DeviceID: devs[i], Group: "pupils", Hostname: fmt.Sprintf("LAB-PC-%03d", i), EnrolledAt: end.Add(-span)}))
	}
	people := make([]store.Person, 1500)
	for i := range people {
		people[i] = store.Person{Username: fmt.Sprintf("pupil%04d", i), DisplayName: fmt.Sprintf("Pupil Number%04d", i), Role: "pupil", Year: "9"}
		if i%300 == 4 {
			// 5 staff accounts whose ~165 alerts go to the headteacher.
			people[i].Role, people[i].Year = "staff", ""
		}
	}
	must(tb, st.PutPeople(people))
	posture := []string{"antivirus", "bluetooth", "executables", "selftest"}
	const chunk = 50_000
	batch := make([]*vigilv1.Finding, 0, chunk)
	states := map[store.AlertRef]store.AlertState{}
	flush := func() {
		must(tb, st.Import(batch, states))
		batch, states = batch[:0], map[store.AlertRef]store.AlertState{}
	}
	for i := 0; i < n; i++ {
		dev := devs[i%benchDevices]
		seq := uint64(i/benchDevices + 1)
		at := end.Add(-span + time.Duration(int64(span)/int64(n)*int64(i)))
		f := &vigilv1.Finding{DeviceId: dev, Seq: seq, Group: "pupils", ObservedAt: timestamppb.New(at),
			User: fmt.Sprintf("pupil%04d", i%1500), RulesHash: "3f2a9c0d1e", RuleVersion: 1}
		isAlert := i%100 < benchAlertPct
		if isAlert {
			cat := cats[i%len(cats)]
			term := "term " + cat
			title := "something about " + term + " - Google Search"
			details, _ := structpb.NewStruct(map[string]any{"window_class": "Navigator", "pid": 4242})
			f.Check, f.RuleId, f.Category, f.Severity = "screen", "screen-keywords", cat, vigilv1.Severity(3+i%3)
			f.Message = cat + " term in the active window title (firefox)"
			f.Details = details
			f.Evidence = []*vigilv1.EvidenceRef{{Id: fmt.Sprintf("%032x", i), MediaType: "image/png", Sha256: strings.Repeat("ab", 32), Size: 48213}}
			f.ScreenMatch = &vigilv1.ScreenMatch{Term: term, Library: "keywords-" + cat, Category: cat, Context: title,
				WindowTitle: title, Process: "firefox", User: f.User, Source: "window_title", EvidenceIds: []string{f.Evidence[0].Id}}
			alerts++
			// A scrambled 30 % (not periodic, so it does not line up
			// with the category cycle).
			if h := uint64(i) * 11400714819323198485 >> 40; h%10 < 3 {
				st := store.AlertState{Status: "in_review", Reason: "bench", FirstReviewer: "dsl1",
					History: []store.HistoryEntry{{Time: at, By: "dsl1", Action: "start_review", Detail: "bench"}}}
				if h%10 == 0 {
					st.Status, st.SecondReviewer, st.Conclusion, st.ConcludedAt = "concluded", "dsl2", "no_concern", at
				}
				states[store.AlertRef{DeviceID: dev, Seq: seq}] = st
			}
		} else {
			c := posture[i%len(posture)]
			details, _ := structpb.NewStruct(map[string]any{"product": "ClamAV", "realtime": true, "signature_age_hours": 7})
			f.Check, f.RuleId, f.Category, f.Severity, f.Status = c, c+"-default", "compliance", vigilv1.Severity_SEVERITY_INFO, "pass"
			f.Message = c + " check passed"
			f.Details = details
		}
		if batch = append(batch, f); len(batch) == chunk {
			flush()
		}
	}
	flush()
	return alerts
}

func must(tb testing.TB, err error) {
	tb.Helper()
	if err != nil {
		tb.Fatal(err)
	}
}

// BenchmarkAlertList: GET /api/v1/alerts through the real handler over
// loopback HTTP, with 1,000,000 findings (5 % alerts) in an encrypted store
// that was closed and reopened after filling (so reads come from SSTs).
// Reports p50 and p99 latency of the first page and of a page under each
// filter the DSL has (status, category, severity, group, device by
// hostname, person by display name, a time range, a combination and one
// that matches nothing), and of GET /api/v1/me on the same server as the
// baseline. Every page must be full (50 alerts, or the last).
//
//	go test -run='^$' -bench=BenchmarkAlertList -benchtime=400x ./collector/console/
//
// With -short (make bench-smoke) it fills 20,000 findings: the code runs,
// the figures mean nothing.
func BenchmarkAlertList(b *testing.B) {
	findings := benchFindings
	if testing.Short() {
		findings = 20_000
	}
	dir := filepath.Join(b.TempDir(), "badger")
	key := make([]byte, 32)
	rand.Read(key)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	opts := store.Options{EncryptionKey: key, Logger: quiet}
	st, err := store.Open(dir, opts)
	must(b, err)
	t0 := time.Now()
	alerts := fillBench(b, st, findings)
	must(b, st.Close())
	fill := time.Since(t0)
	st, err = store.Open(dir, opts)
	must(b, err)
	defer st.Close()
	b.Logf("filled %d findings (%d alerts) in %v", findings, alerts, fill.Round(time.Millisecond))

	srv, err := New(Config{Store: st, Logger: quiet})
	must(b, err)
	u, _ := auth.NewUser("dsl9", "Bench DSL", RoleDSL, testPassword, "", false, time.Now())
	must(b, st.CreateUser(u))
	hs := httptest.NewServer(srv.Handler())
	defer hs.Close()
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar}
	resp, err := hc.Post(hs.URL+"/api/v1/session", "application/json", strings.NewReader(`{"username":"dsl9","password":"`+testPassword+`"}`))
	must(b, err)
	resp.Body.Close()
	// The headteacher sees only the staff alerts (0.3 % of them): the
	// routing is checked on each index summary, so a page walks past the
	// pupils' alerts.
	hu, _ := auth.NewUser("head9", "Bench Head", RoleHeadteacher, testPassword, "", false, time.Now())
	must(b, st.CreateUser(hu))
	hjar, _ := cookiejar.New(nil)
	head := &http.Client{Jar: hjar}
	resp, err = head.Post(hs.URL+"/api/v1/session", "application/json", strings.NewReader(`{"username":"head9","password":"`+testPassword+`"}`))
	must(b, err)
	resp.Body.Close()

	week := url.Values{"from": {time.Now().Add(-7 * 24 * time.Hour).UTC().Format(time.RFC3339)}, "to": {time.Now().UTC().Format(time.RFC3339)}}
	for _, c := range []struct{ name, path string }{
		// The floor: the same server, session lookup and JSON, no alerts.
		{"baseline_me", "/api/v1/me"},
		{"first_page", "/api/v1/alerts"},
		{"status", "/api/v1/alerts?status=new"},
		{"category", "/api/v1/alerts?category=self_harm"},
		{"filtered", "/api/v1/alerts?category=self_harm&status=new"},
		{"severity", "/api/v1/alerts?severity=critical"},
		{"group", "/api/v1/alerts?group=Pupils"},
		// One device of 500 by hostname, one pupil of 1,500 by display
		// name: the selective filters that used to return partial pages.
		{"device_hostname", "/api/v1/alerts?device=lab-pc-003"},
		{"person_name", "/api/v1/alerts?person=number0003"},
		{"time_week", "/api/v1/alerts?" + week.Encode()},
		{"concluded_device", "/api/v1/alerts?status=concluded&device=LAB-PC-003"},
		// Nothing matches: the intersection of two lists that never meet.
		{"no_match", "/api/v1/alerts?category=self_harm&severity=info"},
		{"headteacher_first_page", "/api/v1/alerts"},
	} {
		hc := hc
		if strings.HasPrefix(c.name, "headteacher") {
			hc = head
		}
		b.Run(c.name, func(b *testing.B) {
			lat := make([]time.Duration, 0, b.N)
			var n int
			for i := 0; i < b.N; i++ {
				t := time.Now()
				resp, err := hc.Get(hs.URL + c.path)
				must(b, err)
				var page struct {
					Alerts []AlertJSON `json:"alerts"`
					Next   string      `json:"next_cursor"`
				}
				err = json.NewDecoder(resp.Body).Decode(&page)
				resp.Body.Close()
				lat = append(lat, time.Since(t))
				must(b, err)
				if resp.StatusCode != 200 {
					b.Fatalf("status %d", resp.StatusCode)
				}
				n = len(page.Alerts)
				// Full pages: a short page is the last one.
				if c.name != "baseline_me" && (n < 50) != (page.Next == "") {
					b.Fatalf("%s: page of %d alerts with next cursor %q", c.name, n, page.Next)
				}
			}
			if n == 0 && c.name != "baseline_me" && c.name != "no_match" {
				b.Fatalf("%s: no alerts", c.name)
			}
			sort.Slice(lat, func(i, j int) bool { return lat[i] < lat[j] })
			ms := func(d time.Duration) float64 { return float64(d.Microseconds()) / 1000 }
			b.ReportMetric(ms(lat[len(lat)/2]), "p50-ms")
			b.ReportMetric(ms(lat[len(lat)*99/100]), "p99-ms")
		})
	}
}
