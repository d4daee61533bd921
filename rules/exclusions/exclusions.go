// Package exclusions is the data file that carries approved keyword
// exclusions to agents (seed 002 §12.2: a temporary change with a reason, an
// approver and an expiry). The collector writes the DSL-approved exclusions
// into every rules bundle as Path; the agent's screen check drops a keyword
// match whose (library rule id, term) is excluded and not yet expired.
//
// Importing this package registers exclusions/*.json as a bundle data kind,
// so the rules loader carries and validates these files.
package exclusions

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"path"
	"sort"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/rules"
)

// Path is the bundle file the collector generates.
const Path = "exclusions/approved.json"

// Exclusion is one approved exception: matches of Term from the keyword
// library whose rule id is LibraryRuleID are dropped until ExpiresAt.
type Exclusion struct {
	ID            string    `json:"id"`
	LibraryRuleID string    `json:"library_rule_id"`
	Term          string    `json:"term"` // as written in the library (a match's Term)
	Reason        string    `json:"reason"`
	ApprovedBy    string    `json:"approved_by"`
	ApprovedAt    time.Time `json:"approved_at"`
	ExpiresAt     time.Time `json:"expires_at"`
}

// file is the JSON shape: {"exclusions": [...]}.
type file struct {
	Exclusions []Exclusion `json:"exclusions"`
}

// Parse reads an exclusions file strictly: a JSON object with the key
// "exclusions" holding a list; every entry needs id, library_rule_id, term,
// reason, approved_by, approved_at and expires_at; ids are unique.
func Parse(data []byte) ([]Exclusion, error) {
	if len(data) > rules.MaxFileSize {
		return nil, fmt.Errorf("file is %d bytes; the limit is %d", len(data), rules.MaxFileSize)
	}
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.DisallowUnknownFields()
	var f file
	if err := dec.Decode(&f); err != nil {
		return nil, fmt.Errorf("not an exclusions file: %v", err)
	}
	if dec.More() {
		return nil, errors.New("not an exclusions file: data after the JSON object")
	}
	if f.Exclusions == nil {
		return nil, errors.New(`not an exclusions file: want {"exclusions": [...]}`)
	}
	seen := map[string]bool{}
	for i, x := range f.Exclusions {
		var missing []string
		for _, c := range []struct {
			name string
			ok   bool
		}{
			{"id", x.ID != ""}, {"library_rule_id", x.LibraryRuleID != ""}, {"term", strings.TrimSpace(x.Term) != ""},
			{"reason", x.Reason != ""}, {"approved_by", x.ApprovedBy != ""},
			{"approved_at", !x.ApprovedAt.IsZero()}, {"expires_at", !x.ExpiresAt.IsZero()},
		} {
			if !c.ok {
				missing = append(missing, c.name)
			}
		}
		if len(missing) > 0 {
			return nil, fmt.Errorf("exclusion %d: missing %s", i+1, strings.Join(missing, ", "))
		}
		if seen[x.ID] {
			return nil, fmt.Errorf("exclusion %d: id %q is repeated", i+1, x.ID)
		}
		seen[x.ID] = true
	}
	return f.Exclusions, nil
}

// Marshal writes list as an exclusions file, sorted by id, so equal lists
// give equal bytes (and so an unchanged bundle keeps its hash).
func Marshal(list []Exclusion) []byte {
	out := append([]Exclusion{}, list...)
	sort.Slice(out, func(i, j int) bool { return out[i].ID < out[j].ID })
	for i := range out {
		out[i].ApprovedAt = out[i].ApprovedAt.UTC()
		out[i].ExpiresAt = out[i].ExpiresAt.UTC()
	}
	b, _ := json.MarshalIndent(file{Exclusions: out}, "", "  ")
	return append(b, '\n')
}

// Active returns the exclusions that have not expired at now.
func Active(list []Exclusion, now time.Time) []Exclusion {
	var out []Exclusion
	for _, x := range list {
		if now.Before(x.ExpiresAt) {
			out = append(out, x)
		}
	}
	return out
}

// IsFile reports whether a bundle path is an exclusions file.
func IsFile(p string) bool {
	return strings.HasPrefix(p, "exclusions/") && path.Ext(p) == ".json" && !strings.Contains(p[len("exclusions/"):], "/")
}

// FromBundle parses every exclusions file of a bundle, in path order.
func FromBundle(files map[string][]byte) ([]Exclusion, error) {
	var names []string
	for p := range files {
		if IsFile(p) {
			names = append(names, p)
		}
	}
	sort.Strings(names)
	var out []Exclusion
	for _, p := range names {
		list, err := Parse(files[p])
		if err != nil {
			return nil, fmt.Errorf("%s: %w", p, err)
		}
		out = append(out, list...)
	}
	return out, nil
}

type key struct{ rule, term string }

// Set answers whether a match is excluded at a given time.
type Set struct {
	until map[key]time.Time // the latest expiry per (library rule id, term)
}

// NewSet indexes list; a nil or empty list excludes nothing.
func NewSet(list []Exclusion) *Set {
	s := &Set{until: map[key]time.Time{}}
	for _, x := range list {
		k := key{x.LibraryRuleID, x.Term}
		if x.ExpiresAt.After(s.until[k]) {
			s.until[k] = x.ExpiresAt
		}
	}
	return s
}

// Len is the number of excluded (library rule id, term) pairs, expired or not.
func (s *Set) Len() int {
	if s == nil {
		return 0
	}
	return len(s.until)
}

// Excluded reports whether matches of term from the library with rule id
// libraryRuleID are excluded at now (before the exclusion's expiry).
func (s *Set) Excluded(libraryRuleID, term string, now time.Time) bool {
	if s == nil {
		return false
	}
	exp, ok := s.until[key{libraryRuleID, term}]
	return ok && now.Before(exp)
}

func init() {
	rules.RegisterData(rules.DataKind{
		Match: IsFile,
		Validate: func(display string, data []byte) rules.Errors {
			if _, err := Parse(data); err != nil {
				return rules.Errors{{Pos: rules.Pos{File: display}, Msg: err.Error()}}
			}
			return nil
		},
	})
}
