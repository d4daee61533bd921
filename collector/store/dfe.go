package store

// The records behind the DfE filtering and monitoring evidence pack (issue
// 11): the roles register, the annual reviews, the fleet-wide end-to-end
// checks and the history of the rules bundles. Key layout (docs/storage.md):
//
//	dfe/roles                     -> DFERoles (JSON), the register as it stands
//	dfe/rh/<at ns:8><seq:4>       -> DFERoles (JSON), every version, append-only
//	dfe/rev/<at ns:8><id>         -> DFEReview (JSON), append-only
//	dfe/chk/<id>                  -> FleetCheck (JSON), rewritten while it runs
//	rh/<at ns:8><group>           -> RulesChange (JSON), append-only
//
// The decision log is not stored here: it is read from the records each
// decision already writes (rules changes, exclusions, school terms, the
// access log), so it cannot disagree with them.

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"sort"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

const (
	keyDFERoles       = "dfe/roles"
	pfxDFERolesHist   = "dfe/rh/"
	pfxDFEReview      = "dfe/rev/"
	pfxFleetCheck     = "dfe/chk/"
	pfxRulesChange    = "rh/"
	maxDFEFieldLength = 4000
)

// The roles the DfE standards ask a school to name.
const (
	DFESeniorLeader = "senior_leader"
	DFEGovernor     = "governor"
	DFEDSL          = "dsl"
	DFEITProvider   = "it_provider"
)

// DFERoleKeys lists the roles in the order the pack prints them.
var DFERoleKeys = []string{DFESeniorLeader, DFEGovernor, DFEDSL, DFEITProvider}

// DFERoleLabels names them as the standards do.
var DFERoleLabels = map[string]string{
	DFESeniorLeader: "Senior leadership team member responsible",
	DFEGovernor:     "Governor responsible",
	DFEDSL:          "Designated safeguarding lead",
	DFEITProvider:   "IT service provider",
}

// RoleHolder is who holds one role.
type RoleHolder struct {
	Role string `json:"role"`
	Name string `json:"name"`
	// Contact: an e-mail, a phone number, or the IT provider's company.
	Contact string    `json:"contact,omitempty"`
	Since   time.Time `json:"since,omitzero"`
}

// DFERoles is the roles register.
type DFERoles struct {
	Holders   []RoleHolder `json:"holders"`
	UpdatedBy string       `json:"updated_by"`
	UpdatedAt time.Time    `json:"updated_at"`
}

// Holder returns the holder of role (zero when nobody is named).
func (r DFERoles) Holder(role string) RoleHolder {
	for _, h := range r.Holders {
		if h.Role == role {
			return h
		}
	}
	return RoleHolder{Role: role}
}

// PutDFERoles replaces the register and keeps the previous version in its
// history, in one transaction.
func (s *Store) PutDFERoles(r DFERoles) error {
	for _, h := range r.Holders {
		if len(h.Name) > maxDFEFieldLength || len(h.Contact) > maxDFEFieldLength {
			return fmt.Errorf("store: roles register: %s too long", h.Role)
		}
	}
	v, _ := json.Marshal(r)
	k := binary.BigEndian.AppendUint64([]byte(pfxDFERolesHist), uint64(r.UpdatedAt.UnixNano()))
	k = binary.BigEndian.AppendUint32(k, uint32(s.nextAccessSeq()))
	return s.update(func(txn *badger.Txn) error {
		if err := txn.Set([]byte(keyDFERoles), v); err != nil {
			return err
		}
		return txn.Set(k, v)
	})
}

// GetDFERoles reads the register (empty when never set).
func (s *Store) GetDFERoles() (DFERoles, error) {
	var r DFERoles
	err := getJSON(s.db, []byte(keyDFERoles), &r)
	if errors.Is(err, ErrNotFound) {
		return DFERoles{}, nil
	}
	return r, err
}

