package store

// The alert indexes: what the DSL filters by, kept so that a filtered page
// of the queue is found without decoding a single finding it does not show.
//
//	ai/<observed ns:8><device:26><seq:8>               -> AlertSummary (every alert)
//	ax/<field:1><len:2><value><observed ns:8><device:26><seq:8> -> AlertSummary
//
// Fields: 's' triage status, 'c' category, 'v' severity (decimal), 'd'
// device, 'u' person (personid.Canonical of the finding's user), 'g' group
// (lower-cased). Every entry of one alert shares the tail
// <ns><device><seq>, so a query intersects the lists of its filters by
// leapfrogging reverse iterators on that tail (newest first), and the
// value, a few dozen bytes, answers the filters and the viewer's routing
// without reading the finding. Only the alerts a page shows are then read
// in full. The entries are written in the transaction that stores the
// finding, rewritten in the one that changes its triage state, and carry
// the finding's expiry. m/alert-index records the layout version; a store
// without it (or with an older one) is reindexed at open.

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"github.com/vigil-safeguarding/vigil/collector/triage"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/internal/personid"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

const (
	pfxAlertFilter   = "ax/"
	keyAlertIndexV   = "m/alert-index"
	alertIndexLayout = "2"

	fieldStatus   = 's'
	fieldCategory = 'c'
	fieldSeverity = 'v'
	fieldDevice   = 'd'
	fieldUser     = 'u'
	fieldGroup    = 'g'
)

// alertFields are the indexed fields, in the order entries are written.
var alertFields = []byte{fieldStatus, fieldCategory, fieldSeverity, fieldDevice, fieldUser, fieldGroup}

// AlertSummary is what the indexes hold of an alert: enough to filter it
// and to decide who may see it.
type AlertSummary struct {
	DeviceID string
	Seq      uint64
	Observed time.Time
	Status   string
	Severity vigilv1.Severity
	Category string
	Group    string
	User     string // the finding's user, as sent
	// EscalatedTo: routes the alert was escalated to (AlertState.EscalatedTo).
	EscalatedTo []string
	// Named: the reviewers the review names (first, second, the second
	// asked for), who may see the alert whatever its route (triage.MayView).
	Named []string
}

func summaryOf(f *vigilv1.Finding, st AlertState) AlertSummary {
	status := string(st.Status)
	if status == "" {
		status = string(triage.New)
	}
	return AlertSummary{DeviceID: f.GetDeviceId(), Seq: f.GetSeq(), Observed: f.GetObservedAt().AsTime(),
		Status: status, Severity: f.GetSeverity(), Category: f.GetCategory(), Group: f.GetGroup(), User: f.GetUser(),
		EscalatedTo: st.EscalatedTo, Named: named(st)}
}

func named(st AlertState) []string {
	var out []string
	for _, u := range []string{st.FirstReviewer, st.SecondReviewer, st.SecondRequested} {
		if u != "" {
			out = append(out, u)
		}
	}
	return out
}

// tail is <observed ns><device><seq>, the order of every alert list.
func (a *AlertSummary) tail() []byte {
	k := make([]byte, 0, 8+len(a.DeviceID)+8)
	k = binary.BigEndian.AppendUint64(k, uint64(a.Observed.UnixNano()))
	k = append(k, a.DeviceID...)
	return binary.BigEndian.AppendUint64(k, a.Seq)
}

// value returns the indexed value of field for this alert.
func (a *AlertSummary) value(field byte) string {
	switch field {
	case fieldStatus:
		return a.Status
	case fieldCategory:
		return a.Category
	case fieldSeverity:
		return strconv.Itoa(int(a.Severity))
	case fieldDevice:
		return a.DeviceID
	case fieldUser:
		return personid.Canonical(a.User)
	case fieldGroup:
		return strings.ToLower(a.Group)
	}
	return ""
}

// encode: version 1, then uvarint-prefixed strings: status, category,
// group, user, then severity, the escalation routes and the named
// reviewers.
func (a *AlertSummary) encode() []byte {
	b := make([]byte, 0, 64)
	b = append(b, 1)
	for _, s := range []string{a.Status, a.Category, a.Group, a.User} {
		b = binary.AppendUvarint(b, uint64(len(s)))
		b = append(b, s...)
	}
	b = binary.AppendUvarint(b, uint64(a.Severity))
	for _, list := range [][]string{a.EscalatedTo, a.Named} {
		b = binary.AppendUvarint(b, uint64(len(list)))
		for _, s := range list {
			b = binary.AppendUvarint(b, uint64(len(s)))
			b = append(b, s...)
		}
	}
	return b
}

