package console

import (
	"context"
	"encoding/hex"
	"github.com/vigil-safeguarding/vigil/collector/triage"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/personid"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// The alert queue's listing: the store's alert indexes answer the filters,
// so a page is always full (limit alerts, or every match left) and
// next_cursor continues it; names a DSL types are resolved here first.

// queueStore is what the queue's listing needs of the store.
type queueStore interface {
	QueryAlerts(ctx context.Context, q store.AlertQuery) ([]*store.Alert, []byte, error)
	AlertValues(field string) ([]string, error)
	Devices() []store.Device
}

var severities = map[string]vigilv1.Severity{"info": 1, "low": 2, "medium": 3, "high": 4, "critical": 5}

// summaryVisible asks visible (the one routing rule) about an index entry,
// with the fields of the finding and state that routing reads.
func (s *Server) summaryVisible(u *store.User) func(*store.AlertSummary) bool {
	return func(a *store.AlertSummary) bool {
		return s.visible(u, &store.Alert{
			Finding: &vigilv1.Finding{DeviceId: a.DeviceID, Seq: a.Seq, User: a.User, Group: a.Group, Category: a.Category, Severity: a.Severity},
			State:   summaryState(a),
		})
	}
}

// summaryState is the part of an alert's review state that routing reads
// (triage.MayView asks only whether a user is among the named reviewers,
// so which field holds which name does not matter here).
func summaryState(a *store.AlertSummary) store.AlertState {
	st := store.AlertState{Status: triage.Status(a.Status), EscalatedTo: a.EscalatedTo}
	for i, u := range a.Named {
		switch i {
		case 0:
			st.FirstReviewer = u
		case 1:
			st.SecondReviewer = u
		default:
			st.SecondRequested = u
		}
	}
	return st
}

// matchPeople resolves what a DSL typed in the person filter: every person
// whose display name or login contains it (case-insensitive), from the
// directory and from the people alerts are about (logins not in the
// directory). The result is non-nil: empty means nobody matches.
func (s *Server) matchPeople(q string) ([]string, error) {
	want := strings.ToLower(strings.TrimSpace(q))
	canon := personid.Canonical(q)
	out := []string{}
	seen := map[string]bool{}
	add := func(login string) {
		if c := personid.Canonical(login); c != "" && !seen[c] {
			seen[c] = true
			out = append(out, c)
		}
	}
	matches := func(login string) bool {
		c := personid.Canonical(login)
		return c != "" && (c == canon || strings.Contains(c, want))
	}
	s.peopleMu.RLock()
	for _, p := range s.people {
		if matches(p.Username) || strings.Contains(strings.ToLower(p.DisplayName), want) {
			add(p.Username)
		}
	}
	s.peopleMu.RUnlock()
	users, err := s.queue.AlertValues(store.AlertFieldUser)
	if err != nil {
		return nil, err
	}
	for _, u := range users {
		if matches(u) {
			add(u)
		}
	}
	return out, nil
}

// matchDevices resolves the device filter: the device with that id, and
// every device whose hostname contains it (case-insensitive).
func (s *Server) matchDevices(q string) []string {
	q = strings.TrimSpace(q)
	want := strings.ToLower(q)
	// The id itself always counts: an alert's device may have been
	// removed from the device list since (its alerts stay).
	out := []string{q}
	for _, d := range s.queue.Devices() {
		if d.DeviceID != q && strings.Contains(strings.ToLower(d.Hostname), want) {
			out = append(out, d.DeviceID)
		}
	}
	return out
}

func (s *Server) listAlerts(w http.ResponseWriter, r *http.Request, v *viewer) {
	q := r.URL.Query()
	aq := store.AlertQuery{Visible: s.summaryVisible(&v.User), Limit: 50}
	for _, k := range []string{"from", "to"} {
		if val := q.Get(k); val != "" {
			t, err := time.Parse(time.RFC3339, val)
			if err != nil {
				jsonError(w, http.StatusBadRequest, "%s: want RFC3339, e.g. 2026-11-23T09:00:00Z", k)
				return
			}
			if k == "from" {
				aq.From = t
			} else {
				aq.To = t
			}
		}
	}
	if c := q.Get("cursor"); c != "" {
		b, err := hex.DecodeString(c)
		if err != nil || len(b) < 16 || len(b) > 64 {
			jsonError(w, http.StatusBadRequest, "cursor: not one this server gave")
			return
		}
		aq.After = b
	}
	if l := q.Get("limit"); l != "" {
		n, err := strconv.Atoi(l)
		if err != nil || n < 1 || n > 200 {
			jsonError(w, http.StatusBadRequest, "limit: 1-200")
			return
		}
		aq.Limit = n
	}
	aq.Status, aq.Category, aq.Group = q.Get("status"), q.Get("category"), strings.TrimSpace(q.Get("group"))
	if aq.Status != "" && !triage.Status(aq.Status).Valid() {
		jsonError(w, http.StatusBadRequest, "status: new, in_review, concluded or false_positive")
		return
	}
	if sv := q.Get("severity"); sv != "" {
		var ok bool
		if aq.Severity, ok = severities[sv]; !ok {
			jsonError(w, http.StatusBadRequest, "severity: info, low, medium, high or critical")
			return
		}
	}
	if d := q.Get("device"); strings.TrimSpace(d) != "" {
		aq.Devices = s.matchDevices(d)
	}
	if p := q.Get("person"); strings.TrimSpace(p) != "" {
		var err error
		if aq.Users, err = s.matchPeople(p); err != nil {
			s.internal(w, "list alerts: match people", err)
			return
		}
	}
	page, next, err := s.queue.QueryAlerts(r.Context(), aq)
	if err != nil {
		s.internal(w, "list alerts", err)
		return
	}
	out := make([]AlertJSON, 0, len(page))
	for _, a := range page {
		out = append(out, s.alertJSON(a))
	}
	writeJSON(w, http.StatusOK, map[string]any{"alerts": out, "next_cursor": hex.EncodeToString(next)})
}

// alertCategories: the categories of the alerts this viewer may see, for
// the queue's filter (not a fixed list offering categories that never
// reach the queue).
func (s *Server) alertCategories(w http.ResponseWriter, r *http.Request, v *viewer) {
	cats, err := s.visibleCategories(r.Context(), &v.User)
	if err != nil {
		s.internal(w, "list alert categories", err)
		return
	}
	writeJSON(w, http.StatusOK, map[string]any{"categories": cats})
}

func (s *Server) visibleCategories(ctx context.Context, u *store.User) ([]string, error) {
	all, err := s.queue.AlertValues(store.AlertFieldCategory)
	if err != nil {
		return nil, err
	}
	out := []string{}
	for _, c := range all {
		page, _, err := s.queue.QueryAlerts(ctx, store.AlertQuery{Category: c, Visible: s.summaryVisible(u), Limit: 1})
		if err != nil {
			return nil, err
		}
		if len(page) > 0 {
			out = append(out, c)
		}
	}
	return out, nil
}
