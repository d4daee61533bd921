package store

// The console's records: accounts, sessions, the people directory, the alert
// index and each alert's triage state, proposed exclusions and notification
// bookkeeping. Key layout (docs/storage.md):
//
//	u/<username>                          -> User (JSON)
//	s/<sha256 hex of session token>       -> Session (JSON), TTL = idle expiry
//	p/<username>                          -> Person (JSON)
//	ai/<observed ns:8><device:26><seq:8>  -> AlertSummary; one per alert (alertindex.go, with ax/)
//	at/<device:26><seq:8>                 -> AlertState (JSON), history append-only
//	x/<exclusion id>                      -> Exclusion (JSON)
//	an/<device:26><seq:8>                 -> NotifyState (JSON)

import (
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	"github.com/vigil-safeguarding/vigil/collector/triage"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

const (
	pfxUser       = "u/"
	pfxSession    = "s/"
	pfxPerson     = "p/"
	pfxAlertIndex = "ai/"
	pfxAlertState = "at/"
	pfxExclusion  = "x/"
	pfxNotify     = "an/"
)

// ErrExists is returned when creating a record that is already there.
var ErrExists = errors.New("store: already exists")

// User is a console account.
type User struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Role        string `json:"role"`
	Email       string `json:"email,omitempty"`
	Chair       bool   `json:"chair,omitempty"`
	// School is the school whose data the account sees ("" is
	// DefaultSchool). Admin accounts administer the installation.
	School string `json:"school,omitempty"`
	// Granted are further schools a DSL account sees (a trust safeguarding
	// lead); each grant and its removal is in the access log.
	Granted      []string  `json:"granted_schools,omitempty"`
	PasswordHash []byte    `json:"password_hash"`
	TOTPSecret   string    `json:"totp_secret,omitempty"`
	Created      time.Time `json:"created"`
	Disabled     bool      `json:"disabled,omitempty"`
	// MustChangePassword: the password was set by someone else (the first
	// start, or an admin's reset); the account may do nothing but change it.
	MustChangePassword bool `json:"must_change_password,omitempty"`
	// InitialAdmin marks the account whose password the first start wrote
	// to DATA/initial-admin-password; the file goes when it is changed.
	InitialAdmin bool      `json:"initial_admin,omitempty"`
	LastSignIn   time.Time `json:"last_sign_in,omitzero"`
	// DisabledBy and DisabledAt say who disabled the account, and when.
	DisabledBy string    `json:"disabled_by,omitempty"`
	DisabledAt time.Time `json:"disabled_at,omitzero"`
	// PasswordChanged is when the password was last set.
	PasswordChanged time.Time `json:"password_changed,omitzero"`
}

// CreateUser stores a new account; ErrExists if the username is taken.
func (s *Store) CreateUser(u User) error {
	v, _ := json.Marshal(u)
	return s.retryUpdate(func(txn *badger.Txn) error {
		key := []byte(pfxUser + u.Username)
		if _, err := txn.Get(key); err == nil {
			return ErrExists
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		return txn.Set(key, v)
	})
}

// PutUser writes (replaces) an account.
func (s *Store) PutUser(u User) error {
	v, _ := json.Marshal(u)
	return s.update(func(txn *badger.Txn) error { return txn.Set([]byte(pfxUser+u.Username), v) })
}

// GetUser reads an account; ErrNotFound if there is none.
func (s *Store) GetUser(username string) (User, error) {
	var u User
	err := getJSON(s.db, []byte(pfxUser+username), &u)
	return u, err
}

// UpdateUser changes one account atomically: fn gets the stored record and
// may change it (not its username) or return an error to abort.
func (s *Store) UpdateUser(username string, fn func(*User) error) (User, error) {
	var u User
	err := s.retryUpdate(func(txn *badger.Txn) error {
		u = User{}
		key := []byte(pfxUser + username)
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &u) }); err != nil {
			return fmt.Errorf("decode account %s: %w", username, err)
		}
		if err := fn(&u); err != nil {
			return err
		}
		if u.Username != username {
			return errors.New("store: an account's username cannot change")
		}
		v, _ := json.Marshal(u)
		return txn.Set(key, v)
	})
	return u, err
}