var errBadSummary = errors.New("store: damaged alert index entry")

// decodeSummary reads an index entry's tail and value.
func decodeSummary(tail, v []byte) (AlertSummary, error) {
	var a AlertSummary
	if len(tail) < 17 || len(v) < 1 || v[0] != 1 {
		return a, errBadSummary
	}
	a.Observed = time.Unix(0, int64(binary.BigEndian.Uint64(tail[:8]))).UTC()
	a.DeviceID = string(tail[8 : len(tail)-8])
	a.Seq = binary.BigEndian.Uint64(tail[len(tail)-8:])
	v = v[1:]
	str := func() (string, bool) {
		n, k := binary.Uvarint(v)
		if k <= 0 || uint64(len(v)-k) < n {
			return "", false
		}
		s := string(v[k : k+int(n)])
		v = v[k+int(n):]
		return s, true
	}
	var ok [4]bool
	a.Status, ok[0] = str()
	a.Category, ok[1] = str()
	a.Group, ok[2] = str()
	a.User, ok[3] = str()
	if !ok[0] || !ok[1] || !ok[2] || !ok[3] {
		return a, errBadSummary
	}
	sev, k := binary.Uvarint(v)
	if k <= 0 {
		return a, errBadSummary
	}
	a.Severity, v = vigilv1.Severity(sev), v[k:]
	n, k := binary.Uvarint(v)
	if k <= 0 || n > 16 {
		return a, errBadSummary
	}
	v = v[k:]
	for range n {
		s, ok := str()
		if !ok {
			return a, errBadSummary
		}
		a.EscalatedTo = append(a.EscalatedTo, s)
	}
	if len(v) == 0 {
		return a, nil // written before named reviewers were indexed
	}
	n, k = binary.Uvarint(v)
	if k <= 0 || n > 3 {
		return a, errBadSummary
	}
	v = v[k:]
	for range n {
		s, ok := str()
		if !ok {
			return a, errBadSummary
		}
		a.Named = append(a.Named, s)
	}
	return a, nil
}

// filterPrefix is ax/<field><len><value>.
func filterPrefix(field byte, value string) []byte {
	if len(value) > 0xffff {
		value = value[:0xffff]
	}
	k := make([]byte, 0, len(pfxAlertFilter)+3+len(value))
	k = append(k, pfxAlertFilter...)
	k = append(k, field)
	k = binary.BigEndian.AppendUint16(k, uint16(len(value)))
	return append(k, value...)
}

// alertEntries are the index entries of one alert, all with the same
// summary value and expiry (exp: unix seconds, 0 = none).
func alertEntries(a *AlertSummary, exp uint64) []*badger.Entry {
	tail, val := a.tail(), a.encode()
	es := make([]*badger.Entry, 0, 1+len(alertFields))
	es = append(es, badger.NewEntry(append([]byte(pfxAlertIndex), tail...), val))
	for _, f := range alertFields {
		es = append(es, badger.NewEntry(append(filterPrefix(f, a.value(f)), tail...), val))
	}
	for _, e := range es {
		e.ExpiresAt = exp
	}
	return es
}

// expiryOf is the unix expiry an entry written now with ttl gets.
func expiryOf(ttl time.Duration) uint64 {
	if ttl <= 0 {
		return 0
	}
	return uint64(time.Now().Add(ttl).Unix())
}

// reindexAlert rewrites the index entries of an alert whose summary went
// from old to cur, in txn: entries under values that changed are deleted.
func reindexAlert(txn *badger.Txn, old, cur *AlertSummary, exp uint64) error {
	tail := cur.tail()
	for _, f := range alertFields {
		if ov := old.value(f); ov != cur.value(f) {
			if err := txn.Delete(append(filterPrefix(f, ov), tail...)); err != nil {
				return err
			}
		}
	}
	for _, e := range alertEntries(cur, exp) {
		if err := txn.SetEntry(e); err != nil {
			return err
		}
	}
	return nil
}

