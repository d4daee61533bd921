package audit

import (
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Chain is an audit's entries with its head: what `audit export` writes
// and VerifyChain checks, with or without the collector.
type Chain struct {
	Entries []store.AuditEntry `json:"entries"`
	Head    store.AuditHead    `json:"head"`
}

// VerifyChain checks every link: each entry's hash over its content and
// the previous hash, seqs in order, the header first, one entry per device
// in scope at most, and the head naming the last entry.
func VerifyChain(c Chain) error {
	if len(c.Entries) == 0 {
		return errors.New("audit has no entries")
	}
	if c.Entries[0].Kind != store.AuditHeaderEntry || c.Entries[0].Prev != "" {
		return errors.New("entry 0 is not the audit's header")
	}
	var h Header
	if err := json.Unmarshal(c.Entries[0].Body, &h); err != nil {
		return fmt.Errorf("header does not decode: %w", err)
	}
	inScope := map[string]bool{}
	for _, d := range h.Devices {
		inScope[d.DeviceID] = true
	}
	seen := map[string]bool{}
	prev := ""
	for i, e := range c.Entries {
		if e.Seq != i {
			return fmt.Errorf("entry %d has seq %d (an entry was removed or reordered)", i, e.Seq)
		}
		if e.Prev != prev {
			return fmt.Errorf("entry %d does not link to entry %d", i, i-1)
		}
		if got := store.AuditEntryHash(e); got != e.Hash {
			return fmt.Errorf("entry %d (%s %s) was changed: its content hashes to %s, recorded %s", i, e.Kind, e.Device, got[:12], short(e.Hash))
		}
		switch e.Kind {
		case store.AuditAnswerEntry, store.AuditNoAnswerEntry:
			if !inScope[e.Device] || seen[e.Device] {
				return fmt.Errorf("entry %d: device %s is not in scope or answered twice", i, e.Device)
			}
			seen[e.Device] = true
		case store.AuditSignoffEntry:
		case store.AuditHeaderEntry:
			if i != 0 {
				return fmt.Errorf("entry %d: a second header", i)
			}
		default:
			return fmt.Errorf("entry %d: unknown kind %q", i, e.Kind)
		}
		prev = e.Hash
	}
	last := c.Entries[len(c.Entries)-1]
	if c.Head.Seq != last.Seq || c.Head.Hash != last.Hash {
		return fmt.Errorf("the head names entry %d (%s) but the chain ends at entry %d (%s): entries were removed", c.Head.Seq, short(c.Head.Hash), last.Seq, short(last.Hash))
	}
	return nil
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// chain returns an audit's chain as stored, if r may see the audit's
// school: every read of an audit passes here, so an audit of another
// school answers exactly as one that does not exist (store.ErrNotFound).
// Entry points read it through ExportChain (logged) or CheckChain (the
// head hash only).
func (s *Service) chain(id string, r Reader) (Chain, error) {
	s.init()
	entries, head, err := s.Store.AuditChain(id)
	if err != nil {
		return Chain{}, err
	}
	c := Chain{Entries: entries, Head: head}
	var h Header
	if len(entries) > 0 {
		// A header that does not decode names no school: the default's,
		// like every record that names none; build reports it.
		json.Unmarshal(entries[0].Body, &h)
	}
	s.mu.Lock()
	s.schools[id] = h.School
	s.mu.Unlock()
	if !r.sees(h.School) {
		return Chain{}, fmt.Errorf("audit %s: %w", id, store.ErrNotFound)
	}
	return c, nil
}

// visible answers chain's question from what is known of audit id's
// school, reading its chain only the first time.
func (s *Service) visible(id string, r Reader) error {
	s.init()
	s.mu.Lock()
	school, known := s.schools[id]
	s.mu.Unlock()
	if !known {
		_, err := s.chain(id, r)
		return err
	}
	if !r.sees(school) {
		return fmt.Errorf("audit %s: %w", id, store.ErrNotFound)
	}
	return nil
}

// Verify checks the stored chain of an audit.
func (s *Service) Verify(id string, r Reader) error {
	c, err := s.chain(id, r)
	if err != nil {
		return err
	}
	return VerifyChain(c)
}

// Progress is how far an audit is.
type Progress struct {
	Total      int  `json:"total"`
	Answered   int  `json:"answered"`
	NoAnswer   int  `json:"no_answer"`
	NotReached int  `json:"not_reached"`
	Queued     int  `json:"queued"`
	Offline    int  `json:"offline"` // queued and not connected now
	Done       bool `json:"done"`
	// ExpiresAt is when queued devices stop being asked.
	ExpiresAt time.Time `json:"expires_at"`
}

// DeviceResult is one device's part of the record.
type DeviceResult struct {
	DeviceInfo
	// Status: answered, no-answer, queued.
	Status     string          `json:"status"`
	AnsweredAt time.Time       `json:"answered_at,omitzero"`
	Inventory  json.RawMessage `json:"inventory,omitempty"`
	NoAnswer   *NoAnswer       `json:"no_answer,omitempty"`
}

// SignoffRecord is a sign-off as recorded.
type SignoffRecord struct {
	Signoff
	At   time.Time `json:"at"`
	Hash string    `json:"hash"`
}

// Record is an audit as `audit show` and the console present it.
type Record struct {
	Header
	// Hash is the chain's head hash: it covers everything above it and
	// every sign-off.
	Hash        string          `json:"hash"`
	Verified    bool            `json:"verified"`
	VerifyError string          `json:"verify_error,omitempty"`
	Progress    Progress        `json:"progress"`
	Results     []DeviceResult  `json:"results"`
	Signoffs    []SignoffRecord `json:"signoffs"`
	Diff        *Diff           `json:"diff,omitempty"`
}

// readRecord reads an audit back: verified, with progress and the
// differences from the previous audit of the same scope. Entry points read
// it through View or Export, which log the read.
func (s *Service) readRecord(id string, rd Reader) (Record, error) {
	s.init()
	c, err := s.chain(id, rd)
	if err != nil {
		return Record{}, err
	}
	r, err := s.build(c)
	if err != nil {
		return Record{}, err
	}
	if r.Previous != "" {
		if pc, err := s.chain(r.Previous, rd); err == nil {
			if pr, err := s.build(pc); err == nil {
				r.Diff = Compare(pr, r)
			}
		}
	}
	return r, nil
}

func (s *Service) build(c Chain) (Record, error) {
	var r Record
	if len(c.Entries) == 0 {
		return r, errors.New("audit has no entries")
	}
	if err := json.Unmarshal(c.Entries[0].Body, &r.Header); err != nil {
		return r, fmt.Errorf("audit header: %w", err)
	}
	r.Hash = c.Head.Hash
	if err := VerifyChain(c); err != nil {
		r.VerifyError = err.Error()
	} else {
		r.Verified = true
	}
	byDev := map[string]store.AuditEntry{}
	for _, e := range c.Entries[1:] {
		switch e.Kind {
		case store.AuditAnswerEntry, store.AuditNoAnswerEntry:
			byDev[e.Device] = e
		case store.AuditSignoffEntry:
			var so Signoff
			json.Unmarshal(e.Body, &so)
			r.Signoffs = append(r.Signoffs, SignoffRecord{Signoff: so, At: e.At, Hash: e.Hash})
		}
	}
	p := Progress{Total: len(r.Devices), ExpiresAt: r.ExpiresAt}
	for _, d := range r.Devices {
		dr := DeviceResult{DeviceInfo: d, Status: "queued"}
		if e, ok := byDev[d.DeviceID]; ok {
			dr.AnsweredAt = e.At
			if e.Kind == store.AuditAnswerEntry {
				dr.Status, dr.Inventory = "answered", e.Body
				p.Answered++
			} else {
				dr.Status = "no-answer"
				var na NoAnswer
				json.Unmarshal(e.Body, &na)
				dr.NoAnswer = &na
				p.NoAnswer++
				if na.Reason == NotReached {
					p.NotReached++
				}
			}
		} else {
			p.Queued++
			if s.Agents == nil || !s.Agents.Connected(d.DeviceID) {
				p.Offline++
			}
		}
		r.Results = append(r.Results, dr)
	}
	p.Done = p.Queued == 0
	r.Progress = p
	return r, nil
}

// Progress reads how far an audit is: from memory once the audit was read
// (the appender keeps it current), so polling it is cheap.
func (s *Service) Progress(id string, r Reader) (Progress, error) {
	s.init()
	if err := s.visible(id, r); err != nil {
		return Progress{}, err
	}
	s.mu.Lock()
	st := s.progress[id]
	s.mu.Unlock()
	if st == nil {
		// Read the chain under the lock: an entry the appender writes
		// meanwhile is either in what is read or noted after (note ignores
		// repeats), never lost.
		s.mu.Lock()
		st = s.progress[id]
		if st == nil {
			entries, head, err := s.Store.AuditChain(id)
			c := Chain{Entries: entries, Head: head}
			if err != nil {
				s.mu.Unlock()
				return Progress{}, err
			}
			var h Header
			if len(c.Entries) == 0 || json.Unmarshal(c.Entries[0].Body, &h) != nil {
				s.mu.Unlock()
				return Progress{}, errors.New("audit header does not decode")
			}
			st = &progressState{expires: h.ExpiresAt, recorded: map[string]bool{}}
			for _, d := range h.Devices {
				st.devices = append(st.devices, d.DeviceID)
			}
			for _, e := range c.Entries[1:] {
				st.note(e.Kind, e.Device, e.Body)
			}
			s.progress[id] = st
		}
		s.mu.Unlock()
	}
	s.mu.Lock()
	p := Progress{Total: len(st.devices), Answered: st.answered, NoAnswer: st.noAnswer, NotReached: st.notReached, ExpiresAt: st.expires}
	var queued []string
	for _, d := range st.devices {
		if !st.recorded[d] {
			queued = append(queued, d)
		}
	}
	s.mu.Unlock()
	p.Queued = len(queued)
	for _, d := range queued {
		if s.Agents == nil || !s.Agents.Connected(d) {
			p.Offline++
		}
	}
	p.Done = p.Queued == 0
	return p, nil
}

// Summary is one line of `audit list`.
type Summary struct {
	ID          string    `json:"id"`
	School      string    `json:"school,omitempty"`
	Scope       Scope     `json:"scope"`
	RequestedBy string    `json:"requested_by"`
	Reason      string    `json:"reason"`
	RequestedAt time.Time `json:"requested_at"`
	Devices     int       `json:"devices"`
}

// List returns every audit r may see, newest first.
func (s *Service) List(r Reader) ([]Summary, error) {
	hs, err := s.Store.AuditHeaders()
	if err != nil {
		return nil, err
	}
	out := make([]Summary, 0, len(hs))
	for _, e := range hs {
		var h Header
		if err := json.Unmarshal(e.Body, &h); err != nil {
			return nil, fmt.Errorf("audit header: %w", err)
		}
		if !r.sees(h.School) {
			continue
		}
		out = append(out, Summary{ID: h.ID, School: h.School, Scope: h.Scope, RequestedBy: h.RequestedBy, Reason: h.Reason, RequestedAt: h.RequestedAt, Devices: len(h.Devices)})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].RequestedAt.After(out[j].RequestedAt) })
	return out, nil
}