// DFERolesHistory lists every version of the register, oldest first.
func (s *Store) DFERolesHistory() ([]DFERoles, error) {
	var out []DFERoles
	err := scanJSON(s.db, pfxDFERolesHist, func(_, v []byte) error {
		var r DFERoles
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	return out, err
}

// DFEReview is the record of one review of filtering and monitoring
// provision (the standards ask for one at least every academic year).
type DFEReview struct {
	ID         string    `json:"id"`
	Date       time.Time `json:"date"`
	Attendees  []string  `json:"attendees"`
	Findings   string    `json:"findings"`
	Actions    []string  `json:"actions"`
	NextReview time.Time `json:"next_review"`
	RecordedBy string    `json:"recorded_by"`
	RecordedAt time.Time `json:"recorded_at"`
}

// AddDFEReview appends a review record; records are never changed (a
// correction is a new record).
func (s *Store) AddDFEReview(r DFEReview) error {
	if err := validSegment("review id", r.ID); err != nil {
		return err
	}
	if len(r.Findings) > 20000 {
		return errors.New("store: review findings longer than 20000 characters")
	}
	v, _ := json.Marshal(r)
	k := append(binary.BigEndian.AppendUint64([]byte(pfxDFEReview), uint64(r.RecordedAt.UnixNano())), r.ID...)
	return s.update(func(txn *badger.Txn) error { return txn.Set(k, v) })
}

// DFEReviews lists the reviews by review date, oldest first.
func (s *Store) DFEReviews() ([]DFEReview, error) {
	var out []DFEReview
	err := scanJSON(s.db, pfxDFEReview, func(_, v []byte) error {
		var r DFEReview
		if err := json.Unmarshal(v, &r); err != nil {
			return err
		}
		out = append(out, r)
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].Date.Before(out[j].Date) })
	return out, err
}

// FleetCheck is one fleet-wide end-to-end check: a selftest requested of
// every device and, per device, whether its findings came back through the
// real path.
type FleetCheck struct {
	ID          string             `json:"id"`
	RequestedBy string             `json:"requested_by"`
	Reason      string             `json:"reason,omitempty"`
	RequestedAt time.Time          `json:"requested_at"`
	CompletedAt time.Time          `json:"completed_at,omitzero"`
	Devices     []FleetCheckDevice `json:"devices"`
}

// FleetCheckDevice is one device's part of a fleet check.
type FleetCheckDevice struct {
	DeviceID string `json:"device_id"`
	Hostname string `json:"hostname,omitempty"`
	Group    string `json:"group,omitempty"`
	// Outcome: pending, working, session_helper_missing, not_connected,
	// no_answer, not_received (collector/fleetcheck).
	Outcome string `json:"outcome"`
	Detail  string `json:"detail,omitempty"`
	Nonce   string `json:"nonce,omitempty"`
	// ProvedAt: when this check's selftest finding reached the store.
	ProvedAt time.Time `json:"proved_at,omitzero"`
	// LastProved: the newest selftest finding of the device stored by the
	// time of the check (this one's or an earlier, scheduled one).
	LastProved time.Time `json:"last_proved,omitzero"`
}

// PutFleetCheck writes a fleet check (created, then updated as answers
// arrive and when it completes).
func (s *Store) PutFleetCheck(c FleetCheck) error {
	if err := validSegment("fleet check id", c.ID); err != nil {
		return err
	}
	v, _ := json.Marshal(c)
	return s.update(func(txn *badger.Txn) error { return txn.Set([]byte(pfxFleetCheck+c.ID), v) })
}

// GetFleetCheck reads one; ErrNotFound if there is none.
func (s *Store) GetFleetCheck(id string) (FleetCheck, error) {
	var c FleetCheck
	err := getJSON(s.db, []byte(pfxFleetCheck+id), &c)
	return c, err
}

// FleetChecks lists every fleet check, oldest first.
func (s *Store) FleetChecks() ([]FleetCheck, error) {
	var out []FleetCheck
	err := scanJSON(s.db, pfxFleetCheck, func(_, v []byte) error {
		var c FleetCheck
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	sort.SliceStable(out, func(i, j int) bool { return out[i].RequestedAt.Before(out[j].RequestedAt) })
	return out, err
}

// RulesChange is one change of a group's rules bundle as the collector
// distributed it: which files were added, removed or changed.
type RulesChange struct {
	At    time.Time `json:"at"`
	Group string    `json:"group"`
	// School is the school whose bundle of the group changed ("" is the
	// default school's: bundles differ by school once a school has its own
	// rules overrides, terms or exclusions).
	School string `json:"school,omitempty"`
	Hash   string `json:"hash"`
	// PrevHash is empty for the first bundle the collector recorded.
	PrevHash string `json:"prev_hash,omitempty"`
	// Files maps every file of the bundle to the SHA-256 of its content,
	// so the next change can be told file by file.
	Files   map[string]string `json:"files"`
	Added   []string          `json:"added,omitempty"`
	Removed []string          `json:"removed,omitempty"`
	Changed []string          `json:"changed,omitempty"`
}

// RecordRulesChange appends a change to the rules history.
func (s *Store) RecordRulesChange(c RulesChange) error {
	if err := validSegment("rules group", c.Group); err != nil {
		return err
	}
	v, _ := json.Marshal(c)
	k := append(binary.BigEndian.AppendUint64([]byte(pfxRulesChange), uint64(c.At.UnixNano())), c.Group...)
	if c.School != "" && c.School != DefaultSchool {
		k = append(append(k, '@'), c.School...)
	}
	return s.update(func(txn *badger.Txn) error { return txn.Set(k, v) })
}

// RulesChanges lists the rules history, oldest first.
func (s *Store) RulesChanges() ([]RulesChange, error) {
	var out []RulesChange
	err := scanJSON(s.db, pfxRulesChange, func(_, v []byte) error {
		var c RulesChange
		if err := json.Unmarshal(v, &c); err != nil {
			return err
		}
		out = append(out, c)
		return nil
	})
	return out, err
}

// RulesBundleKey names a school's bundle of a group in LastRulesChanges:
// the group for the default school (as before schools existed), else
// "<school>/<group>".
func RulesBundleKey(school, group string) string {
	if SchoolOf(school) == DefaultSchool {
		return group
	}
	return school + "/" + group
}

// LastRulesChanges is the latest recorded change of each school's bundle
// of each group, by RulesBundleKey.
func (s *Store) LastRulesChanges() (map[string]RulesChange, error) {
	all, err := s.RulesChanges()
	if err != nil {
		return nil, err
	}
	out := map[string]RulesChange{}
	for _, c := range all {
		out[RulesBundleKey(c.School, c.Group)] = c
	}
	return out, nil
}