// ensureAlertIndex rebuilds the alert indexes when the store was written
// by a version without them (or with an older layout): from every stored
// finding that is an alert (upgrading the old Details form) and its triage
// state. It runs once, at open, before the store serves.
func (s *Store) ensureAlertIndex() error {
	var have string
	if err := s.db.View(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyAlertIndexV))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil
		}
		if err != nil {
			return err
		}
		v, err := item.ValueCopy(nil)
		have = string(v)
		return err
	}); err != nil {
		return fmt.Errorf("store: read alert index version: %w", err)
	}
	if have == alertIndexLayout {
		return nil
	}
	t0 := time.Now()
	for _, p := range []string{pfxAlertIndex, pfxAlertFilter} {
		if err := s.db.DropPrefix([]byte(p)); err != nil {
			return fmt.Errorf("store: drop old alert index %s: %w", p, err)
		}
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, PrefetchSize: 100, Prefix: []byte(pfxFindingByDevice)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			f := &vigilv1.Finding{}
			if err := item.Value(func(v []byte) error { return s.decodeFinding(item.Key(), v, f) }); errors.Is(err, ErrDataKeyDestroyed) {
				continue
			} else if err != nil {
				s.log.Error("collector store: reindex alerts: skipping a finding that does not decode", "key", fmt.Sprintf("%q", item.Key()), "err", err)
				continue
			}
			UpgradeLegacyAlert(f)
			if !IsAlert(f) {
				continue
			}
			st := AlertState{Status: "new"}
			sitem, err := txn.Get(AlertStateKey(f.DeviceId, f.Seq))
			if err == nil {
				if err := sitem.Value(func(v []byte) error { return s.decodeState(sitem.Key(), v, &st) }); err != nil {
					return fmt.Errorf("alert state of %s/%d: %w", f.DeviceId, f.Seq, err)
				}
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			sum := summaryOf(f, st)
			for _, e := range alertEntries(&sum, item.ExpiresAt()) {
				if err := wb.SetEntry(e); err != nil {
					return err
				}
			}
			n++
		}
		return nil
	})
	if err == nil {
		err = wb.Set([]byte(keyAlertIndexV), []byte(alertIndexLayout))
	}
	if err == nil {
		err = wb.Flush()
	}
	if err != nil {
		return fmt.Errorf("store: rebuild alert index: %w", s.mapWriteErr(err))
	}
	s.log.Info("collector store: alert index rebuilt", "alerts", n, "took", time.Since(t0).Round(time.Millisecond))
	return nil
}

// AlertQuery selects alerts for QueryAlerts. Empty fields do not filter.
type AlertQuery struct {
	From, To time.Time // observed within [From, To]
	After    []byte    // a cursor from a previous page: continue with older alerts
	Status   string
	Category string
	Severity vigilv1.Severity
	Group    string // case-insensitive
	// Devices and Users: the alert's device (id) or person (matched by
	// personid.Canonical) is any of these. A non-nil empty slice matches
	// nothing (a name that resolved to nobody).
	Devices []string
	Users   []string
	// Visible, if set, is asked of each alert that passes the filters; only
	// alerts it accepts are returned (the viewer's routing).
	Visible func(*AlertSummary) bool
	Limit   int // default 50
}

// anyOfLimit: past this many values, an "any of" filter is checked on the
// summary instead of merging that many lists.
const anyOfLimit = 64

// probeMax: a list with fewer entries than this (from where the page
// starts) is walked alone, every other filter checked on its summaries;
// otherwise the lists are intersected by leapfrogging.
const probeMax = 256

// gallop: how many steps a list takes before a seek, which costs far more
// than a step (it repositions an iterator over every table).
const gallop = 16

// matcher holds a query's filters, checked on each summary: the lists only
// make finding candidates fast, this decides.
type matcher struct {
	q               AlertQuery
	group           string
	sev             string
	devSet, userSet map[string]bool
}

func (m *matcher) match(a *AlertSummary) bool {
	q := &m.q
	return (q.Status == "" || a.Status == q.Status) && (q.Category == "" || a.Category == q.Category) &&
		(q.Severity == 0 || a.Severity == q.Severity) && (m.group == "" || strings.ToLower(a.Group) == m.group) &&
		(m.devSet == nil || m.devSet[a.DeviceID]) && (m.userSet == nil || m.userSet[personid.Canonical(a.User)]) &&
		(q.Visible == nil || q.Visible(a))
}

