// Package triage is the review of a safeguarding alert: the record of the
// review form (seed 002 Appendix 5), its typed status, who may take which
// step, and the one pure function that takes a step. It knows nothing of
// HTTP, storage or accounts: the console turns a signed-in user into an
// Actor, the store keeps State in one transaction, and every rule about
// reviewing lives here.
//
// Who reviews what (seed 002 §5.3, docs/console.md "Who reviews what"):
//
//	the alert is about    routed to (first reviewer)   may sign second
//	a pupil / unknown     a DSL                        another DSL
//	a staff member        the headteacher              another headteacher; a DSL or the chair of governors the first reviewer names
//	the headteacher       the chair of governors       another chair; a DSL the first reviewer names
//
// Nobody takes any step on an alert about themselves, and nobody sees one.
package triage

import (
	"fmt"
	"slices"
	"strings"
	"time"
	"unicode/utf8"
)

// Status is where an alert's review stands.
type Status string

// The statuses. Concluded and FalsePositive end the review: only notes can
// be added after them.
const (
	New           Status = "new"
	InReview      Status = "in_review"
	Concluded     Status = "concluded"
	FalsePositive Status = "false_positive"
)

// Statuses lists every status, in the order of the review.
var Statuses = []Status{New, InReview, Concluded, FalsePositive}

// Valid says whether s is one of Statuses.
func (s Status) Valid() bool { return slices.Contains(Statuses, s) }

// Closed says whether the review has ended (concluded, or a false positive).
func (s Status) Closed() bool { return s == Concluded || s == FalsePositive }

// Route is whose concern an alert is (seed 002 §5.3).
type Route string

// The routes.
const (
	RouteDSL         Route = "dsl"
	RouteHeadteacher Route = "headteacher"
	RouteChair       Route = "chair"
)

// Role is what a reviewer is, as far as reviewing goes.
type Role string

// The roles. RoleNone is everyone else (technicians, governors who do not
// chair, administrators): they review nothing.
const (
	RoleNone        Role = ""
	RoleDSL         Role = "dsl"
	RoleHeadteacher Role = "headteacher"
	RoleChair       Role = "chair"
)

// SecondRoles are the roles a second reviewer of an alert on route r may
// have. The roles the route is for review it anyway; the others sign only
// when the first reviewer names them (Act RequestSecond). A staff concern
// may be a safeguarding one (a DSL's concern, §5.3) or one for the
// governors (the chair oversees the headteacher); a concern about the
// headteacher is for the chair, and a DSL, who reports to neither side of
// it, is the independent second signature. The headteacher never reviews a
// concern about the headteacher (they are its Subject).
func SecondRoles(r Route) []Role {
	switch r {
	case RouteHeadteacher:
		return []Role{RoleHeadteacher, RoleDSL, RoleChair}
	case RouteChair:
		return []Role{RoleChair, RoleDSL}
	}
	return []Role{RoleDSL}
}

// Action is one step of the review.
type Action string

// The actions.
const (
	StartReview   Action = "start_review"
	AddNote       Action = "note"
	Sign          Action = "sign"
	RequestSecond Action = "request_second_reviewer"
	Conclude      Action = "conclude"
	MarkFalse     Action = "false_positive"
)

// Actions lists every action.
var Actions = []Action{StartReview, AddNote, Sign, RequestSecond, Conclude, MarkFalse}

// Conclusions of the review form (seed 002 Appendix 5), in its order.
var Conclusions = []string{"no_concern", "kept_on_file", "parents_informed", "referred_safeguarding_board", "referred_police", "other"}

// ConclusionLabels are the form's wording.
var ConclusionLabels = map[string]string{
	"no_concern": "No concern", "kept_on_file": "Kept on file", "parents_informed": "Parents informed",
	"referred_safeguarding_board": "Referred to Safeguarding board", "referred_police": "Referred to Police", "other": "Other",
}

// Actor is the person taking a step, as the alert sees them.
type Actor struct {
	Username string
	Role     Role
	// Subject: the alert is about this person. They may do nothing with it.
	Subject bool
	// Routed: the alert is routed (or escalated) to the actor's role, so
	// they review it without being named.
	Routed bool
}

// Act is an action with what it needs.
type Act struct {
	Action Action
	// Route is the alert's route (who its second reviewer may be).
	Route Route
	// Reason: StartReview's reason for the investigation, MarkFalse's why.
	Reason string
	// Text is AddNote's note.
	Text string
	// Conclusion (one of Conclusions) and Other (its text for "other").
	Conclusion, Other string
	// Second is the person RequestSecond names.
	Second *Actor
	// ExclusionID names the exclusion MarkFalse proposes (the caller
	// stores the proposal in the same transaction).
	ExclusionID string
}

// Note is a free-text note on an alert.
type Note struct {
	Time time.Time `json:"time"`
	By   string    `json:"by"`
	Text string    `json:"text"`
}

