package triage

import (
	"errors"
	"reflect"
	"slices"
	"strings"
	"testing"
	"time"
)

var (
	t0  = time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	now = t0.Add(time.Hour)
)

// The people of a staff concern (route headteacher): two headteachers the
// alert is routed to, two DSLs and the chair who are not, a technician, and
// the subject, who holds a headteacher account (a deputy head, say) and so
// would be routed if being the subject did not come first.
var actors = map[string]Actor{
	"head1":   {Username: "head1", Role: RoleHeadteacher, Routed: true},
	"head2":   {Username: "head2", Role: RoleHeadteacher, Routed: true},
	"dsl1":    {Username: "dsl1", Role: RoleDSL},
	"dsl2":    {Username: "dsl2", Role: RoleDSL},
	"chair":   {Username: "chair", Role: RoleChair},
	"tech":    {Username: "tech", Role: RoleNone},
	"subject": {Username: "subject", Role: RoleHeadteacher, Routed: true, Subject: true},
}

func history(n int) []HistoryEntry {
	// Spare capacity: an Apply that appended in place would write into
	// the caller's array, which the purity check below catches.
	h := make([]HistoryEntry, n, n+4)
	for i := range h {
		h[i] = HistoryEntry{Time: t0, By: "head1", Action: "x"}
	}
	return h
}

// Every state a staff concern can be in.
var states = map[string]func() State{
	"new":       func() State { return State{Status: New} },
	"unsigned":  func() State { return State{Status: InReview, Reason: "r", History: history(1)} },
	"first":     firstSigned,
	"requested": requested,
	"two":       twoSigned,
	"concluded": func() State {
		s := twoSigned()
		s.Status, s.Conclusion, s.ConcludedAt, s.History = Concluded, "no_concern", t0, history(5)
		return s
	},
	"false_positive": func() State {
		return State{Status: FalsePositive, FalsePositiveReason: "r", FalsePositiveBy: "head1", FalsePositiveAt: t0, History: history(1)}
	},
}

func firstSigned() State {
	return State{Status: InReview, Reason: "r", FirstReviewer: "head1", FirstSignedAt: t0, History: history(2)}
}

func requested() State {
	s := firstSigned()
	s.SecondRequested, s.History = "dsl1", history(3)
	return s
}

func twoSigned() State {
	s := requested()
	s.SecondReviewer, s.SecondSignedAt, s.History = "dsl1", t0, history(4)
	return s
}

// A valid request for each action.
var acts = map[Action]Act{
	StartReview:   {Action: StartReview, Reason: "term on a staff laptop"},
	AddNote:       {Action: AddNote, Text: "spoke to HR"},
	Sign:          {Action: Sign},
	RequestSecond: {Action: RequestSecond, Second: &Actor{Username: "chair", Role: RoleChair}},
	Conclude:      {Action: Conclude, Conclusion: "kept_on_file"},
	MarkFalse:     {Action: MarkFalse, Reason: "a PE lesson", ExclusionID: "x1"},
}