// QueryAlerts returns one full page of alerts matching q, newest first, and
// the cursor of the next page (nil when no further alert matches). Only the
// alerts returned are read and decoded in full.
func (s *Store) QueryAlerts(ctx context.Context, q AlertQuery) ([]*Alert, []byte, error) {
	if q.Limit <= 0 {
		q.Limit = 50
	}
	if q.Devices != nil && len(q.Devices) == 0 || q.Users != nil && len(q.Users) == 0 {
		return nil, nil, nil
	}
	m := &matcher{q: q, group: strings.ToLower(q.Group)}
	set := func(vals []string, canon func(string) string) map[string]bool {
		if vals == nil {
			return nil
		}
		out := make(map[string]bool, len(vals))
		for _, v := range vals {
			out[canon(v)] = true
		}
		return out
	}
	m.devSet = set(q.Devices, func(s string) string { return s })
	m.userSet = set(q.Users, personid.Canonical)
	var page []*Alert
	var next []byte
	err := s.db.View(func(txn *badger.Txn) error {
		var lists []postings
		defer func() {
			for _, l := range lists {
				l.close()
			}
		}()
		single := func(field byte, v string) { lists = append(lists, newPrefixList(txn, filterPrefix(field, v))) }
		if q.Status != "" {
			single(fieldStatus, q.Status)
		}
		if q.Category != "" {
			single(fieldCategory, q.Category)
		}
		if q.Severity != 0 {
			single(fieldSeverity, strconv.Itoa(int(q.Severity)))
		}
		if m.group != "" {
			single(fieldGroup, m.group)
		}
		anyOf := func(field byte, set map[string]bool) {
			if set == nil || len(set) > anyOfLimit {
				return
			}
			u := &unionList{}
			for v := range set {
				u.parts = append(u.parts, newPrefixList(txn, filterPrefix(field, v)))
			}
			lists = append(lists, u)
		}
		anyOf(fieldDevice, m.devSet)
		anyOf(fieldUser, m.userSet)
		if len(lists) == 0 {
			lists = append(lists, newPrefixList(txn, []byte(pfxAlertIndex)))
		}
		var start []byte
		switch {
		case len(q.After) > 0:
			start = q.After
		case !q.To.IsZero():
			start = binary.BigEndian.AppendUint64(nil, uint64(q.To.UnixNano()))
			start = append(start, 0xff)
		default:
			start = []byte{0xff}
		}
		fromNS := int64(-1)
		if !q.From.IsZero() {
			fromNS = q.From.UnixNano()
		}
		walk := lists
		if len(lists) > 1 {
			// A short list is walked alone: fewer steps than the seeks
			// of an intersection.
			best, bestN := -1, probeMax
			for i, l := range lists {
				if n := l.probe(start, bestN); n < bestN {
					best, bestN = i, n
				}
				l.reset()
			}
			if best >= 0 {
				walk = lists[best : best+1]
			}
		}
		lead := walk[0]
		lead.seek(start)
		if len(q.After) > 0 && lead.valid() && bytes.Equal(lead.tail(), q.After) {
			lead.next()
		}
		checked := 0
		for {
			t, ok := leapfrog(walk)
			if !ok {
				return nil
			}
			sum, err := decodeSummary(t, lead.value())
			if err != nil {
				return fmt.Errorf("store: alert index entry %x: %w", t, err)
			}
			if sum.Observed.UnixNano() < fromNS {
				return nil
			}
			if checked++; checked%256 == 0 && ctx.Err() != nil {
				return ctx.Err()
			}
			if m.match(&sum) {
				if len(page) == q.Limit {
					// One more matches: the page is full and there is more.
					next = page[len(page)-1].Cursor
					return nil
				}
				a, err := s.loadAlert(txn, sum.DeviceID, sum.Seq)
				if errors.Is(err, ErrNotFound) {
					lead.next()
					continue // expired between the keys
				}
				if err != nil {
					return err
				}
				a.Cursor = append([]byte(nil), t...)
				page = append(page, a)
			}
			lead.next()
		}
	})
	return page, next, err
}

// leapfrog advances the lists until all stand on the same tail (returned)
// or one runs out. The lead list (lists[0]) is where it resumes from.
func leapfrog(lists []postings) ([]byte, bool) {
	if !lists[0].valid() {
		return nil, false
	}
	t := append([]byte(nil), lists[0].tail()...)
	agree := 1
	for i := 1; agree < len(lists); i++ {
		l := lists[i%len(lists)]
		l.seek(t)
		if !l.valid() {
			return nil, false
		}
		if lt := l.tail(); bytes.Equal(lt, t) {
			agree++
		} else {
			t = append(t[:0], lt...)
			agree = 1
		}
	}
	return t, true
}

