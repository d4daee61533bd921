package store

import (
	"encoding/json"
	"errors"
	"fmt"
	"regexp"
	"sort"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// A trust is one installation with schools as tenants. Every device,
// token and console account belongs to one school; a record written before
// schools existed (School == "") belongs to DefaultSchool, which exists
// without being added, so a single school is simply a trust of one.

// pfxSchool: sc/<school id> -> School (JSON).
const pfxSchool = "sc/"

// DefaultSchool is the school of every record that names none.
const DefaultSchool = "default"

// School is one tenant of the installation.
type School struct {
	ID        string    `json:"id"`
	Name      string    `json:"name"`
	CreatedAt time.Time `json:"created_at,omitzero"`
	// DeletingAt is set when a deletion starts (DeleteSchool): the school
	// is then no longer listed or found, so nothing new lands in it.
	DeletingAt time.Time `json:"deleting_at,omitzero"`
	// Retention, when set, is the school's own retention of its devices'
	// findings (SetSchoolRetention); otherwise the installation's applies.
	Retention Retention `json:"retention,omitempty"`
	// WorkingHours and Timezone, when set, are the school's own hours
	// (notify.ParseSchedule form) for judging absent devices and the
	// out-of-hours chain; otherwise the installation's apply.
	WorkingHours string `json:"working_hours,omitempty"`
	Timezone     string `json:"timezone,omitempty"`
	// OnCall, when set, are the school's own staff on call out of hours
	// (console usernames, SetSchoolOnCall); otherwise serve
	// --out-of-hours-users applies.
	OnCall []string `json:"on_call,omitempty"`
	// MailRelay (host:port) and MailFrom, when set, are the school's own
	// mail relay and sender for its alert e-mails (SetSchoolMail);
	// otherwise serve --smtp and --smtp-from apply.
	MailRelay string `json:"mail_relay,omitempty"`
	MailFrom  string `json:"mail_from,omitempty"`
}

// ErrBadSchool: a school ID or name that cannot be used.
var ErrBadSchool = errors.New("store: bad school")

var schoolIDRE = regexp.MustCompile(`^[a-z0-9][a-z0-9-]{0,62}$`)

// ValidSchoolID reports whether id can name a school (1-63 of a-z 0-9 -,
// starting with a letter or digit): safe as a file name and a NATS token.
func ValidSchoolID(id string) bool { return schoolIDRE.MatchString(id) }

// SchoolOf is the school a record names: DefaultSchool for none.
func SchoolOf(id string) string {
	if id == "" {
		return DefaultSchool
	}
	return id
}

// SchoolID derives an ID from a school's name: lower case, runs of
// anything but a-z and 0-9 become one "-" ("St Mary's C of E" ->
// "st-mary-s-c-of-e").
func SchoolID(name string) string {
	var b strings.Builder
	dash := false
	for _, r := range strings.ToLower(name) {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' {
			b.WriteRune(r)
			dash = false
		} else if !dash && b.Len() > 0 {
			b.WriteByte('-')
			dash = true
		}
	}
	id := strings.TrimRight(b.String(), "-")
	if len(id) > 63 {
		id = strings.TrimRight(id[:63], "-")
	}
	return id
}

func defaultSchool() School { return School{ID: DefaultSchool, Name: "Default school"} }

// AddSchool stores a new school; ErrExists if its ID (or, case aside, its
// name) is taken. An empty ID is derived from the name.
func (s *Store) AddSchool(sc School) (School, error) {
	sc.Name = strings.TrimSpace(sc.Name)
	if sc.ID == "" {
		sc.ID = SchoolID(sc.Name)
	}
	if sc.Name == "" || len(sc.Name) > 200 {
		return School{}, fmt.Errorf("%w: a school needs a name of 1-200 characters", ErrBadSchool)
	}
	if !ValidSchoolID(sc.ID) {
		return School{}, fmt.Errorf("%w: id %q: use 1-63 of a-z 0-9 -, starting with a letter or digit", ErrBadSchool, sc.ID)
	}
	if sc.ID == DefaultSchool {
		return School{}, fmt.Errorf("%w: school %q exists already (it holds everything that names no school)", ErrExists, sc.ID)
	}
	all, err := s.Schools()
	if err != nil {
		return School{}, err
	}
	for _, x := range all {
		if x.ID == sc.ID || strings.EqualFold(x.Name, sc.Name) {
			return School{}, fmt.Errorf("%w: school %q (%s)", ErrExists, x.ID, x.Name)
		}
	}
	v, _ := json.Marshal(sc)
	// The ID and name checks above and this write are not one transaction:
	// schools are added by the operator, one at a time, and a lost race
	// would be two records for one ID, the second overwriting the first
	// with the same ID; the name check is a courtesy.
	err = s.update(func(txn *badger.Txn) error {
		if _, err := txn.Get([]byte(pfxSchool + sc.ID)); err == nil {
			return fmt.Errorf("%w: school %q", ErrExists, sc.ID)
		}
		return txn.Set([]byte(pfxSchool+sc.ID), v)
	})
	if err != nil {
		return School{}, fmt.Errorf("store: add school %s: %w", sc.ID, err)
	}
	// A school added again after a deletion starts with its own retention
	// (usually none), not the one it had.
	s.retMu.Lock()
	if len(sc.Retention) > 0 {
		s.schoolRet[sc.ID] = sc.Retention
	} else {
		delete(s.schoolRet, sc.ID)
	}
	s.retMu.Unlock()
	return sc, nil
}

