package console

import (
	"context"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/evidence"
	"github.com/vigil-safeguarding/vigil/collector/inventory"
	"github.com/vigil-safeguarding/vigil/collector/licences"
	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Store is what the console needs of the state store (*store.Store is
// one): the reads and writes of its own handlers, grouped below by what
// they serve, and those of the services it builds over the same store
// (accounts, evidence reveal, licences, inventory, reports, the queue).
type Store interface {
	alertStore
	accessLogStore
	directoryStore
	exclusionStore
	termStore
	deviceStore
	schoolStore

	queueStore
	auth.Store
	evidence.Store
	licences.Register
	inventory.Store
	reports.Store
}

// alertStore: an alert, its review, and the findings its device page shows.
type alertStore interface {
	GetAlert(device string, seq uint64) (*store.Alert, error)
	ListAlerts(ctx context.Context, q store.AlertScan, fn func(*store.Alert) bool) ([]byte, error)
	AlertStates(fn func(device string, seq uint64, st store.AlertState) error) error
	ReviewAlert(device string, seq uint64, fn func(*store.AlertState) (*store.Exclusion, error)) (store.AlertState, error)
	LatestFindings(device string, checks []string, maxScan int) (map[string]*vigilv1.Finding, error)
	RecentFindings(device string, maxScan int, fn func(*vigilv1.Finding) bool) error
}

// accessLogStore: every view of an alert or evidence is logged before it
// is shown, and the log is read back.
type accessLogStore interface {
	LogAccess(e store.AccessEntry) error
	AccessLog() ([]store.AccessEntry, error)
}

// directoryStore: the people directory (routing) and the console accounts.
type directoryStore interface {
	People() ([]store.Person, error)
	PutPeople(people []store.Person) error
	GetUser(username string) (store.User, error)
	Users() ([]store.User, error)
}

// exclusionStore: proposed and approved exclusions (ExclusionsFile too).
type exclusionStore interface {
	Exclusions() ([]store.Exclusion, error)
	GetExclusion(id string) (store.Exclusion, error)
	UpdateExclusion(id string, fn func(*store.Exclusion) error) (store.Exclusion, error)
}

// termStore: the schools' and the trust's keyword terms, the schools'
// suppressions of trust-wide ones and the decision log.
type termStore interface {
	SchoolTerms() ([]store.SchoolTerm, error)
	GetSchoolTerm(id string) (store.SchoolTerm, error)
	TermsInForce(school string) ([]store.SchoolTerm, error)
	AddSchoolTerm(t store.SchoolTerm, reason string) error
	RemoveSchoolTerm(id, by, reason string, at time.Time) (store.SchoolTerm, error)
	SuppressTerm(x store.TermSuppression) error
	RestoreTerm(school, id, by, reason string, at time.Time) error
	TermSuppressions() ([]store.TermSuppression, error)
	TermDecisions() ([]store.TermDecision, error)
}

// deviceStore: the fleet.
type deviceStore interface {
	GetDevice(id string) (store.Device, bool)
	Devices() []store.Device
}

// schoolStore: the schools of a trust and which school a device is in
// (collector/tenancy reads it).
type schoolStore interface {
	tenancy.Directory
	FindSchool(idOrName string) (store.School, error)
}
