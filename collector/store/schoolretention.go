package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/mail"
	"sort"
	"strconv"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Retention is how long findings are kept, by finding category, with the
// key RetentionDefault for every other category; 0 keeps forever.
type Retention map[string]time.Duration

// RetentionDefault is the Retention key for the categories not named.
const RetentionDefault = "default"

// String is the --retention form: "default=400d,selftest=30d".
func (r Retention) String() string {
	keys := make([]string, 0, len(r))
	for k := range r {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		d := r[k]
		if d%(24*time.Hour) == 0 {
			parts[i] = fmt.Sprintf("%s=%dd", k, d/(24*time.Hour))
		} else {
			parts[i] = k + "=" + d.String()
		}
	}
	return strings.Join(parts, ",")
}

// loadSchoolRetention fills the cache read by retentionOf.
func (s *Store) loadSchoolRetention() error {
	all, err := s.Schools()
	if err != nil {
		return err
	}
	m := map[string]Retention{}
	for _, sc := range all {
		if len(sc.Retention) > 0 {
			m[sc.ID] = sc.Retention
		}
	}
	s.retMu.Lock()
	s.schoolRet = m
	s.retMu.Unlock()
	return nil
}

// retentionOf is the time-to-live of a new finding of device in category:
// the device's school's own retention where the school set one (a
// category it names, else its default), else the installation's.
func (s *Store) retentionOf(device, category string) time.Duration {
	school, ok := s.DeviceSchool(device)
	return s.retentionIn(school, ok, category)
}

// retentionIn is retentionOf for a device whose school was looked up
// (known: the device is in the cache).
func (s *Store) retentionIn(school string, known bool, category string) time.Duration {
	if known {
		s.retMu.RLock()
		r := s.schoolRet[school]
		s.retMu.RUnlock()
		if d, ok := r[category]; ok {
			return d
		}
		if d, ok := r[RetentionDefault]; ok {
			return d
		}
	}
	return s.retention(category)
}

// SetSchoolRetention sets a school's own retention (nil or empty: the
// installation's again). It applies to findings stored from now on: a
// finding's expiry is fixed when it is written. The default school's
// retention is the installation's (--retention).
func (s *Store) SetSchoolRetention(id string, r Retention) (School, error) {
	if id == "" || id == DefaultSchool {
		return School{}, fmt.Errorf("%w: the default school keeps findings as the installation does (serve --retention)", ErrBadSchool)
	}
	for k, d := range r {
		if k == "" || len(k) > 64 || d < 0 {
			return School{}, fmt.Errorf("%w: retention %q=%s: a category and a duration of 0 (forever) or more", ErrBadSchool, k, d)
		}
	}
	if len(r) == 0 {
		r = nil
	}
	sc, err := s.updateSchool(id, func(sc *School) { sc.Retention = r })
	if err != nil {
		return School{}, fmt.Errorf("store: set retention of school %s: %w", id, err)
	}
	s.retMu.Lock()
	if r == nil {
		delete(s.schoolRet, id)
	} else {
		s.schoolRet[id] = r
	}
	s.retMu.Unlock()
	return sc, nil
}

// SetSchoolHours sets a school's own working hours and time zone ("" for
// both: the installation's again). The caller has checked them
// (notify.ParseSchedule, time.LoadLocation).
func (s *Store) SetSchoolHours(id, hours, timezone string) (School, error) {
	if id == "" || id == DefaultSchool {
		return School{}, fmt.Errorf("%w: the default school works the installation's hours (serve --working-hours)", ErrBadSchool)
	}
	if len(hours) > 500 || len(timezone) > 100 || (hours == "") != (timezone == "") {
		return School{}, fmt.Errorf("%w: working hours and a time zone are set together", ErrBadSchool)
	}
	sc, err := s.updateSchool(id, func(sc *School) { sc.WorkingHours, sc.Timezone = hours, timezone })
	if err != nil {
		return School{}, fmt.Errorf("store: set working hours of school %s: %w", id, err)
	}
	return sc, nil
}

// SetSchoolOnCall sets the school's own on-call users (nil: the
// installation's again). The caller has checked that each is an account
// that sees the school (collector/admin).
func (s *Store) SetSchoolOnCall(id string, users []string) (School, error) {
	if id == "" || id == DefaultSchool {
		return School{}, fmt.Errorf("%w: the default school's on-call users are the installation's (serve --out-of-hours-users)", ErrBadSchool)
	}
	if len(users) > 50 {
		return School{}, fmt.Errorf("%w: at most 50 on-call users", ErrBadSchool)
	}
	sc, err := s.updateSchool(id, func(sc *School) { sc.OnCall = append([]string(nil), users...) })
	if err != nil {
		return School{}, fmt.Errorf("store: set on-call users of school %s: %w", id, err)
	}
	return sc, nil
}

// SetSchoolMail sets the school's own mail relay and sender for its alert
// e-mails (both empty: the installation's again).
func (s *Store) SetSchoolMail(id, relay, from string) (School, error) {
	if id == "" || id == DefaultSchool {
		return School{}, fmt.Errorf("%w: the default school's mail goes by the installation's relay (serve --smtp, --smtp-from)", ErrBadSchool)
	}
	if (relay == "") != (from == "") {
		return School{}, fmt.Errorf("%w: a school's mail relay and sender are set together", ErrBadSchool)
	}
	if relay != "" {
		host, port, err := net.SplitHostPort(relay)
		if n, perr := strconv.Atoi(port); err != nil || host == "" || perr != nil || n <= 0 || n > 65535 {
			return School{}, fmt.Errorf("%w: mail relay %q: want HOST:PORT", ErrBadSchool, relay)
		}
		a, err := mail.ParseAddress(from)
		if err != nil || a.Name != "" || len(from) > 254 {
			return School{}, fmt.Errorf("%w: sender %q: want a bare address such as safeguarding@school.example", ErrBadSchool, from)
		}
	}
	sc, err := s.updateSchool(id, func(sc *School) { sc.MailRelay, sc.MailFrom = relay, from })
	if err != nil {
		return School{}, fmt.Errorf("store: set the mail relay of school %s: %w", id, err)
	}
	return sc, nil
}

// updateSchool changes one school's record in a transaction.
func (s *Store) updateSchool(id string, change func(*School)) (School, error) {
	var sc School
	err := s.retryUpdate(func(txn *badger.Txn) error {
		sc = School{}
		it, err := txn.Get([]byte(pfxSchool + id))
		if errors.Is(err, badger.ErrKeyNotFound) {
			return fmt.Errorf("%w: no school %q", ErrNotFound, id)
		}
		if err != nil {
			return err
		}
		if err := it.Value(func(v []byte) error { return json.Unmarshal(v, &sc) }); err != nil {
			return err
		}
		if !sc.DeletingAt.IsZero() {
			return fmt.Errorf("%w: no school %q", ErrNotFound, id)
		}
		change(&sc)
		v, _ := json.Marshal(sc)
		return txn.Set([]byte(pfxSchool+id), v)
	})
	return sc, err
}