// Schools lists every school, the default first, then by ID.
func (s *Store) Schools() ([]School, error) {
	var out []School
	err := scanJSON(s.db, pfxSchool, func(_, v []byte) error {
		var sc School
		if err := json.Unmarshal(v, &sc); err != nil {
			return err
		}
		if !sc.DeletingAt.IsZero() {
			return nil
		}
		out = append(out, sc)
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("store: list schools: %w", err)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	return append([]School{defaultSchool()}, out...), nil
}

// FindSchool resolves a school by ID or, case aside, by name; ErrNotFound
// if there is none. "" is the default school.
func (s *Store) FindSchool(idOrName string) (School, error) {
	idOrName = strings.TrimSpace(idOrName)
	if idOrName == "" || idOrName == DefaultSchool {
		return defaultSchool(), nil
	}
	all, err := s.Schools()
	if err != nil {
		return School{}, err
	}
	for _, x := range all {
		if x.ID == idOrName {
			return x, nil
		}
	}
	for _, x := range all {
		if strings.EqualFold(x.Name, idOrName) {
			return x, nil
		}
	}
	return School{}, fmt.Errorf("%w: no school %q (vigil-collector school list)", ErrNotFound, idOrName)
}

// DeviceSchool is the school a device was enrolled into; ok is false for
// a device this collector does not know.
func (s *Store) DeviceSchool(id string) (string, bool) {
	s.devMu.Lock()
	defer s.devMu.Unlock()
	d, ok := s.devices[id]
	if !ok {
		return "", false
	}
	return SchoolOf(d.School), true
}

// assignExclusionSchools gives an exclusion proposed before exclusions
// named their school (Exclusion.School) the school of the device whose
// alert it came from. Without it such an exclusion counted as the default
// school's: its DSLs could not see or approve it, an approval applied on
// the default school's devices instead of the ones that raised it, and
// deleting or exporting the school left it behind. Devices never change
// school, so this is idempotent and runs at every open (exclusions are
// few); a trust-wide one and one without an alert stay as they are.
func (s *Store) assignExclusionSchools() (int, error) {
	type fix struct {
		key []byte
		val []byte
	}
	var fixes []fix
	err := scanJSON(s.db, pfxExclusion, func(k, v []byte) error {
		var x Exclusion
		if json.Unmarshal(v, &x) != nil || x.School != "" || x.TrustWide || x.AlertID == "" {
			return nil
		}
		dev, _, ok := ParseAlertID(x.AlertID)
		if !ok {
			return nil
		}
		school, ok := s.DeviceSchool(dev)
		if !ok || school == DefaultSchool {
			return nil
		}
		// Rewritten from the raw record, so fields this build does not
		// know survive.
		var raw map[string]json.RawMessage
		if json.Unmarshal(v, &raw) != nil {
			return nil
		}
		raw["school"], _ = json.Marshal(school)
		nv, err := json.Marshal(raw)
		if err != nil {
			return err
		}
		fixes = append(fixes, fix{k, nv})
		return nil
	})
	if err != nil || len(fixes) == 0 {
		return 0, err
	}
	err = s.update(func(txn *badger.Txn) error {
		for _, f := range fixes {
			if err := txn.Set(f.key, f.val); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return 0, fmt.Errorf("store: give exclusions their school: %w", err)
	}
	s.log.Info("collector store: exclusions given the school of the alert they came from", "count", len(fixes))
	return len(fixes), nil
}