// postings is one sorted list of alert tails, walked newest first. Seek
// targets only ever decrease while walking (reset starts over).
type postings interface {
	seek(t []byte) // to the newest entry at or older than t
	valid() bool
	tail() []byte
	value() []byte
	next()
	// probe counts the entries at or older than t, stopping at max.
	probe(t []byte, max int) int
	reset() // forget the position: the next seek seeks
	close()
}

type prefixList struct {
	it         *badger.Iterator
	prefix     []byte
	key        []byte
	positioned bool
}

func newPrefixList(txn *badger.Txn, prefix []byte) *prefixList {
	return &prefixList{it: txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix, PrefetchValues: false}), prefix: prefix}
}

func (p *prefixList) seek(t []byte) {
	if p.positioned {
		// Targets decrease: an entry already at or older than t is the
		// newest such, and one a few steps away is reached by stepping.
		for i := 0; i < gallop; i++ {
			if !p.valid() || bytes.Compare(p.tail(), t) <= 0 {
				return
			}
			p.it.Next()
		}
	}
	p.key = append(append(p.key[:0], p.prefix...), t...)
	p.it.Seek(p.key)
	p.positioned = true
}
func (p *prefixList) valid() bool { return p.it.ValidForPrefix(p.prefix) }
func (p *prefixList) tail() []byte {
	return p.it.Item().Key()[len(p.prefix):]
}
func (p *prefixList) value() []byte {
	var out []byte
	if err := p.it.Item().Value(func(v []byte) error { out = v; return nil }); err != nil {
		return nil
	}
	return out
}
func (p *prefixList) next() { p.it.Next() }
func (p *prefixList) probe(t []byte, max int) int {
	p.seek(t)
	n := 0
	for ; n < max && p.valid(); n++ {
		p.it.Next()
	}
	return n
}
func (p *prefixList) reset() { p.positioned = false }
func (p *prefixList) close() { p.it.Close() }

// unionList merges lists (one per value of an "any of" filter).
type unionList struct {
	parts []postings
	cur   postings
}

func (u *unionList) pick() {
	u.cur = nil
	for _, p := range u.parts {
		if p.valid() && (u.cur == nil || bytes.Compare(p.tail(), u.cur.tail()) > 0) {
			u.cur = p
		}
	}
}
func (u *unionList) seek(t []byte) {
	for _, p := range u.parts {
		p.seek(t)
	}
	u.pick()
}
func (u *unionList) valid() bool   { return u.cur != nil }
func (u *unionList) tail() []byte  { return u.cur.tail() }
func (u *unionList) value() []byte { return u.cur.value() }
func (u *unionList) next() {
	t := append([]byte(nil), u.cur.tail()...)
	for _, p := range u.parts {
		if p.valid() && bytes.Equal(p.tail(), t) {
			p.next()
		}
	}
	u.pick()
}
func (u *unionList) probe(t []byte, max int) int {
	n := 0
	for _, p := range u.parts {
		if n += p.probe(t, max-n); n >= max {
			break
		}
	}
	return n
}
func (u *unionList) reset() {
	for _, p := range u.parts {
		p.reset()
	}
	u.cur = nil
}
func (u *unionList) close() {
	for _, p := range u.parts {
		p.close()
	}
}

// Alert fields whose distinct values AlertValues lists.
const (
	AlertFieldCategory = "category"
	AlertFieldUser     = "person"
	AlertFieldGroup    = "group"
)

// AlertValues lists the distinct values an indexed field has among the
// stored alerts (categories that alerts actually have, people alerts are
// about), sorted. It costs one seek per distinct value.
func (s *Store) AlertValues(field string) ([]string, error) {
	var f byte
	switch field {
	case AlertFieldCategory:
		f = fieldCategory
	case AlertFieldUser:
		f = fieldUser
	case AlertFieldGroup:
		f = fieldGroup
	default:
		return nil, fmt.Errorf("store: alert field %q is not indexed", field)
	}
	pfx := append([]byte(pfxAlertFilter), f)
	var out []string
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: pfx})
		defer it.Close()
		for it.Seek(pfx); it.ValidForPrefix(pfx); {
			k := it.Item().Key()[len(pfx):]
			if len(k) < 2 {
				it.Next()
				continue
			}
			n := int(binary.BigEndian.Uint16(k))
			if len(k) < 2+n {
				it.Next()
				continue
			}
			v := string(k[2 : 2+n])
			out = append(out, v)
			it.Seek(append(filterPrefix(f, v), 0xff))
		}
		return nil
	})
	slices.Sort(out)
	return out, err
}