// Users lists all accounts, ordered by username.
func (s *Store) Users() ([]User, error) {
	var out []User
	err := scanJSON(s.db, pfxUser, func(_ []byte, v []byte) error {
		var u User
		if err := json.Unmarshal(v, &u); err != nil {
			return err
		}
		out = append(out, u)
		return nil
	})
	return out, err
}

// Session is a signed-in console session, keyed by the token's hash.
type Session struct {
	Username string    `json:"username"`
	CSRF     string    `json:"csrf"`
	Created  time.Time `json:"created"`
	Touched  time.Time `json:"touched"`
}

// PutSession writes a session that expires after idle unless touched again.
func (s *Store) PutSession(hash string, sess Session, idle time.Duration) error {
	v, _ := json.Marshal(sess)
	return s.update(func(txn *badger.Txn) error {
		return txn.SetEntry(badger.NewEntry([]byte(pfxSession+hash), v).WithTTL(idle))
	})
}

// GetSession reads a live session; ErrNotFound if unknown or expired.
func (s *Store) GetSession(hash string) (Session, error) {
	var sess Session
	err := getJSON(s.db, []byte(pfxSession+hash), &sess)
	return sess, err
}

// DeleteSession ends a session.
func (s *Store) DeleteSession(hash string) error {
	return s.update(func(txn *badger.Txn) error { return txn.Delete([]byte(pfxSession + hash)) })
}