// TestApplyEveryStateActionRole: the exhaustive table. For every state
// and action it lists who may take the step and the status after it;
// everyone else (every other actor) is refused with the state unchanged.
func TestApplyEveryStateActionRole(t *testing.T) {
	type outcome struct {
		who  []string
		then Status
	}
	routed := []string{"head1", "head2"}
	table := map[string]map[Action]outcome{
		"new": {
			StartReview: {routed, InReview}, AddNote: {routed, New}, Sign: {}, RequestSecond: {}, Conclude: {},
			MarkFalse: {routed, FalsePositive},
		},
		"unsigned": {
			StartReview: {}, AddNote: {routed, InReview}, Sign: {routed, InReview}, RequestSecond: {}, Conclude: {},
			MarkFalse: {routed, FalsePositive},
		},
		"first": {
			StartReview: {}, AddNote: {routed, InReview}, Sign: {[]string{"head2"}, InReview},
			RequestSecond: {[]string{"head1"}, InReview}, Conclude: {}, MarkFalse: {routed, FalsePositive},
		},
		"requested": {
			StartReview: {}, AddNote: {[]string{"head1", "head2", "dsl1"}, InReview}, Sign: {[]string{"head2", "dsl1"}, InReview},
			RequestSecond: {[]string{"head1"}, InReview}, Conclude: {}, MarkFalse: {routed, FalsePositive},
		},
		"two": {
			StartReview: {}, AddNote: {[]string{"head1", "head2", "dsl1"}, InReview}, Sign: {}, RequestSecond: {},
			Conclude: {[]string{"head1", "head2", "dsl1"}, Concluded}, MarkFalse: {routed, FalsePositive},
		},
		"concluded": {
			StartReview: {}, AddNote: {[]string{"head1", "head2", "dsl1"}, Concluded}, Sign: {}, RequestSecond: {}, Conclude: {}, MarkFalse: {},
		},
		"false_positive": {
			StartReview: {}, AddNote: {routed, FalsePositive}, Sign: {}, RequestSecond: {}, Conclude: {}, MarkFalse: {},
		},
	}
	// Exhaustive: every state and every action is in the table.
	for name := range states {
		for _, a := range Actions {
			if _, ok := table[name][a]; !ok {
				t.Errorf("table misses state %s × action %s", name, a)
			}
		}
	}
	for _, s := range Statuses {
		found := false
		for _, mk := range states {
			found = found || mk().Status == s
		}
		if !found {
			t.Errorf("no state with status %s in the table", s)
		}
	}
	for name, mk := range states {
		for action, want := range table[name] {
			for who, actor := range actors {
				before := mk()
				in := mk()
				act := acts[action]
				act.Route = RouteHeadteacher
				got, err := Apply(in, act, actor, now)
				if !reflect.DeepEqual(in, before) || !reflect.DeepEqual(in.History[:cap(in.History)], before.History[:cap(before.History)]) {
					t.Fatalf("%s/%s/%s: Apply changed its input", name, action, who)
				}
				if slices.Contains(want.who, who) {
					if err != nil {
						t.Errorf("%s × %s × %s: refused (%v), want allowed", name, action, who, err)
						continue
					}
					if got.Status != want.then {
						t.Errorf("%s × %s × %s: status %s, want %s", name, action, who, got.Status, want.then)
					}
					if len(got.History) != len(before.History)+1 || got.History[len(got.History)-1].By != who ||
						got.History[len(got.History)-1].Action != string(action) || !got.History[len(got.History)-1].Time.Equal(now) {
						t.Errorf("%s × %s × %s: history %+v", name, action, who, got.History)
					}
					continue
				}
				var te *Error
				if err == nil || !errors.As(err, &te) {
					t.Errorf("%s × %s × %s: allowed (status %s), want refused", name, action, who, got.Status)
					continue
				}
				if !reflect.DeepEqual(got, before) {
					t.Errorf("%s × %s × %s: refused but state changed", name, action, who)
				}
				if who == "subject" && te.Kind != Forbidden {
					t.Errorf("%s × %s × subject: kind %d, want Forbidden", name, action, te.Kind)
				}
			}
		}
	}
}

