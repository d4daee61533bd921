package store

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"

	"github.com/vigil-safeguarding/vigil/internal/personid"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func alertFinding(dev string, seq uint64, at time.Time, cat, user, group string, sev vigilv1.Severity) *vigilv1.Finding {
	f := testFinding(dev, seq, cat, at)
	f.Check, f.Severity, f.User, f.Group = "screen", sev, user, group
	f.ScreenMatch = &vigilv1.ScreenMatch{Term: "term " + cat, Library: "keywords-" + cat, Category: cat, User: user}
	return f
}

// TestQueryAlertsAgreesWithAScan: over 1,500 alerts with random fields,
// triage states and escalations changed after commit (so the indexes are
// rewritten), every combination of filters, paged in small pages from
// random cursors, returns exactly what a scan of all alerts finds, newest
// first, each page full unless it is the last.
func TestQueryAlertsAgreesWithAScan(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	rng := rand.New(rand.NewPCG(1, 2))
	cats := []string{"self_harm", "bullying", "drugs", "extremism"}
	users := []string{`SCHOOL\Amy.Pond`, "amy.pond", "rory", "clara", "bill"}
	groups := []string{"pupils", "Pupils", "staff"}
	base := time.Date(2026, 11, 1, 8, 0, 0, 0, time.UTC)
	var all []*vigilv1.Finding
	for i := 0; i < 1500; i++ {
		dev := devID(rng.IntN(6))
		f := alertFinding(dev, uint64(i+1), base.Add(time.Duration(rng.IntN(30*24*3600))*time.Second),
			cats[rng.IntN(len(cats))], users[rng.IntN(len(users))], groups[rng.IntN(len(groups))], vigilv1.Severity(3+rng.IntN(3)))
		all = append(all, f)
	}
	// Non-alerts in between are not indexed.
	noise := []*vigilv1.Finding{testFinding(devID(0), 100000, "compliance", base), testFinding(devID(1), 100001, "compliance", base)}
	if _, _, err := s.CommitFindings(ctx, append(slices.Clone(all), noise...)); err != nil {
		t.Fatal(err)
	}
	states := map[AlertRef]AlertState{}
	for _, f := range all {
		st := AlertState{Status: "new"}
		switch rng.IntN(4) {
		case 0:
			continue
		case 1:
			st.Status = "in_review"
		case 2:
			st.Status = "concluded"
		case 3:
			st.EscalatedTo = []string{"headteacher"}
		}
		got, err := s.UpdateAlertState(f.DeviceId, f.Seq, func(a *AlertState) error {
			a.Status, a.EscalatedTo = st.Status, st.EscalatedTo
			a.History = append(a.History, HistoryEntry{Action: "test"})
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
		states[AlertRef{f.DeviceId, f.Seq}] = got
	}
	slices.SortFunc(all, func(a, b *vigilv1.Finding) int {
		sa, sb := summaryOf(a, AlertState{}), summaryOf(b, AlertState{})
		return -strings.Compare(string(sa.tail()), string(sb.tail()))
	})
	statusOf := func(f *vigilv1.Finding) AlertState {
		if st, ok := states[AlertRef{f.DeviceId, f.Seq}]; ok {
			return st
		}
		return AlertState{Status: "new"}
	}
	type tc struct {
		name string
		q    AlertQuery
		want func(f *vigilv1.Finding) bool
	}
	var cases []tc
	for i := 0; i < 120; i++ {
		var q AlertQuery
		var name []string
		if rng.IntN(2) == 0 {
			q.Status = []string{"new", "in_review", "concluded"}[rng.IntN(3)]
			name = append(name, "status="+q.Status)
		}
		if rng.IntN(2) == 0 {
			q.Category = cats[rng.IntN(len(cats))]
			name = append(name, "category="+q.Category)
		}
		if rng.IntN(3) == 0 {
			q.Severity = vigilv1.Severity(3 + rng.IntN(3))
			name = append(name, fmt.Sprint("severity=", q.Severity))
		}
		if rng.IntN(3) == 0 {
			q.Group = strings.ToUpper(groups[rng.IntN(len(groups))])
			name = append(name, "group="+q.Group)
		}
		if rng.IntN(3) == 0 {
			q.Devices = []string{devID(rng.IntN(6)), devID(rng.IntN(6))}
			name = append(name, fmt.Sprint("devices=", q.Devices))
		}
		if rng.IntN(3) == 0 {
			q.Users = []string{users[rng.IntN(len(users))]}
			name = append(name, fmt.Sprint("users=", q.Users))
		}
		if rng.IntN(3) == 0 {
			q.From = base.Add(time.Duration(rng.IntN(15*24)) * time.Hour)
			q.To = q.From.Add(time.Duration(1+rng.IntN(10*24)) * time.Hour)
			name = append(name, "from-to")
		}
		escalatedOnly := rng.IntN(5) == 0
		if escalatedOnly {
			q.Visible = func(a *AlertSummary) bool { return slices.Contains(a.EscalatedTo, "headteacher") }
			name = append(name, "visible=escalated")
		}
		qq := q
		cases = append(cases, tc{strings.Join(name, "&"), q, func(f *vigilv1.Finding) bool {
			st := statusOf(f)
			at := f.ObservedAt.AsTime()
			return (qq.Status == "" || string(st.Status) == qq.Status) && (qq.Category == "" || f.Category == qq.Category) &&
				(qq.Severity == 0 || f.Severity == qq.Severity) && (qq.Group == "" || strings.EqualFold(f.Group, qq.Group)) &&
				(qq.Devices == nil || slices.Contains(qq.Devices, f.DeviceId)) &&
				(qq.Users == nil || personid.Canonical(qq.Users[0]) == personid.Canonical(f.User)) &&
				(qq.From.IsZero() || !at.Before(qq.From)) && (qq.To.IsZero() || !at.After(qq.To)) &&
				(!escalatedOnly || slices.Contains(st.EscalatedTo, "headteacher"))
		}})
	}
	for _, c := range cases {
		var want []string
		for _, f := range all {
			if c.want(f) {
				want = append(want, fmt.Sprintf("%s/%d", f.DeviceId, f.Seq))
			}
		}
		limit := 1 + rng.IntN(40)
		q := c.q
		q.Limit = limit
		var got []string
		for pages := 0; ; pages++ {
			page, next, err := s.QueryAlerts(ctx, q)
			if err != nil {
				t.Fatalf("%s: %v", c.name, err)
			}
			for _, a := range page {
				got = append(got, fmt.Sprintf("%s/%d", a.Finding.DeviceId, a.Finding.Seq))
				if a.State.Status != statusOf(a.Finding).Status || a.Finding.GetScreenMatch().GetTerm() == "" {
					t.Fatalf("%s: alert %s/%d with state %q and match %v", c.name, a.Finding.DeviceId, a.Finding.Seq, a.State.Status, a.Finding.GetScreenMatch())
				}
			}
			if next == nil {
				break
			}
			if len(page) != limit {
				t.Fatalf("%s: page %d holds %d of %d with a cursor", c.name, pages, len(page), limit)
			}
			q.After = next
		}
		if !slices.Equal(got, want) {
			t.Errorf("%s (limit %d): got %d alerts, want %d\n got %v\nwant %v", c.name, limit, len(got), len(want), got, want)
		}
	}
	// A name that resolved to nobody matches nothing.
	if page, next, err := s.QueryAlerts(ctx, AlertQuery{Users: []string{}}); err != nil || len(page) != 0 || next != nil {
		t.Errorf("empty user set: %d alerts, next %x, err %v", len(page), next, err)
	}
	vals, err := s.AlertValues(AlertFieldCategory)
	if slices.Sort(cats); err != nil || !slices.Equal(vals, cats) {
		t.Errorf("categories %v, want %v (%v)", vals, cats, err)
	}
	if vals, _ := s.AlertValues(AlertFieldUser); !slices.Equal(vals, []string{"amy.pond", "bill", "clara", "rory"}) {
		t.Errorf("people %v", vals)
	}
}

// TestAlertIndexRebuiltForOldStores: a store written before the alert
// indexes (ai/ keys with empty values, no ax/, no layout marker; findings
// with the match in Details keys and no ScreenMatch) is reindexed at open:
// filters find its alerts, with their triage state, and its findings read
// back with a ScreenMatch taken from the old Details keys.
func TestAlertIndexRebuiltForOldStores(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	base := time.Date(2026, 10, 1, 9, 0, 0, 0, time.UTC)
	err := s.db.Update(func(txn *badger.Txn) error {
		for i := 1; i <= 6; i++ {
			f := testFinding(devID(1), uint64(i), []string{"self_harm", "drugs"}[i%2], base.Add(time.Duration(i)*time.Minute))
			f.Check, f.User, f.Group, f.Severity = "screen", "pupil7", "Pupils", vigilv1.Severity_SEVERITY_HIGH
			f.Details, _ = structpb.NewStruct(map[string]any{"term": fmt.Sprintf("term %d", i), "library": "keywords", "title": "a title",
				"context": "some context", "process": "firefox", "source": "window_title"})
			v, _ := proto.Marshal(f)
			ai := binary.BigEndian.AppendUint64([]byte(pfxAlertIndex), uint64(f.ObservedAt.AsTime().UnixNano()))
			ai = binary.BigEndian.AppendUint64(append(ai, f.DeviceId...), f.Seq)
			for k, val := range map[string][]byte{string(findingKey(f.DeviceId, f.Seq)): v, string(timeKey(f)): nil, string(ai): nil} {
				if err := txn.Set([]byte(k), val); err != nil {
					return err
				}
			}
			if i == 3 {
				sv, _ := json.Marshal(AlertState{Status: "concluded"})
				if err := txn.Set(AlertStateKey(f.DeviceId, f.Seq), sv); err != nil {
					return err
				}
			}
		}
		// A posture finding of that era is not an alert.
		v, _ := proto.Marshal(testFinding(devID(1), 7, "compliance", base))
		if err := txn.Set(findingKey(devID(1), 7), v); err != nil {
			return err
		}
		return txn.Delete([]byte(keyAlertIndexV))
	})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, nil)
	defer s.Close()
	ctx := context.Background()
	seqs := func(q AlertQuery) []uint64 {
		page, _, err := s.QueryAlerts(ctx, q)
		if err != nil {
			t.Fatal(err)
		}
		var out []uint64
		for _, a := range page {
			out = append(out, a.Finding.Seq)
		}
		return out
	}
	if got := seqs(AlertQuery{}); !slices.Equal(got, []uint64{6, 5, 4, 3, 2, 1}) {
		t.Errorf("all: %v", got)
	}
	if got := seqs(AlertQuery{Category: "drugs", Status: "new"}); !slices.Equal(got, []uint64{5, 1}) {
		t.Errorf("drugs&new: %v", got)
	}
	if got := seqs(AlertQuery{Status: "concluded", Group: "pupils", Users: []string{"PUPIL7"}}); !slices.Equal(got, []uint64{3}) {
		t.Errorf("concluded: %v", got)
	}
	a, err := s.GetAlert(devID(1), 4)
	if err != nil {
		t.Fatal(err)
	}
	m := a.Finding.GetScreenMatch()
	if m.GetTerm() != "term 4" || m.GetLibrary() != "keywords" || m.GetWindowTitle() != "a title" || m.GetContext() != "some context" ||
		m.GetProcess() != "firefox" || m.GetSource() != "window_title" || m.GetCategory() != "self_harm" || m.GetUser() != "pupil7" {
		t.Errorf("old Details read as %v", m)
	}
	if _, err := s.GetAlert(devID(1), 7); err != ErrNotFound {
		t.Errorf("posture finding read as an alert: %v", err)
	}
}

// TestAlertFeed: a subscriber is told of each alert committed after it
// subscribed, once, and of nothing else (not posture findings, not
// duplicates).
func TestAlertFeed(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	base := time.Now()
	if _, _, err := s.CommitFindings(ctx, []*vigilv1.Finding{alertFinding(devID(1), 1, base, "drugs", "u", "g", 3)}); err != nil {
		t.Fatal(err)
	}
	feed := s.SubscribeAlerts()
	defer feed.Close()
	batch := []*vigilv1.Finding{alertFinding(devID(1), 1, base, "drugs", "u", "g", 3), alertFinding(devID(1), 2, base, "drugs", "u", "g", 3),
		testFinding(devID(1), 3, "compliance", base), alertFinding(devID(2), 1, base, "drugs", "u", "g", 3)}
	if _, _, err := s.CommitFindings(ctx, batch); err != nil {
		t.Fatal(err)
	}
	select {
	case <-feed.Ready():
	case <-time.After(30 * time.Second):
		t.Fatal("no signal")
	}
	if got := feed.Take(); !slices.Equal(got, []AlertRef{{devID(1), 2}, {devID(2), 1}}) {
		t.Errorf("feed %v", got)
	}
}

// TestLargeGroupIndexesEveryAlert: a group larger than one Badger
// transaction (≈2,300 alerts of 9 entries fit in one) is committed in
// several, each holding whole findings with their index entries, and every
// alert is found by each of its filters.
func TestLargeGroupIndexesEveryAlert(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	ctx := context.Background()
	base := time.Now().Add(-time.Hour)
	var batch []*vigilv1.Finding
	for i := 1; i <= 7000; i++ {
		batch = append(batch, alertFinding(devID(i%2), uint64(i), base.Add(time.Duration(i)*time.Millisecond), "drugs", "pupil9", "pupils", 4))
	}
	if stored, _, err := s.CommitFindings(ctx, batch); err != nil || stored != 7000 {
		t.Fatalf("stored %d, err %v", stored, err)
	}
	for _, q := range []AlertQuery{{}, {Category: "drugs"}, {Status: "new"}, {Severity: 4}, {Group: "pupils"}, {Users: []string{"pupil9"}},
		{Devices: []string{devID(0), devID(1)}}} {
		n := 0
		for q.Limit = 200; ; {
			page, next, err := s.QueryAlerts(ctx, q)
			if err != nil {
				t.Fatal(err)
			}
			n += len(page)
			if next == nil {
				break
			}
			q.After = next
		}
		if n != 7000 {
			t.Errorf("%+v: %d alerts, want 7000", q, n)
		}
	}
}
