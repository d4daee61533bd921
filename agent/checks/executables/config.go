package executables

import (
	"fmt"
	"log/slog"
	"path"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

// Defaults and limits of the params.
const (
	DefaultDebounce     = 500 * time.Millisecond
	DefaultMaxHashBytes = 256 << 20
	DefaultMaxDepth     = 3
	MaxMaxDepth         = 8
	// MaxPollFiles bounds the files Poll looks at in the watched folders.
	MaxPollFiles = 5000
)

// Params are the executables check's rule params (see
// docs/checks/executables.md).
type Params struct {
	// Paths replaces the per-OS default watched folders; ExtraPaths adds
	// to them. Both are globs (filepath.Glob syntax) of absolute paths.
	Paths      []string `yaml:"paths"`
	ExtraPaths []string `yaml:"extra_paths"`
	// Recursive watches sub-folders too, down to MaxDepth levels
	// (default 3, at most 8).
	Recursive    bool            `yaml:"recursive"`
	MaxDepth     int             `yaml:"max_depth"`
	Debounce     checks.Duration `yaml:"debounce"`
	MaxHashBytes Size            `yaml:"max_hash_bytes"`
	Allow        []ListEntry     `yaml:"allow"`
	Deny         []ListEntry     `yaml:"deny"`
	// Action for files found in watched folders: alert (default) or
	// quarantine. A deny entry may override it.
	Action string `yaml:"action"`
	// Kill denied running processes.
	Kill bool `yaml:"kill"`
	// Processes, Software, Files switch the sources on and off (all
	// default true).
	Processes *bool `yaml:"processes"`
	Software  *bool `yaml:"software"`
	Files     *bool `yaml:"files"`
	// ReportUnapproved: report executables in watched folders that match
	// no list (default true). Processes and installed software are only
	// ever reported when denied.
	ReportUnapproved *bool `yaml:"report_unapproved"`
}

// ListEntry is one allow or deny entry. Every field given must match
// (AND); at least one of sha256, name, path and signer is required.
type ListEntry struct {
	SHA256 string   `yaml:"sha256"`
	Name   GlobList `yaml:"name"`
	Path   GlobList `yaml:"path"`
	Signer GlobList `yaml:"signer"`
	// OS limits the entry to some operating systems (windows, linux, darwin).
	OS       []string `yaml:"os"`
	Category string   `yaml:"category"` // deny only
	Severity string   `yaml:"severity"` // deny only
	Action   string   `yaml:"action"`   // deny only: alert | quarantine
	Reason   string   `yaml:"reason"`   // required
}

// GlobList is one glob or a list of globs.
type GlobList []string

// UnmarshalYAML accepts a scalar or a sequence of scalars.
func (g *GlobList) UnmarshalYAML(n *yaml.Node) error {
	switch n.Kind {
	case yaml.ScalarNode:
		*g = GlobList{n.Value}
		return nil
	case yaml.SequenceNode:
		out := make(GlobList, 0, len(n.Content))
		for _, c := range n.Content {
			if c.Kind != yaml.ScalarNode {
				return checks.ParamError(c, "expected a glob string")
			}
			out = append(out, c.Value)
		}
		*g = out
		return nil
	}
	return checks.ParamError(n, "expected a glob or a list of globs")
}

// Size is a byte count: an integer or a string with a unit (KiB, MiB, GiB,
// KB, MB, GB).
type Size int64

// UnmarshalYAML implements yaml.Unmarshaler.
func (s *Size) UnmarshalYAML(n *yaml.Node) error {
	v, err := parseSize(n.Value)
	if err != nil || n.Kind != yaml.ScalarNode {
		return checks.ParamError(n, "bad size %q (use bytes or e.g. 256MiB)", n.Value)
	}
	*s = Size(v)
	return nil
}

func parseSize(s string) (int64, error) {
	s = strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suf string
		m   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}} {
		if v, ok := strings.CutSuffix(s, u.suf); ok {
			s, mult = strings.TrimSpace(v), u.m
			break
		}
	}
	n, err := strconv.ParseInt(s, 10, 64)
	if err != nil || n <= 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size")
	}
	return n * mult, nil
}

var (
	categoryRe = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	sha256Re   = regexp.MustCompile(`^[0-9a-fA-F]{64}$`)
	winAbsRe   = regexp.MustCompile(`^([A-Za-z]:[\\/]|\\\\)`)
	knownOS    = map[string]bool{"windows": true, "linux": true, "darwin": true}
)