// TestApplyRecordsWhatTheFormNeeds: the fields each step fills.
func TestApplyRecordsWhatTheFormNeeds(t *testing.T) {
	head, dsl := actors["head1"], actors["dsl1"]
	st, err := Apply(State{}, Act{Action: StartReview, Reason: "  why  "}, head, now)
	if err != nil || st.Status != InReview || st.Reason != "why" {
		t.Fatalf("start: %+v %v", st, err)
	}
	st, _ = Apply(st, Act{Action: Sign}, head, now)
	if st.FirstReviewer != "head1" || !st.FirstSignedAt.Equal(now) {
		t.Fatalf("first: %+v", st)
	}
	st, err = Apply(st, Act{Action: RequestSecond, Route: RouteHeadteacher, Second: &dsl}, head, now)
	if err != nil || st.SecondRequested != "dsl1" {
		t.Fatalf("request: %+v %v", st, err)
	}
	st, _ = Apply(st, Act{Action: Sign}, dsl, now)
	if st.SecondReviewer != "dsl1" {
		t.Fatalf("second: %+v", st)
	}
	st, err = Apply(st, Act{Action: Conclude, Conclusion: "other", Other: "HR process"}, head, now)
	if err != nil || st.ConclusionOther != "HR process" || !st.ConcludedAt.Equal(now) || ConclusionText(st) != "Other: HR process" {
		t.Fatalf("conclude: %+v %v", st, err)
	}
	fp, err := Apply(State{}, Act{Action: MarkFalse, Reason: "PE", ExclusionID: "x9"}, head, now)
	if err != nil || fp.FalsePositiveReason != "PE" || fp.FalsePositiveBy != "head1" || !fp.FalsePositiveAt.Equal(now) || fp.ExclusionID != "x9" ||
		!strings.Contains(fp.History[0].Detail, "x9") {
		t.Fatalf("false positive: %+v %v", fp, err)
	}
	for _, c := range []struct {
		name string
		act  Act
		kind Kind
	}{
		{"start without reason", Act{Action: StartReview, Reason: "  "}, Invalid},
		{"note without text", Act{Action: AddNote}, Invalid},
		{"false positive without reason", Act{Action: MarkFalse}, Invalid},
		{"unknown action", Act{Action: "approve"}, Invalid},
	} {
		_, err := Apply(State{}, c.act, head, now)
		var te *Error
		if !errors.As(err, &te) || te.Kind != c.kind {
			t.Errorf("%s: %v, want kind %d", c.name, err, c.kind)
		}
	}
	two := firstSigned()
	for _, c := range []struct {
		name string
		act  Act
	}{
		{"conclusion not on the form", Act{Action: Conclude, Conclusion: "maybe"}},
		{"other without text", Act{Action: Conclude, Conclusion: "other"}},
	} {
		st := two
		st.SecondReviewer = "head2"
		if _, err := Apply(st, c.act, head, now); err == nil {
			t.Errorf("%s: allowed", c.name)
		}
	}
	// Whom the first reviewer may name.
	for _, c := range []struct {
		who  Actor
		ok   bool
		name string
	}{
		{actors["chair"], true, "chair"}, {actors["dsl2"], true, "a DSL"}, {actors["head2"], true, "another headteacher"},
		{actors["tech"], false, "a technician"}, {actors["subject"], false, "the subject"}, {head, false, "the first reviewer"},
	} {
		_, err := Apply(two, Act{Action: RequestSecond, Route: RouteHeadteacher, Second: &c.who}, head, now)
		if (err == nil) != c.ok {
			t.Errorf("naming %s: %v, want ok=%v", c.name, err, c.ok)
		}
	}
}

// TestSecondEligibleEveryRouteRole: who may sign second, per route (the
// table in the package comment and docs/console.md).
func TestSecondEligibleEveryRouteRole(t *testing.T) {
	want := map[Route][]Role{
		RouteDSL:         {RoleDSL},
		RouteHeadteacher: {RoleHeadteacher, RoleDSL, RoleChair},
		RouteChair:       {RoleChair, RoleDSL},
	}
	for r, roles := range want {
		for _, role := range []Role{RoleNone, RoleDSL, RoleHeadteacher, RoleChair} {
			for _, subject := range []bool{false, true} {
				c := Actor{Username: "x", Role: role, Subject: subject}
				ok := !subject && slices.Contains(roles, role)
				if got := SecondEligible(r, c); got != ok {
					t.Errorf("route %s role %q subject %v: %v, want %v", r, role, subject, got, ok)
				}
			}
		}
	}
}

// TestAllowedIsWhatApplyAccepts: the actions the form offers.
func TestAllowedIsWhatApplyAccepts(t *testing.T) {
	cases := []struct {
		state string
		who   string
		want  []Action
	}{
		{"new", "head1", []Action{StartReview, AddNote, MarkFalse}},
		{"first", "head1", []Action{AddNote, RequestSecond, MarkFalse}},
		{"requested", "dsl1", []Action{AddNote, Sign}},
		{"requested", "dsl2", nil},
		{"false_positive", "head1", []Action{AddNote}},
		{"new", "subject", nil},
	}
	for _, c := range cases {
		if got := Allowed(states[c.state](), RouteHeadteacher, actors[c.who]); !slices.Equal(got, c.want) {
			t.Errorf("%s %s: %v, want %v", c.state, c.who, got, c.want)
		}
	}
}