// HistoryEntry records one change to an alert; history is append-only.
type HistoryEntry struct {
	Time   time.Time `json:"time"`
	By     string    `json:"by"`
	Action string    `json:"action"`
	Detail string    `json:"detail,omitempty"`
}

// State is an alert's review record (the review form). The zero State
// with Status New is an alert nobody has touched.
type State struct {
	Status          Status    `json:"status"`
	Reason          string    `json:"reason,omitempty"`
	FirstReviewer   string    `json:"first_reviewer,omitempty"`
	FirstSignedAt   time.Time `json:"first_signed_at,omitzero"`
	SecondRequested string    `json:"second_requested,omitempty"`
	SecondReviewer  string    `json:"second_reviewer,omitempty"`
	SecondSignedAt  time.Time `json:"second_signed_at,omitzero"`
	Conclusion      string    `json:"conclusion,omitempty"`
	ConclusionOther string    `json:"conclusion_other,omitempty"`
	ConcludedAt     time.Time `json:"concluded_at,omitzero"`
	// A false positive ends the review with why, who and when, and the
	// exclusion it proposed.
	FalsePositiveReason string         `json:"false_positive_reason,omitempty"`
	FalsePositiveBy     string         `json:"false_positive_by,omitempty"`
	FalsePositiveAt     time.Time      `json:"false_positive_at,omitzero"`
	ExclusionID         string         `json:"exclusion_id,omitempty"`
	Notes               []Note         `json:"notes,omitempty"`
	History             []HistoryEntry `json:"history,omitempty"`
	// EscalatedTo lists routes ("headteacher", "chair") the alert was
	// escalated to because nobody acknowledged it in time; they may see it.
	EscalatedTo []string `json:"escalated_to,omitempty"`
}

// Kind says how a refused step was wrong.
type Kind int

// The kinds.
const (
	Invalid   Kind = iota + 1 // the request itself is wrong (a missing reason)
	Conflict                  // not possible in the alert's state
	Forbidden                 // not for this person
)

// Error is a refused step; nothing changed.
type Error struct {
	Kind Kind
	Msg  string
}

func (e *Error) Error() string { return e.Msg }

func refuse(k Kind, format string, a ...any) error { return &Error{k, fmt.Sprintf(format, a...)} }

// Named says whether the review names u: a signatory, or the second
// reviewer the first one asked for.
func (st State) Named(u string) bool {
	return u != "" && (st.FirstReviewer == u || st.SecondReviewer == u || st.SecondRequested == u)
}

// MayView says whether who may see the alert at all: they review alerts
// (a reviewer role), it is routed to them or the review names them, and it
// is not about them.
func MayView(st State, who Actor) bool {
	return !who.Subject && who.Role != RoleNone && (who.Routed || st.Named(who.Username))
}

// SecondEligible says whether c may be second reviewer of an alert on
// route r (first reviewer aside, which Apply checks).
func SecondEligible(r Route, c Actor) bool {
	return !c.Subject && c.Username != "" && (c.Routed || slices.Contains(SecondRoles(r), c.Role))
}