// DeleteUserSessions ends every session of an account (disabled, or its
// password reset) but the one whose hash is keep (may be empty), and
// returns how many it ended. Sessions are few (one
// per signed-in browser), so a scan of s/ is enough.
func (s *Store) DeleteUserSessions(username, keep string) (int, error) {
	var keys [][]byte
	err := scanJSON(s.db, pfxSession, func(k, v []byte) error {
		var sess Session
		if json.Unmarshal(v, &sess) == nil && sess.Username == username && string(k[len(pfxSession):]) != keep {
			keys = append(keys, k)
		}
		return nil
	})
	if err != nil || len(keys) == 0 {
		return 0, err
	}
	return len(keys), s.update(func(txn *badger.Txn) error {
		for _, k := range keys {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return nil
	})
}

// Person maps a device account to someone in the school's MIS.
type Person struct {
	Username    string `json:"username"`
	DisplayName string `json:"display_name"`
	Role        string `json:"role"` // pupil, staff, headteacher
	Year        string `json:"year,omitempty"`
}

// PutPeople writes people records (replacing those with the same username).
func (s *Store) PutPeople(people []Person) error {
	if err := s.writeAllowed(false); err != nil {
		return err
	}
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	for _, p := range people {
		v, _ := json.Marshal(p)
		if err := wb.Set([]byte(pfxPerson+p.Username), v); err != nil {
			return fmt.Errorf("store: put people: %w", err)
		}
	}
	if err := wb.Flush(); err != nil {
		return fmt.Errorf("store: put people: %w", s.mapWriteErr(err))
	}
	return nil
}

// People lists the directory.
func (s *Store) People() ([]Person, error) {
	var out []Person
	err := scanJSON(s.db, pfxPerson, func(_ []byte, v []byte) error {
		var p Person
		if err := json.Unmarshal(v, &p); err != nil {
			return err
		}
		out = append(out, p)
		return nil
	})
	return out, err
}

// Keys shared with commitGroup, exported for tools and benchmarks that
// write findings in bulk with the same layout.

// FindingKey is f/d/<device><seq>.
func FindingKey(device string, seq uint64) []byte { return findingKey(device, seq) }

// FindingTimeKey is f/t/<observed ns><device><seq>.
func FindingTimeKey(f *vigilv1.Finding) []byte { return timeKey(f) }

// AlertIndexKey is ai/<observed ns><device><seq>.
func AlertIndexKey(f *vigilv1.Finding) []byte {
	k := make([]byte, 0, len(pfxAlertIndex)+8+len(f.DeviceId)+8)
	k = append(k, pfxAlertIndex...)
	k = binary.BigEndian.AppendUint64(k, uint64(f.GetObservedAt().AsTime().UnixNano()))
	k = append(k, f.DeviceId...)
	return binary.BigEndian.AppendUint64(k, f.Seq)
}

// AlertStateKey is at/<device><seq>.
func AlertStateKey(device string, seq uint64) []byte {
	k := append([]byte(pfxAlertState), device...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// Note, HistoryEntry and AlertState are the review record, owned by
// collector/triage (its rules and typed status); the store keeps it as JSON.
type (
	Note         = triage.Note
	HistoryEntry = triage.HistoryEntry
	// AlertState is an alert's triage record (the review form, seed 002
	// App. 5). A missing record means status New with no history.
	AlertState = triage.State
)

// AlertID is an alert's ID, "<device_id>-<seq>", as the console, its
// links and the access log name it.
func AlertID(device string, seq uint64) string { return device + "-" + strconv.FormatUint(seq, 10) }

// ParseAlertID splits an AlertID into its device and seq.
func ParseAlertID(id string) (device string, seq uint64, ok bool) {
	i := strings.LastIndexByte(id, '-')
	if i <= 0 {
		return "", 0, false
	}
	seq, err := strconv.ParseUint(id[i+1:], 10, 64)
	if err != nil {
		return "", 0, false
	}
	return id[:i], seq, true
}

// Alert is one entry of the alert index with its finding and triage state.
type Alert struct {
	Finding *vigilv1.Finding
	State   AlertState // Status triage.New if never triaged
	// Cursor identifies the index entry (opaque; pass back to continue).
	Cursor []byte
}

// AlertScan selects index entries for ListAlerts, newest first.
type AlertScan struct {
	From, To time.Time // observed within [From, To]; zero = unbounded
	After    []byte    // a Cursor: continue with entries older than it
	MaxScan  int       // stop after examining this many entries (0 = no bound)
	// Deadline, if set, stops the walk once passed (after at least one
	// entry, so every call makes progress).
	Deadline time.Time
}

// ListAlerts walks the alert index newest first in one consistent read,
// calling fn for each alert until fn returns false. It returns the cursor of
// the last entry examined when the walk stopped early (fn said stop, or the
// scan bound was reached), or nil when the index is exhausted.
func (s *Store) ListAlerts(ctx context.Context, q AlertScan, fn func(*Alert) bool) ([]byte, error) {
	var next []byte
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: []byte(pfxAlertIndex)})
		defer it.Close()
		var seek []byte
		switch {
		case len(q.After) > 0:
			seek = append([]byte(pfxAlertIndex), q.After...)
		case !q.To.IsZero():
			seek = binary.BigEndian.AppendUint64([]byte(pfxAlertIndex), uint64(q.To.UnixNano()))
			seek = append(seek, 0xff)
		default:
			seek = []byte(pfxAlertIndex + "\xff")
		}
		fromNS := int64(-1)
		if !q.From.IsZero() {
			fromNS = q.From.UnixNano()
		}
		scanned := 0
		for it.Seek(seek); it.Valid(); it.Next() {
			if ctx.Err() != nil {
				return ctx.Err()
			}
			k := it.Item().Key()
			tail := k[len(pfxAlertIndex):]
			if len(q.After) > 0 && string(tail) == string(q.After) {
				continue
			}
			if len(tail) < 16 {
				continue
			}
			if ns := int64(binary.BigEndian.Uint64(tail[:8])); fromNS >= 0 && ns < fromNS {
				return nil
			}
			cursor := append([]byte(nil), tail...)
			if q.MaxScan > 0 && scanned >= q.MaxScan ||
				!q.Deadline.IsZero() && scanned > 0 && scanned%32 == 0 && time.Now().After(q.Deadline) {
				next = cursorBefore(cursor)
				return nil
			}
			scanned++
			dev, seq := string(tail[8:len(tail)-8]), binary.BigEndian.Uint64(tail[len(tail)-8:])
			a, err := s.loadAlert(txn, dev, seq)
			if errors.Is(err, ErrNotFound) {
				continue // expired between the keys
			}
			if err != nil {
				return err
			}
			a.Cursor = cursor
			if !fn(a) {
				next = cursor
				return nil
			}
		}
		return nil
	})
	return next, err
}

// cursorBefore makes a cursor that resumes at (and including) the entry c:
// continuing "after" it means starting just above it in reverse order.
func cursorBefore(c []byte) []byte {
	// Append a 0x00: the key c+0x00 sorts just after c, so a reverse walk
	// seeking it lands on c itself first and does not skip it.
	return append(append([]byte(nil), c...), 0)
}

