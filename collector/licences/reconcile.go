package licences

import (
	"regexp"
	"sort"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Matching rules, in the order they are tried; each install's match names
// the rule so a technician can see why and correct it with an alias.
const (
	RuleAlias     = "alias"     // a technician's correction names the licence
	RuleIgnored   = "ignored"   // a technician's correction says ignore
	RuleExact     = "exact"     // normalised titles are equal
	RulePrefix    = "prefix"    // the licence's normalised title starts the install's
	RuleNone      = "none"      // no licence: reported as unlicensed
	RuleComponent = "component" // no licence, and not an application: not reported
)

// Report is a reconciliation of the register against installations.
type Report struct {
	At time.Time `json:"at"`
	// Devices whose latest audit answer was read, and how old the oldest is.
	Devices      int       `json:"devices"`
	OldestAnswer time.Time `json:"oldest_answer,omitzero"`
	// IncompleteDevices answered with more software than the cap: their
	// lists are partial, so counts may be low.
	IncompleteDevices []string     `json:"incomplete_devices,omitempty"`
	Products          []Product    `json:"products"`
	Unlicensed        []Unlicensed `json:"unlicensed"`
	Matches           []Match      `json:"matches"`
}

// Product is one licensed product: the licences whose normalised product
// names are equal, taken together.
type Product struct {
	Title     string   `json:"title"` // normalised
	Product   string   `json:"product"`
	Publisher string   `json:"publisher,omitempty"`
	Licences  []string `json:"licences"`
	// Purchased counts every seat bought; Valid only those of licences
	// not expired.
	Purchased int `json:"purchased"`
	Valid     int `json:"valid"`
	// Installed counts devices (several titles on one device use one seat).
	Installed int `json:"installed"`
	OverQuota int `json:"over_quota"`
	Unused    int `json:"unused"`
	// ExpiredSeats are seats of expired licences; Expired is set when
	// every licence of the product has expired.
	ExpiredSeats    int      `json:"expired_seats"`
	Expired         bool     `json:"expired"`
	ExpiredLicences []string `json:"expired_licences,omitempty"`
	NextExpiry      string   `json:"next_expiry,omitempty"` // YYYY-MM-DD
	DeviceIDs       []string `json:"device_ids,omitempty"`
}

// Unlicensed is an application installed with no licence record.
type Unlicensed struct {
	Title     string   `json:"title"` // normalised
	Names     []string `json:"names"` // as installed
	Publisher string   `json:"publisher,omitempty"`
	Installed int      `json:"installed"`
	DeviceIDs []string `json:"device_ids"`
}

// Match is why one install counted (or did not) against a licence.
type Match struct {
	DeviceID  string `json:"device_id"`
	Name      string `json:"name"`
	Version   string `json:"version,omitempty"`
	Publisher string `json:"publisher,omitempty"`
	Source    string `json:"source,omitempty"`
	Title     string `json:"title"` // normalised
	Rule      string `json:"rule"`
	LicenceID string `json:"licence_id,omitempty"`
	Product   string `json:"product,omitempty"` // the licensed product's normalised title
}

// componentName matches titles that are parts of the OS or libraries
// installers bring along, never licensed on their own.
var componentName = regexp.MustCompile(`(?i)\b(redistributable|runtime|run-time|hotfix|service pack|update for|security update|driver|drivers|sdk|language pack|proofing|click-to-run|framework|library|libraries|codec|plug-?in|webview2|kb\d{6,})\b`)

// IsApplication is the rule for reporting software with no licence: it has
// a publisher, it comes from a list of applications a user sees (the
// Windows Uninstall entries, macOS /Applications) rather than from a
// package manager's list of OS packages (dpkg, rpm, pkgutil receipts), and
// its name is not that of a runtime, driver, update or library.
func IsApplication(sw audit.Software) bool {
	if strings.TrimSpace(sw.Publisher) == "" {
		return false
	}
	switch sw.Source {
	case "registry", "applications":
	default:
		return false
	}
	return !componentName.MatchString(sw.Name)
}

type productAcc struct {
	p       *Product
	devices map[string]bool
}

// Reconcile matches the software of each device's latest answer to the
// licences (see the Rule constants) and counts seats per product.
func Reconcile(now time.Time, ls []store.Licence, aliases []store.LicenceAlias, latest map[string]audit.LatestAnswer) Report {
	rep := Report{At: now.UTC(), Devices: len(latest), Products: []Product{}, Unlicensed: []Unlicensed{}, Matches: []Match{}}
	today := now.UTC().Truncate(24 * time.Hour)
	products := map[string]*productAcc{}
	licTitle := map[string]string{} // licence ID -> product title
	for _, l := range ls {
		t := Normalise(l.Product)
		licTitle[l.ID] = t
		acc := products[t]
		if acc == nil {
			acc = &productAcc{p: &Product{Title: t, Product: l.Product, Publisher: l.Publisher}, devices: map[string]bool{}}
			products[t] = acc
		}
		p := acc.p
		p.Licences = append(p.Licences, l.ID)
		p.Purchased += l.Seats
		// A licence is valid through its expiry date.
		if !l.Expiry.IsZero() && l.Expiry.Before(today) {
			p.ExpiredSeats += l.Seats
			p.ExpiredLicences = append(p.ExpiredLicences, l.ID)
		} else {
			p.Valid += l.Seats
			if !l.Expiry.IsZero() {
				if e := l.Expiry.Format("2006-01-02"); p.NextExpiry == "" || e < p.NextExpiry {
					p.NextExpiry = e
				}
			}
		}
	}
	// Longest product titles first, so a prefix match picks the most
	// specific licence ("adobe acrobat reader" before "adobe acrobat").
	titles := make([]string, 0, len(products))
	for t := range products {
		titles = append(titles, t)
	}
	sort.Slice(titles, func(i, j int) bool {
		if len(titles[i]) != len(titles[j]) {
			return len(titles[i]) > len(titles[j])
		}
		return titles[i] < titles[j]
	})
	alias := map[string]store.LicenceAlias{}
	for _, a := range aliases {
		alias[a.Title] = a
	}
	unlicensed := map[string]*Unlicensed{}
	unDevices := map[string]map[string]bool{}
	devs := make([]string, 0, len(latest))
	for d := range latest {
		devs = append(devs, d)
	}
	sort.Strings(devs)
	for _, dev := range devs {
		ans := latest[dev]
		if rep.OldestAnswer.IsZero() || ans.At.Before(rep.OldestAnswer) {
			rep.OldestAnswer = ans.At
		}
		if ans.SoftwareOmitted > 0 {
			rep.IncompleteDevices = append(rep.IncompleteDevices, dev)
		}
		for _, sw := range ans.Software {
			m := Match{DeviceID: dev, Name: sw.Name, Version: sw.Version, Publisher: sw.Publisher, Source: sw.Source, Title: Normalise(sw.Name)}
			if m.Title == "" {
				continue
			}
			m.Rule = RuleNone
			if a, ok := alias[m.Title]; ok && a.Ignore {
				m.Rule = RuleIgnored
			} else if t, ok := licTitle[a.LicenceID]; ok && a.LicenceID != "" {
				m.Rule, m.LicenceID, m.Product = RuleAlias, a.LicenceID, t
			} else if _, ok := products[m.Title]; ok {
				m.Rule, m.Product = RuleExact, m.Title
			} else {
				for _, t := range titles {
					if strings.HasPrefix(m.Title, t+" ") && !freeVariant(m.Title[len(t)+1:]) {
						m.Rule, m.Product = RulePrefix, t
						break
					}
				}
			}
			if m.Product != "" {
				if m.LicenceID == "" {
					m.LicenceID = products[m.Product].p.Licences[0]
				}
				products[m.Product].devices[dev] = true
			} else if m.Rule == RuleNone {
				if !IsApplication(sw) {
					m.Rule = RuleComponent
				} else {
					u := unlicensed[m.Title]
					if u == nil {
						u = &Unlicensed{Title: m.Title, Publisher: sw.Publisher}
						unlicensed[m.Title], unDevices[m.Title] = u, map[string]bool{}
					}
					if !contains(u.Names, sw.Name) {
						u.Names = append(u.Names, sw.Name)
					}
					unDevices[m.Title][dev] = true
				}
			}
			if m.Rule != RuleComponent {
				rep.Matches = append(rep.Matches, m)
			}
		}
	}
	for _, t := range titles {
		acc := products[t]
		p := acc.p
		p.Installed = len(acc.devices)
		p.DeviceIDs = sortedKeys(acc.devices)
		p.OverQuota = max(0, p.Installed-p.Valid)
		p.Unused = max(0, p.Valid-p.Installed)
		p.Expired = p.Valid == 0 && p.ExpiredSeats > 0
		rep.Products = append(rep.Products, *p)
	}
	sort.Slice(rep.Products, func(i, j int) bool { return rep.Products[i].Title < rep.Products[j].Title })
	for t, u := range unlicensed {
		u.DeviceIDs = sortedKeys(unDevices[t])
		u.Installed = len(u.DeviceIDs)
		sort.Strings(u.Names)
		rep.Unlicensed = append(rep.Unlicensed, *u)
	}
	sort.Slice(rep.Unlicensed, func(i, j int) bool {
		if rep.Unlicensed[i].Installed != rep.Unlicensed[j].Installed {
			return rep.Unlicensed[i].Installed > rep.Unlicensed[j].Installed
		}
		return rep.Unlicensed[i].Title < rep.Unlicensed[j].Title
	})
	return rep
}

// freeVariantWords mark the free companion of a paid product ("Adobe
// Acrobat Reader" is not a seat of "Adobe Acrobat"): a prefix match is not
// made when the rest of the title has one.
var freeVariantWords = map[string]bool{"reader": true, "viewer": true, "player": true, "free": true,
	"lite": true, "express": true, "community": true, "runtime": true}

func freeVariant(rest string) bool {
	for _, w := range strings.Fields(rest) {
		if freeVariantWords[w] {
			return true
		}
	}
	return false
}

func contains(ss []string, s string) bool {
	for _, x := range ss {
		if x == s {
			return true
		}
	}
	return false
}

func sortedKeys(m map[string]bool) []string {
	out := make([]string, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Strings(out)
	return out
}
