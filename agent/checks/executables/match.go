package executables

import (
	"path"
	"strings"
)

// subject is what the lists are matched against: a file, a running
// process or an installed program.
type subject struct {
	names   []string // file base name; process name and exe base name; software name
	path    string   // full path ("" for installed software)
	sha256  string   // "" when not hashed
	signers []string // claimed signer names; software: publisher
}

// Matching order (documented in docs/checks/executables.md):
//
//  1. a deny entry with a sha256 that matches: denied;
//  2. an allow entry with a sha256 that matches: allowed;
//  3. any other deny entry that matches: denied;
//  4. any other allow entry that matches: allowed;
//  5. otherwise: unapproved.
//
// Hash entries are the most specific statement a school can make, so they
// beat name, path and signer entries; at equal specificity deny wins.
// All fields given in an entry must match.
func (c *config) evaluate(s subject) (e *entry, denied bool) {
	if s.sha256 != "" {
		for i := range c.deny {
			if c.deny[i].SHA256 != "" && c.deny[i].matches(s) {
				return &c.deny[i], true
			}
		}
		for i := range c.allow {
			if c.allow[i].SHA256 != "" && c.allow[i].matches(s) {
				return &c.allow[i], false
			}
		}
	}
	for i := range c.deny {
		if c.deny[i].SHA256 == "" && c.deny[i].matches(s) {
			return &c.deny[i], true
		}
	}
	for i := range c.allow {
		if c.allow[i].SHA256 == "" && c.allow[i].matches(s) {
			return &c.allow[i], false
		}
	}
	return nil, false
}

func (e *entry) matches(s subject) bool {
	if e.SHA256 != "" && e.SHA256 != strings.ToLower(s.sha256) {
		return false
	}
	if len(e.Name) > 0 && !anyGlob(e.Name, s.names, true) {
		return false
	}
	if len(e.Path) > 0 {
		if s.path == "" {
			return false
		}
		p := strings.ReplaceAll(s.path, `\`, "/")
		if !anyGlob(e.Path, []string{p}, e.foldPath) {
			return false
		}
	}
	if len(e.Signer) > 0 && !anyGlob(e.Signer, s.signers, true) {
		return false
	}
	return true
}

// anyGlob reports whether any glob matches any value. Backslashes in globs
// are path separators (Windows paths), not escapes.
func anyGlob(globs, values []string, fold bool) bool {
	for _, g := range globs {
		g = strings.ReplaceAll(g, `\`, "/")
		if fold {
			g = strings.ToLower(g)
		}
		for _, v := range values {
			if v == "" {
				continue
			}
			if fold {
				v = strings.ToLower(v)
			}
			if ok, _ := path.Match(g, v); ok {
				return true
			}
		}
	}
	return false
}