// config is a rule's validated params with defaults applied.
type config struct {
	rule *rules.Rule
	// quarantine and log come from the Check (see Check.compile).
	quarantine       *Store
	log              *slog.Logger
	paths            []string // globs, for this OS
	recursive        bool
	maxDepth         int
	debounce         time.Duration
	maxHash          int64
	allow, deny      []entry
	action           string
	kill             bool
	processes        bool
	software         bool
	files            bool
	reportUnapproved bool
}

// entry is a compiled ListEntry.
type entry struct {
	ListEntry
	list     string // "allow" or "deny"
	index    int
	severity rules.Severity
	foldPath bool // case-insensitive path globs
}

// String names the entry in findings, e.g. `deny[2] name=tor*`.
func (e *entry) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s[%d]", e.list, e.index)
	if e.SHA256 != "" {
		fmt.Fprintf(&b, " sha256=%s", e.SHA256)
	}
	if len(e.Name) > 0 {
		fmt.Fprintf(&b, " name=%s", strings.Join(e.Name, ","))
	}
	if len(e.Path) > 0 {
		fmt.Fprintf(&b, " path=%s", strings.Join(e.Path, ","))
	}
	if len(e.Signer) > 0 {
		fmt.Fprintf(&b, " signer=%s", strings.Join(e.Signer, ","))
	}
	return b.String()
}