// AlertRef names one alert.
type AlertRef struct {
	DeviceID string
	Seq      uint64
}

// AlertFeed delivers the alerts the store commits, in commit order, from
// the moment SubscribeAlerts returns: what the notifier follows, instead
// of watching the database's keys.
type AlertFeed struct {
	s       *Store
	mu      sync.Mutex
	pending []AlertRef
	ready   chan struct{}
}

// SubscribeAlerts starts a feed; it is registered when this returns.
func (s *Store) SubscribeAlerts() *AlertFeed {
	f := &AlertFeed{s: s, ready: make(chan struct{}, 1)}
	s.feedMu.Lock()
	s.feeds = append(s.feeds, f)
	s.feedMu.Unlock()
	return f
}

// Ready is signalled when Take has something.
func (f *AlertFeed) Ready() <-chan struct{} { return f.ready }

// Take returns and clears what arrived since the last Take.
func (f *AlertFeed) Take() []AlertRef {
	f.mu.Lock()
	defer f.mu.Unlock()
	p := f.pending
	f.pending = nil
	return p
}

// Close ends the feed.
func (f *AlertFeed) Close() {
	f.s.feedMu.Lock()
	defer f.s.feedMu.Unlock()
	f.s.feeds = slices.DeleteFunc(f.s.feeds, func(x *AlertFeed) bool { return x == f })
}

// publishAlerts hands committed alerts to every feed.
func (s *Store) publishAlerts(refs []AlertRef) {
	if len(refs) == 0 {
		return
	}
	s.feedMu.Lock()
	defer s.feedMu.Unlock()
	for _, f := range s.feeds {
		f.mu.Lock()
		f.pending = append(f.pending, refs...)
		f.mu.Unlock()
		select {
		case f.ready <- struct{}{}:
		default:
		}
	}
}

// Import writes findings (without evidence) and alert triage states in
// bulk with the layout commitGroup and UpdateAlertState use, indexes
// included: for tools and benchmarks that fill a store with a million
// findings in seconds. It does not skip findings already stored and is
// durable only once it returns; the collector's ingest uses Commit.
func (s *Store) Import(findings []*vigilv1.Finding, states map[AlertRef]AlertState) error {
	if err := s.writeAllowed(true); err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, f := range findings {
		UpgradeLegacyAlert(f)
		f.EvidenceData = nil
		v, err := proto.Marshal(f)
		if err != nil {
			return fmt.Errorf("store: import: encode finding %s/%d: %w", f.DeviceId, f.Seq, err)
		}
		exp := expiryOf(s.retentionOf(f.DeviceId, f.Category))
		fk := findingKey(f.DeviceId, f.Seq)
		if v, err = s.sealFor(f.DeviceId, fk, v); err != nil {
			return fmt.Errorf("store: import: seal finding %s/%d: %w", f.DeviceId, f.Seq, err)
		}
		es := []*badger.Entry{badger.NewEntry(fk, v), badger.NewEntry(timeKey(f), nil)}
		if IsAlert(f) {
			st, ok := states[AlertRef{f.DeviceId, f.Seq}]
			if ok {
				sk := AlertStateKey(f.DeviceId, f.Seq)
				sv, _ := json.Marshal(st)
				if sv, err = s.sealFor(f.DeviceId, sk, sv); err != nil {
					return fmt.Errorf("store: import: seal alert state %s/%d: %w", f.DeviceId, f.Seq, err)
				}
				es = append(es, badger.NewEntry(sk, sv))
			}
			sum := summaryOf(f, st)
			es = append(es, alertEntries(&sum, exp)...)
		}
		for _, e := range es {
			e.ExpiresAt = exp
			if err := wb.SetEntry(e); err != nil {
				return fmt.Errorf("store: import: %w", s.mapWriteErr(err))
			}
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store: import: %w", s.mapWriteErr(err))
	}
	return nil
}