// GetAlert reads one alert (a screen finding) with its triage state.
func (s *Store) GetAlert(device string, seq uint64) (*Alert, error) {
	var a *Alert
	err := s.db.View(func(txn *badger.Txn) error {
		var err error
		a, err = s.loadAlert(txn, device, seq)
		return err
	})
	return a, err
}

func (s *Store) loadAlert(txn *badger.Txn, device string, seq uint64) (*Alert, error) {
	item, err := txn.Get(findingKey(device, seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, ErrNotFound
	}
	if err != nil {
		return nil, err
	}
	f := &vigilv1.Finding{}
	if err := item.Value(func(v []byte) error { return s.decodeFinding(item.Key(), v, f) }); errors.Is(err, ErrDataKeyDestroyed) {
		return nil, ErrNotFound
	} else if err != nil {
		return nil, err
	}
	UpgradeLegacyAlert(f) // stored before the typed ScreenMatch
	if !IsAlert(f) {
		return nil, ErrNotFound
	}
	a := &Alert{Finding: f, State: AlertState{Status: triage.New}}
	item, err = txn.Get(AlertStateKey(device, seq))
	if errors.Is(err, badger.ErrKeyNotFound) {
		return a, nil
	}
	if err != nil {
		return nil, err
	}
	if err := item.Value(func(v []byte) error { return s.decodeState(item.Key(), v, &a.State) }); err != nil {
		return nil, err
	}
	return a, nil
}

// UpdateAlertState changes an alert's triage state in one serialisable
// transaction: fn gets the current state (Status New if none) and may
// change it or return an error to abort. fn must only append to History.
func (s *Store) UpdateAlertState(device string, seq uint64, fn func(*AlertState) error) (AlertState, error) {
	return s.ReviewAlert(device, seq, func(st *AlertState) (*Exclusion, error) { return nil, fn(st) })
}

// ReviewAlert is UpdateAlertState for a review step that may also propose
// an exclusion (a false positive): fn returns the proposal or nil, and the
// proposal is written in the same transaction as the alert's state, so
// neither is stored without the other. A proposal's ID must be new
// (ErrExists otherwise, and nothing is written).
func (s *Store) ReviewAlert(device string, seq uint64, fn func(*AlertState) (*Exclusion, error)) (AlertState, error) {
	var st AlertState
	err := s.retryUpdate(func(txn *badger.Txn) error {
		st = AlertState{Status: triage.New}
		key := AlertStateKey(device, seq)
		fitem, err := txn.Get(findingKey(device, seq))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		item, err := txn.Get(key)
		if err == nil {
			if err := item.Value(func(v []byte) error { return s.decodeState(key, v, &st) }); err != nil {
				return err
			}
		} else if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		f := &vigilv1.Finding{}
		if err := fitem.Value(func(v []byte) error { return s.decodeFinding(fitem.Key(), v, f) }); errors.Is(err, ErrDataKeyDestroyed) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		UpgradeLegacyAlert(f)
		old := summaryOf(f, st)
		old.EscalatedTo = slices.Clone(old.EscalatedTo)
		before := len(st.History)
		excl, err := fn(&st)
		if err != nil {
			return err
		}
		if len(st.History) < before {
			return errors.New("store: alert history is append-only")
		}
		if excl != nil {
			xkey := []byte(pfxExclusion + excl.ID)
			if _, err := txn.Get(xkey); err == nil {
				return fmt.Errorf("store: exclusion %s: %w", excl.ID, ErrExists)
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			xv, _ := json.Marshal(excl)
			if err := txn.Set(xkey, xv); err != nil {
				return err
			}
		}
		v, _ := json.Marshal(st)
		v, err = s.sealFor(device, key, v)
		if err != nil {
			return fmt.Errorf("seal alert state: %w", err)
		}
		e := badger.NewEntry(key, v)
		// The triage record lives as long as the finding it is about.
		if exp := fitem.ExpiresAt(); exp > 0 {
			if ttl := time.Until(time.Unix(int64(exp), 0)); ttl > 0 {
				e = e.WithTTL(ttl)
			}
		}
		if err := txn.SetEntry(e); err != nil {
			return err
		}
		if !IsAlert(f) {
			return nil
		}
		// The indexes change in the same transaction as the state they
		// index, so a filter on status never sees one without the other.
		cur := summaryOf(f, st)
		return reindexAlert(txn, &old, &cur, fitem.ExpiresAt())
	})
	return st, err
}

// AlertStates calls fn for every alert that has a triage record.
func (s *Store) AlertStates(fn func(device string, seq uint64, st AlertState) error) error {
	return scanJSON(s.db, pfxAlertState, func(k, v []byte) error {
		tail := k[len(pfxAlertState):]
		if len(tail) < 9 {
			return nil
		}
		var st AlertState
		if err := s.decodeState(k, v, &st); errors.Is(err, ErrDataKeyDestroyed) {
			return nil
		} else if err != nil {
			return err
		}
		return fn(string(tail[:len(tail)-8]), binary.BigEndian.Uint64(tail[len(tail)-8:]), st)
	})
}

// Exclusion is a proposed (and later approved) exception for a rule/term
// (seed 002 §12.2: reason, approver and expiry recorded).
type Exclusion struct {
	ID             string    `json:"id"`
	AlertID        string    `json:"alert_id"`
	RuleID         string    `json:"rule_id"`
	Library        string    `json:"library,omitempty"`
	Term           string    `json:"term,omitempty"`
	Category       string    `json:"category,omitempty"`
	Status         string    `json:"status"` // pending, approved
	ProposedBy     string    `json:"proposed_by"`
	ProposedAt     time.Time `json:"proposed_at"`
	ProposalReason string    `json:"proposal_reason"`
	ApprovedBy     string    `json:"approved_by,omitempty"`
	ApprovedAt     time.Time `json:"approved_at,omitzero"`
	ApprovalReason string    `json:"approval_reason,omitempty"`
	ExpiresAt      time.Time `json:"expires_at,omitzero"`
	// School is the school of the alert it was proposed from ("" is the
	// default school); an approved exclusion applies on that school's
	// devices only, unless the approver made it TrustWide.
	School    string `json:"school,omitempty"`
	TrustWide bool   `json:"trust_wide,omitempty"`
}

// AppliesIn says whether x (once approved) applies on the devices of school.
func (x Exclusion) AppliesIn(school string) bool {
	return x.TrustWide || SchoolOf(x.School) == SchoolOf(school)
}

// PutExclusion writes an exclusion record.
func (s *Store) PutExclusion(x Exclusion) error {
	v, _ := json.Marshal(x)
	return s.update(func(txn *badger.Txn) error { return txn.Set([]byte(pfxExclusion+x.ID), v) })
}

// GetExclusion reads one exclusion; ErrNotFound if there is none.
func (s *Store) GetExclusion(id string) (Exclusion, error) {
	var x Exclusion
	err := getJSON(s.db, []byte(pfxExclusion+id), &x)
	return x, err
}

// UpdateExclusion changes one exclusion atomically.
func (s *Store) UpdateExclusion(id string, fn func(*Exclusion) error) (Exclusion, error) {
	var x Exclusion
	err := s.retryUpdate(func(txn *badger.Txn) error {
		x = Exclusion{}
		item, err := txn.Get([]byte(pfxExclusion + id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		} else if err != nil {
			return err
		}
		if err := item.Value(func(v []byte) error { return json.Unmarshal(v, &x) }); err != nil {
			return err
		}
		if err := fn(&x); err != nil {
			return err
		}
		v, _ := json.Marshal(x)
		return txn.Set([]byte(pfxExclusion+id), v)
	})
	return x, err
}

// Exclusions lists all exclusions.
func (s *Store) Exclusions() ([]Exclusion, error) {
	var out []Exclusion
	err := scanJSON(s.db, pfxExclusion, func(_ []byte, v []byte) error {
		var x Exclusion
		if err := json.Unmarshal(v, &x); err != nil {
			return err
		}
		out = append(out, x)
		return nil
	})
	return out, err
}

// NotifyState tracks the e-mail notification and escalation of one alert.
type NotifyState struct {
	Route    string    `json:"route"` // the role currently notified: dsl, headteacher, chair
	Level    int       `json:"level"`
	LastSent time.Time `json:"last_sent"`
	Done     bool      `json:"done,omitempty"`
}

// NotifyKey is an/<device><seq>.
func notifyKey(device string, seq uint64) []byte {
	k := append([]byte(pfxNotify), device...)
	return binary.BigEndian.AppendUint64(k, seq)
}

// PutNotify writes an alert's notification state (kept 90 days).
func (s *Store) PutNotify(device string, seq uint64, n NotifyState) error {
	v, _ := json.Marshal(n)
	return s.update(func(txn *badger.Txn) error {
		return txn.SetEntry(badger.NewEntry(notifyKey(device, seq), v).WithTTL(90 * 24 * time.Hour))
	})
}

// GetNotify reads it; ErrNotFound if the alert was never notified.
func (s *Store) GetNotify(device string, seq uint64) (NotifyState, error) {
	var n NotifyState
	err := getJSON(s.db, notifyKey(device, seq), &n)
	return n, err
}

// PendingNotifies calls fn for each notification not yet done.
func (s *Store) PendingNotifies(fn func(device string, seq uint64, n NotifyState) error) error {
	return scanJSON(s.db, pfxNotify, func(k, v []byte) error {
		tail := k[len(pfxNotify):]
		if len(tail) < 9 {
			return nil
		}
		var n NotifyState
		if err := json.Unmarshal(v, &n); err != nil {
			return err
		}
		if n.Done {
			return nil
		}
		return fn(string(tail[:len(tail)-8]), binary.BigEndian.Uint64(tail[len(tail)-8:]), n)
	})
}

// LatestFindings returns, for each named check, the device's most recent
// finding of that check, looking back over at most maxScan findings.
func (s *Store) LatestFindings(device string, checks []string, maxScan int) (map[string]*vigilv1.Finding, error) {
	out := map[string]*vigilv1.Finding{}
	want := map[string]bool{}
	for _, c := range checks {
		want[c] = true
	}
	prefix := []byte(pfxFindingByDevice + device)
	err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix, PrefetchValues: true, PrefetchSize: 50})
		defer it.Close()
		n := 0
		for it.Seek(append(append([]byte(nil), prefix...), 0xff)); it.Valid() && n < maxScan && len(out) < len(want); it.Next() {
			n++
			f := &vigilv1.Finding{}
			if err := it.Item().Value(func(v []byte) error { return s.decodeFinding(it.Item().Key(), v, f) }); errors.Is(err, ErrDataKeyDestroyed) {
				continue
			} else if err != nil {
				return err
			}
			UpgradeLegacyAlert(f) // so IsAlert holds for alerts stored before ScreenMatch
			if want[f.Check] && out[f.Check] == nil {
				out[f.Check] = f
			}
		}
		return nil
	})
	return out, err
}