// parseConfig decodes and validates params; errors carry positions.
func parseConfig(params *yaml.Node, goos string) (*config, error) {
	// Scalars with their own syntax are checked first so that errors point
	// at the value (DecodeParams reports custom decoders' errors at params).
	if n := nodeAt(params, "max_hash_bytes"); params != nil && n != params {
		if _, err := parseSize(n.Value); err != nil || n.Kind != yaml.ScalarNode {
			return nil, checks.ParamError(n, "bad size %q (use bytes or e.g. 256MiB)", n.Value)
		}
	}
	if n := nodeAt(params, "debounce"); params != nil && n != params {
		if _, err := checks.ParseDuration(n.Value); err != nil || n.Kind != yaml.ScalarNode {
			return nil, checks.ParamError(n, "bad debounce %q (use e.g. 500ms)", n.Value)
		}
	}
	var p Params
	if err := checks.DecodeParams(params, &p); err != nil {
		return nil, err
	}
	at := func(keys ...any) *yaml.Node { return nodeAt(params, keys...) }
	c := &config{
		recursive:        p.Recursive,
		maxDepth:         p.MaxDepth,
		debounce:         time.Duration(p.Debounce),
		maxHash:          int64(p.MaxHashBytes),
		action:           p.Action,
		kill:             p.Kill,
		processes:        p.Processes == nil || *p.Processes,
		software:         p.Software == nil || *p.Software,
		files:            p.Files == nil || *p.Files,
		reportUnapproved: p.ReportUnapproved == nil || *p.ReportUnapproved,
	}
	if c.debounce == 0 {
		c.debounce = DefaultDebounce
	} else if c.debounce < 10*time.Millisecond || c.debounce > time.Minute {
		return nil, checks.ParamError(at("debounce"), "debounce must be between 10ms and 1m")
	}
	if c.maxHash == 0 {
		c.maxHash = DefaultMaxHashBytes
	}
	switch {
	case p.MaxDepth < 0 || p.MaxDepth > MaxMaxDepth:
		return nil, checks.ParamError(at("max_depth"), "max_depth must be between 1 and %d", MaxMaxDepth)
	case p.MaxDepth > 0 && !p.Recursive:
		return nil, checks.ParamError(at("max_depth"), "max_depth needs recursive: true")
	case p.Recursive && p.MaxDepth == 0:
		c.maxDepth = DefaultMaxDepth
	}
	switch p.Action {
	case "":
		c.action = "alert"
	case "alert", "quarantine":
	default:
		return nil, checks.ParamError(at("action"), "action must be alert or quarantine, not %q", p.Action)
	}
	for _, k := range []string{"paths", "extra_paths"} {
		list := p.Paths
		if k == "extra_paths" {
			list = p.ExtraPaths
		}
		for i, g := range list {
			if !strings.HasPrefix(g, "/") && !winAbsRe.MatchString(g) {
				return nil, checks.ParamError(at(k, i), "path %q must be absolute", g)
			}
			if _, err := path.Match(strings.ReplaceAll(g, `\`, "/"), ""); err != nil {
				return nil, checks.ParamError(at(k, i), "bad glob %q", g)
			}
			if isAbsFor(g, goos) {
				c.paths = append(c.paths, g)
			}
		}
	}
	if p.Paths == nil {
		c.paths = append(defaultPaths(), c.paths...)
	}
	fold := goos == "windows" || goos == "darwin"
	for _, list := range []string{"allow", "deny"} {
		src := p.Allow
		if list == "deny" {
			src = p.Deny
		}
		for i, le := range src {
			e, err := compileEntry(le, list, i, fold, func(keys ...any) *yaml.Node {
				return at(append([]any{list, i}, keys...)...)
			})
			if err != nil {
				return nil, err
			}
			if !e.appliesTo(goos) {
				continue
			}
			if list == "allow" {
				c.allow = append(c.allow, e)
			} else {
				c.deny = append(c.deny, e)
			}
		}
	}
	return c, nil
}

func compileEntry(le ListEntry, list string, i int, fold bool, at func(keys ...any) *yaml.Node) (entry, error) {
	e := entry{ListEntry: le, list: list, index: i, foldPath: fold}
	if le.SHA256 == "" && len(le.Name) == 0 && len(le.Path) == 0 && len(le.Signer) == 0 {
		return e, checks.ParamError(at(), "%s entry needs at least one of sha256, name, path, signer", list)
	}
	if le.SHA256 != "" {
		if !sha256Re.MatchString(le.SHA256) {
			return e, checks.ParamError(at("sha256"), "sha256 must be 64 hex digits")
		}
		e.SHA256 = strings.ToLower(le.SHA256)
	}
	for _, f := range []struct {
		key   string
		globs GlobList
	}{{"name", le.Name}, {"path", le.Path}, {"signer", le.Signer}} {
		for j, g := range f.globs {
			if g == "" {
				return e, checks.ParamError(at(f.key), "empty %s glob", f.key)
			}
			if _, err := path.Match(strings.ReplaceAll(g, `\`, "/"), ""); err != nil {
				n := at(f.key, j)
				if n == nil || n.Kind != yaml.ScalarNode {
					n = at(f.key)
				}
				return e, checks.ParamError(n, "bad %s glob %q", f.key, g)
			}
		}
	}
	for j, o := range le.OS {
		if !knownOS[o] {
			return e, checks.ParamError(at("os", j), "os must be windows, linux or darwin, not %q", o)
		}
	}
	if strings.TrimSpace(le.Reason) == "" {
		return e, checks.ParamError(at(), "%s entry needs a reason", list)
	}
	if list == "allow" {
		for _, k := range []string{"category", "severity", "action"} {
			if n := at(k); n != nil && n != at() {
				return e, checks.ParamError(n, "%s only applies to deny entries", k)
			}
		}
		return e, nil
	}
	if le.Category != "" && !categoryRe.MatchString(le.Category) {
		return e, checks.ParamError(at("category"), "category must match [a-z0-9_-]{1,64}")
	}
	if le.Severity != "" {
		s, ok := rules.ParseSeverity(le.Severity)
		if !ok {
			return e, checks.ParamError(at("severity"), "severity must be info, low, medium, high or critical")
		}
		e.severity = s
	}
	switch le.Action {
	case "", "alert", "quarantine":
	default:
		return e, checks.ParamError(at("action"), "action must be alert or quarantine, not %q", le.Action)
	}
	return e, nil
}

func (e *entry) appliesTo(goos string) bool {
	if len(e.OS) == 0 {
		return true
	}
	for _, o := range e.OS {
		if o == goos {
			return true
		}
	}
	return false
}

// isAbsFor reports whether glob g is an absolute path on goos.
func isAbsFor(g, goos string) bool {
	if goos == "windows" {
		return winAbsRe.MatchString(g)
	}
	return strings.HasPrefix(g, "/")
}

// nodeAt finds the node at keys (mapping keys as strings, sequence indexes
// as ints) under n, returning the deepest node found (n itself if nothing
// matches), so errors point as close as possible to the problem.
func nodeAt(n *yaml.Node, keys ...any) *yaml.Node {
	cur := n
	if cur == nil {
		return &yaml.Node{}
	}
	for _, k := range keys {
		var next *yaml.Node
		switch k := k.(type) {
		case string:
			if cur.Kind == yaml.MappingNode {
				for i := 0; i+1 < len(cur.Content); i += 2 {
					if cur.Content[i].Value == k {
						next = cur.Content[i+1]
						break
					}
				}
			}
		case int:
			if cur.Kind == yaml.SequenceNode && k < len(cur.Content) {
				next = cur.Content[k]
			}
		}
		if next == nil {
			return cur
		}
		cur = next
	}
	return cur
}

// currentOS is runtime.GOOS; a variable so tests can check other OSes' lists.
var currentOS = runtime.GOOS