// Apply takes one step of the review: the new state, or an *Error and the
// state unchanged. It is pure: the same inputs give the same answer, and
// st is not modified (slices are copied before they grow).
func Apply(st State, a Act, who Actor, now time.Time) (State, error) {
	if st.Status == "" {
		st.Status = New
	}
	if !st.Status.Valid() {
		return st, refuse(Conflict, "the alert's review status %q is not one this collector knows", st.Status)
	}
	if !slices.Contains(Actions, a.Action) {
		return st, refuse(Invalid, "action: one of %s", joinActions())
	}
	if who.Subject {
		return st, refuse(Forbidden, "this alert is about you: nobody reviews an alert about themselves")
	}
	if !MayView(st, who) {
		return st, refuse(Forbidden, "this alert is not routed to you")
	}
	if st.Status.Closed() && a.Action != AddNote {
		if st.Status == FalsePositive {
			return st, refuse(Conflict, "this alert was marked a false positive: only notes can be added")
		}
		return st, refuse(Conflict, "this alert is concluded: only notes can be added")
	}
	next := st
	next.History = slices.Clip(st.History)
	next.Notes = slices.Clip(st.Notes)
	h := HistoryEntry{Time: now, By: who.Username, Action: string(a.Action)}
	switch a.Action {
	case StartReview:
		reason := CleanText(a.Reason, 2000)
		switch {
		case reason == "":
			return st, refuse(Invalid, "start_review needs a reason for the investigation")
		case st.Status != New:
			return st, refuse(Conflict, "the review has already started")
		}
		next.Status, next.Reason, h.Detail = InReview, reason, reason
	case AddNote:
		text := CleanText(a.Text, 10000)
		if text == "" {
			return st, refuse(Invalid, "a note needs text")
		}
		next.Notes = append(next.Notes, Note{Time: now, By: who.Username, Text: text})
		h.Detail = text
	case Sign:
		switch {
		case st.Status != InReview:
			return st, refuse(Conflict, "start the review before signing")
		case st.FirstReviewer == who.Username || st.SecondReviewer == who.Username:
			return st, refuse(Conflict, "you have already signed this review; the second reviewer must be someone else")
		case st.FirstReviewer == "":
			if !who.Routed {
				return st, refuse(Forbidden, "the first reviewer is one of those this alert is routed to")
			}
			next.FirstReviewer, next.FirstSignedAt, h.Detail = who.Username, now, "first reviewer"
		case st.SecondReviewer != "":
			return st, refuse(Conflict, "the review already has two signatures")
		default: // MayView above: routed, or the second reviewer asked for
			next.SecondReviewer, next.SecondSignedAt, h.Detail = who.Username, now, "second reviewer"
		}
	case RequestSecond:
		switch {
		case st.Status != InReview || st.FirstReviewer == "":
			return st, refuse(Conflict, "sign as first reviewer before asking for the second signature")
		case st.FirstReviewer != who.Username:
			return st, refuse(Forbidden, "only the first reviewer asks for the second signature")
		case st.SecondReviewer != "":
			return st, refuse(Conflict, "the review already has two signatures")
		case a.Second == nil || a.Second.Username == "":
			return st, refuse(Invalid, "request_second_reviewer needs the reviewer's username")
		case a.Second.Username == st.FirstReviewer:
			return st, refuse(Invalid, "the second reviewer must be someone other than the first")
		case !SecondEligible(a.Route, *a.Second):
			return st, refuse(Invalid, "%s may not be second reviewer of this alert (see who may, in the review form)", a.Second.Username)
		}
		next.SecondRequested, h.Detail = a.Second.Username, "asked "+a.Second.Username+" to sign as second reviewer"
	case Conclude:
		switch {
		case st.Status != InReview:
			return st, refuse(Conflict, "start the review before concluding")
		case st.FirstReviewer == "" || st.SecondReviewer == "" || st.FirstReviewer == st.SecondReviewer:
			return st, refuse(Conflict, "concluding needs the signatures of two different reviewers")
		case !slices.Contains(Conclusions, a.Conclusion):
			return st, refuse(Invalid, "conclusion: one of %s", strings.Join(Conclusions, ", "))
		}
		other := CleanText(a.Other, 2000)
		if a.Conclusion == "other" && other == "" {
			return st, refuse(Invalid, "conclusion other needs a description")
		}
		if a.Conclusion != "other" {
			other = ""
		}
		next.Status, next.Conclusion, next.ConclusionOther, next.ConcludedAt = Concluded, a.Conclusion, other, now
		h.Detail = ConclusionText(next)
	case MarkFalse:
		reason := CleanText(a.Reason, 2000)
		switch {
		case !who.Routed:
			return st, refuse(Forbidden, "only the reviewers this alert is routed to mark it a false positive")
		case reason == "":
			return st, refuse(Invalid, "false_positive needs a reason")
		}
		next.Status, next.FalsePositiveReason, next.FalsePositiveBy, next.FalsePositiveAt = FalsePositive, reason, who.Username, now
		next.ExclusionID = a.ExclusionID
		h.Detail = "false positive: " + reason
		if a.ExclusionID != "" {
			h.Detail = "false positive, proposed exclusion " + a.ExclusionID + ": " + reason
		}
	}
	next.History = append(next.History, h)
	return next, nil
}

// Allowed lists the actions who could take now, given what each needs
// (a reason, a conclusion, a named reviewer) is supplied: what the review
// form offers them.
func Allowed(st State, r Route, who Actor) []Action {
	probe := Act{Route: r, Reason: "probe", Text: "probe", Conclusion: "no_concern",
		Second: &Actor{Username: "\x00probe", Routed: true}}
	var out []Action
	for _, act := range Actions {
		probe.Action = act
		if _, err := Apply(st, probe, who, time.Time{}); err == nil {
			out = append(out, act)
		}
	}
	return out
}

// ConclusionText is the conclusion as the form words it.
func ConclusionText(st State) string {
	t := ConclusionLabels[st.Conclusion]
	if st.Conclusion == "other" && st.ConclusionOther != "" {
		t += ": " + st.ConclusionOther
	}
	return t
}

// CleanText trims s and cuts it to at most max bytes of valid UTF-8.
func CleanText(s string, max int) string {
	s = strings.TrimSpace(s)
	if len(s) > max {
		s = s[:max]
		for !utf8.ValidString(s) {
			s = s[:len(s)-1]
		}
	}
	return s
}

func joinActions() string {
	var b strings.Builder
	for i, a := range Actions {
		if i > 0 {
			b.WriteString(", ")
		}
		b.WriteString(string(a))
	}
	return b.String()
}