// RecentFindings calls fn with the device's findings, newest (highest
// seq) first, looking at most at maxScan of them, until fn returns false.
func (s *Store) RecentFindings(device string, maxScan int, fn func(*vigilv1.Finding) bool) error {
	prefix := []byte(pfxFindingByDevice + device)
	return s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Reverse: true, Prefix: prefix, PrefetchValues: true, PrefetchSize: 50})
		defer it.Close()
		n := 0
		for it.Seek(append(append([]byte(nil), prefix...), 0xff)); it.Valid() && n < maxScan; it.Next() {
			n++
			f := &vigilv1.Finding{}
			if err := it.Item().Value(func(v []byte) error { return s.decodeFinding(it.Item().Key(), v, f) }); errors.Is(err, ErrDataKeyDestroyed) {
				continue
			} else if err != nil {
				return err
			}
			UpgradeLegacyAlert(f) // so IsAlert holds for alerts stored before ScreenMatch
			if !fn(f) {
				return nil
			}
		}
		return nil
	})
}

func getJSON(db *badger.DB, key []byte, v any) error {
	return db.View(func(txn *badger.Txn) error {
		item, err := txn.Get(key)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return ErrNotFound
		}
		if err != nil {
			return err
		}
		return item.Value(func(b []byte) error { return json.Unmarshal(b, v) })
	})
}

func scanJSON(db *badger.DB, prefix string, fn func(k, v []byte) error) error {
	return db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{PrefetchValues: true, Prefix: []byte(prefix)})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if err := it.Item().Value(func(v []byte) error { return fn(k, v) }); err != nil {
				return err
			}
		}
		return nil
	})
}

// retryUpdate runs fn in an update transaction, retrying on conflicts.
func (s *Store) retryUpdate(fn func(txn *badger.Txn) error) error {
	for attempt := 0; ; attempt++ {
		err := s.update(fn)
		if errors.Is(err, badger.ErrConflict) && attempt < 20 {
			continue
		}
		return err
	}
}
