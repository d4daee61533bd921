package rules

import (
	"bytes"
	"fmt"
	"io"
	"regexp"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"gopkg.in/yaml.v3"
)

const (
	maxErrorsPerFile = 100
	maxInterval      = 30 * 24 * time.Hour
	maxQuoted        = 64 // runes of user text quoted in messages
)

var (
	idRE       = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	categoryRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	hhmmRE     = regexp.MustCompile(`^([01][0-9]|2[0-3]):([0-5][0-9])$`)
	yamlLineRE = regexp.MustCompile(`(?s)^yaml: line (\d+): (.*)$`)
)

var dayNames = map[string]time.Weekday{
	"sun": time.Sunday, "mon": time.Monday, "tue": time.Tuesday, "wed": time.Wednesday,
	"thu": time.Thursday, "fri": time.Friday, "sat": time.Saturday,
}

// parsed is a valid rule plus where its id was written (for duplicate reports).
type parsed struct {
	rule  Rule
	idPos Pos
}

// ParseFile parses and validates the rule documents of one file. name is
// used for positions only. kinds validates the check kinds and their params;
// if kinds is nil only the structure is validated and any non-empty check
// is accepted. Ids must be unique within the file. On any error the returned
// rules are nil.
func ParseFile(name string, data []byte, kinds Kinds) ([]Rule, Errors) {
	prs, errs := parseFile(name, data, kinds)
	seen := make(map[string]Pos, len(prs))
	var rules []Rule
	for _, pr := range prs {
		if first, ok := seen[pr.rule.ID]; ok {
			errs = append(errs, dupError(pr, first))
			continue
		}
		seen[pr.rule.ID] = pr.idPos
		rules = append(rules, pr.rule)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return rules, nil
}

func dupError(pr parsed, first Pos) Error {
	return Error{Pos: pr.idPos, Msg: fmt.Sprintf("duplicate id %s (first defined at %s:%d)", quote(pr.rule.ID), first.File, first.Line)}
}

// collector accumulates the errors of one file, up to maxErrorsPerFile.
type collector struct {
	file string
	errs Errors
	full bool
}

func (c *collector) addAt(line, col int, format string, args ...any) {
	if c.full {
		return
	}
	if line < 1 {
		line = 1
	}
	if col < 1 {
		col = 1
	}
	if len(c.errs) >= maxErrorsPerFile {
		c.errs = append(c.errs, Error{Pos: Pos{c.file, line, col}, Msg: "too many errors; stopping"})
		c.full = true
		return
	}
	c.errs = append(c.errs, Error{Pos: Pos{c.file, line, col}, Msg: fmt.Sprintf(format, args...)})
}

func (c *collector) add(n *yaml.Node, format string, args ...any) {
	c.addAt(n.Line, n.Column, format, args...)
}

func (c *collector) pos(n *yaml.Node) Pos {
	p := Pos{File: c.file, Line: n.Line, Col: n.Column}
	if p.Line < 1 {
		p.Line = 1
	}
	if p.Col < 1 {
		p.Col = 1
	}
	return p
}

// parseFile returns the valid rules of a file (even if other documents have
// errors) and all errors. Intra-file duplicate ids are not checked here.
func parseFile(name string, data []byte, kinds Kinds) (out []parsed, errs Errors) {
	c := &collector{file: name}
	if len(data) > MaxFileSize {
		c.addAt(1, 1, "file is %d bytes; the limit is %d", len(data), MaxFileSize)
		return nil, c.errs
	}
	if line, col, msg, ok := checkText(data); !ok {
		c.addAt(line, col, "%s", msg)
		return nil, c.errs
	}
	defer func() {
		if r := recover(); r != nil {
			out = nil
			errs = append(c.errs, Error{Pos: Pos{name, 1, 1}, Msg: fmt.Sprintf("internal error while parsing: %s", quote(fmt.Sprint(r)))})
		}
	}()
	dec := yaml.NewDecoder(bytes.NewReader(data))
	for !c.full {
		var doc yaml.Node
		err := dec.Decode(&doc)
		if err == io.EOF {
			break
		}
		if err != nil {
			yamlError(c, err, data)
			break
		}
		if len(doc.Content) == 0 {
			continue
		}
		before := len(c.errs)
		checkTree(c, &doc)
		if len(c.errs) > before {
			// Never interpret (or hand to Kinds) a tree with aliases,
			// anchors, excessive depth or duplicate keys.
			continue
		}
		root := doc.Content[0]
		if root.Kind == yaml.ScalarNode && root.ShortTag() == "!!null" {
			continue // empty document, e.g. a trailing "---"
		}
		if pr, ok := parseRule(c, root, kinds); ok {
			out = append(out, pr)
		}
	}
	return out, c.errs
}

// checkText verifies that data is valid UTF-8 without characters YAML
// forbids, returning the position of the first bad byte.
func checkText(data []byte) (line, col int, msg string, ok bool) {
	line, col = 1, 1
	for i := 0; i < len(data); {
		b := data[i]
		if b < utf8.RuneSelf {
			switch {
			case b == '\n':
				line, col = line+1, 1
				i++
				continue
			case b == '\r':
				if i+1 >= len(data) || data[i+1] != '\n' {
					line, col = line+1, 1
				}
				i++
				continue
			case b == '\t' || (b >= 0x20 && b < 0x7f):
			default:
				return line, col, fmt.Sprintf("control character U+%04X is not allowed", b), false
			}
			i++
			col++
			continue
		}
		r, size := utf8.DecodeRune(data[i:])
		if r == utf8.RuneError && size <= 1 {
			return line, col, fmt.Sprintf("invalid UTF-8 (byte 0x%02X)", b), false
		}
		if (r >= 0x80 && r < 0xA0 && r != 0x85) || r == 0xFFFE || r == 0xFFFF {
			return line, col, fmt.Sprintf("control character U+%04X is not allowed", r), false
		}
		i += size
		col++
	}
	return 0, 0, "", true
}

// yamlError converts an error from yaml.v3 into a positioned Error.
func yamlError(c *collector, err error, data []byte) {
	// Deeply nested input often fails to parse (or hits yaml.v3's own depth
	// limit, which has no position); report the nesting, which is the more
	// useful message, when it can be located.
	if line, col, ok := locateDeepNesting(data); ok {
		c.addAt(line, col, "nesting deeper than %d levels", MaxDepth)
		return
	}
	msg := err.Error()
	if m := yamlLineRE.FindStringSubmatch(msg); m != nil {
		line, _ := strconv.Atoi(m[1])
		if parserProblems[m[2]] {
			// yaml.v3 reports parser (not scanner) errors with a
			// 0-based line; "line 0" is omitted and handled below.
			line++
		}
		if n := bytes.Count(data, []byte("\n")) + 1; line > n {
			line = n
		}
		c.addAt(line, 1, "invalid YAML: %s", m[2])
		return
	}
	msg = strings.TrimPrefix(msg, "yaml: ")
	if strings.Contains(msg, "exceeded max depth") {
		c.addAt(1, 1, "nesting deeper than %d levels", MaxDepth)
		return
	}
	c.addAt(1, 1, "invalid YAML: %s", msg)
}

// parserProblems are the messages of yaml.v3 parser errors, whose "line N"
// is 0-based (scanner errors are 1-based).
var parserProblems = map[string]bool{
	"did not find expected ',' or ']'":       true,
	"did not find expected ',' or '}'":       true,
	"did not find expected '-' indicator":    true,
	"did not find expected <document start>": true,
	"did not find expected <stream-start>":   true,
	"did not find expected key":              true,
	"did not find expected node content":     true,
	"found duplicate %TAG directive":         true,
	"found duplicate %YAML directive":        true,
	"found incompatible YAML document":       true,
	"found undefined tag handle":             true,
}

// locateDeepNesting makes a best effort to find where flow collections and
// compact block sequences nest deeper than MaxDepth. It is only used when
// yaml.v3 has already rejected the input, so it may be approximate.
func locateDeepNesting(data []byte) (line, col int, found bool) {
	line, col = 1, 1
	depth := 0
	var quote byte
	comment, lineStart := false, true
	block := 0
	for i := 0; i < len(data); i++ {
		b := data[i]
		if b == '\n' {
			line, col = line+1, 1
			comment, lineStart, block = false, true, 0
			if quote == '\'' || quote == '"' {
				lineStart = false
			}
			continue
		}
		switch {
		case comment:
		case quote != 0:
			if b == '\\' && quote == '"' {
				i++
				col++
			} else if b == quote {
				quote = 0
			}
		case lineStart && (b == ' ' || b == '\t'):
		case lineStart && (b == '-' || b == '?') && i+1 < len(data) && (data[i+1] == ' ' || data[i+1] == '\t'):
			block++
			if depth+block > MaxDepth {
				return line, col, true
			}
		case b == '#' && (i == 0 || data[i-1] == ' ' || data[i-1] == '\t'):
			comment = true
		case b == '\'' || b == '"':
			quote = b
			lineStart = false
		case b == '[' || b == '{':
			lineStart = false
			depth++
			if depth+block > MaxDepth {
				return line, col, true
			}
		case b == ']' || b == '}':
			lineStart = false
			if depth > 0 {
				depth--
			}
		default:
			lineStart = false
		}
		if b < utf8.RuneSelf || utf8.RuneStart(b) {
			col++
		}
	}
	return 0, 0, false
}

// checkTree walks the document without recursion, rejecting anchors,
// aliases, merge keys, duplicate mapping keys and nesting deeper than
// MaxDepth. It never follows alias pointers.
func checkTree(c *collector, doc *yaml.Node) {
	type item struct {
		n     *yaml.Node
		depth int
	}
	stack := []item{{doc, 0}}
	for len(stack) > 0 && !c.full {
		it := stack[len(stack)-1]
		stack = stack[:len(stack)-1]
		n, depth := it.n, it.depth
		if n == nil {
			continue
		}
		if n.Kind == yaml.AliasNode {
			c.add(n, "YAML aliases are not allowed in rule files (*%s)", quoteRaw(n.Value))
			continue
		}
		if n.Anchor != "" {
			c.add(n, "YAML anchors are not allowed in rule files (&%s)", quoteRaw(n.Anchor))
		}
		if n.Kind == yaml.MappingNode || n.Kind == yaml.SequenceNode {
			depth++
			if depth > MaxDepth {
				c.add(n, "nesting deeper than %d levels", MaxDepth)
				continue
			}
		}
		if n.Kind == yaml.MappingNode {
			checkKeys(c, n)
		}
		for i := len(n.Content) - 1; i >= 0; i-- {
			stack = append(stack, item{n.Content[i], depth})
		}
	}
}

func checkKeys(c *collector, m *yaml.Node) {
	if len(m.Content)%2 != 0 {
		c.add(m, "malformed mapping")
		return
	}
	var seen map[string]*yaml.Node
	for i := 0; i < len(m.Content); i += 2 {
		k := m.Content[i]
		if k.Kind != yaml.ScalarNode {
			continue
		}
		tag := k.ShortTag()
		if tag == "!!merge" {
			c.add(k, "merge keys (<<) are not allowed in rule files")
			continue
		}
		key := tag + "\x00" + k.Value
		if seen == nil {
			seen = make(map[string]*yaml.Node)
		}
		if first, ok := seen[key]; ok {
			c.add(k, "duplicate key %s (first at line %d)", quote(k.Value), first.Line)
			continue
		}
		seen[key] = k
	}
}

// field is a key/value pair of a mapping.
type field struct{ key, val *yaml.Node }

// fields checks that m is a mapping with string keys from allowed and returns
// its pairs by key. what names the mapping in messages.
func fields(c *collector, m *yaml.Node, what string, allowed ...string) (map[string]field, bool) {
	if m.Kind != yaml.MappingNode {
		c.add(m, "%s must be a mapping, not %s", what, describe(m))
		return nil, false
	}
	out := make(map[string]field, len(m.Content)/2)
	ok := true
	for i := 0; i+1 < len(m.Content); i += 2 {
		k, v := m.Content[i], m.Content[i+1]
		if k.Kind != yaml.ScalarNode || k.ShortTag() != "!!str" {
			c.add(k, "keys in %s must be strings, not %s", what, describe(k))
			ok = false
			continue
		}
		known := false
		for _, a := range allowed {
			if a == k.Value {
				known = true
				break
			}
		}
		if !known {
			c.add(k, "unknown key %s in %s", quote(k.Value), what)
			ok = false
			continue
		}
		out[k.Value] = field{k, v}
	}
	return out, ok
}

func isNull(n *yaml.Node) bool {
	return n.Kind == yaml.ScalarNode && n.ShortTag() == "!!null"
}

// describe names a node's type for messages.
func describe(n *yaml.Node) string {
	switch n.Kind {
	case yaml.MappingNode:
		return "a mapping"
	case yaml.SequenceNode:
		return "a list"
	case yaml.AliasNode:
		return "an alias"
	case yaml.DocumentNode:
		return "a document"
	case yaml.ScalarNode:
		switch t := n.ShortTag(); t {
		case "!!str":
			return "a string"
		case "!!int":
			return "an integer"
		case "!!float":
			return "a number"
		case "!!bool":
			return "a boolean"
		case "!!null":
			return "null"
		default:
			return "a value tagged " + quoteRaw(t)
		}
	}
	return "an unknown node"
}

// str returns the value of a string scalar, reporting other types.
func str(c *collector, f field) (string, bool) {
	if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() != "!!str" {
		c.add(f.val, "%s must be a string, not %s", f.key.Value, describe(f.val))
		return "", false
	}
	return f.val.Value, true
}

// text returns a non-empty free-text value; plain numbers and booleans are
// accepted as text.
func text(c *collector, f field) (string, bool) {
	v := f.val
	if v.Kind != yaml.ScalarNode || isNull(v) {
		c.add(v, "%s must be text, not %s", f.key.Value, describe(v))
		return "", false
	}
	switch v.ShortTag() {
	case "!!str", "!!int", "!!float", "!!bool":
	default:
		c.add(v, "%s must be text, not %s", f.key.Value, describe(v))
		return "", false
	}
	s := strings.TrimSpace(v.Value)
	if s == "" {
		c.add(v, "%s must not be empty", f.key.Value)
		return "", false
	}
	return s, true
}

// strList returns the strings of a list (null = empty).
func strList(c *collector, f field, check func(*yaml.Node, string) bool) ([]string, bool) {
	v := f.val
	if isNull(v) {
		return nil, true
	}
	if v.Kind != yaml.SequenceNode {
		c.add(v, "%s must be a list, not %s", f.key.Value, describe(v))
		return nil, false
	}
	ok := true
	out := make([]string, 0, len(v.Content))
	seen := make(map[string]bool, len(v.Content))
	for _, e := range v.Content {
		if e.Kind != yaml.ScalarNode || e.ShortTag() != "!!str" {
			c.add(e, "%s entries must be strings, not %s", f.key.Value, describe(e))
			ok = false
			continue
		}
		if !check(e, e.Value) {
			ok = false
			continue
		}
		if seen[e.Value] {
			c.add(e, "duplicate %s entry %s", f.key.Value, quote(e.Value))
			ok = false
			continue
		}
		seen[e.Value] = true
		out = append(out, e.Value)
	}
	return out, ok
}

var ruleKeys = []string{"apiVersion", "id", "version", "name", "rationale", "severity", "category", "check", "enabled", "scope", "schedule", "params"}

// parseRule validates one rule document's root node.
func parseRule(c *collector, root *yaml.Node, kinds Kinds) (parsed, bool) {
	pr := parsed{rule: Rule{Version: 1, Enabled: true, Pos: c.pos(root)}}
	r := &pr.rule
	fs, ok := fields(c, root, "rule", ruleKeys...)
	if fs == nil {
		return pr, false
	}
	for _, k := range []string{"apiVersion", "id", "name", "rationale", "severity", "category", "check"} {
		if _, present := fs[k]; !present {
			c.add(root, "missing required key %s", quote(k))
			ok = false
		}
	}
	if f, present := fs["apiVersion"]; present {
		if s, good := str(c, f); !good {
			ok = false
		} else if s != APIVersion {
			c.add(f.val, "unsupported apiVersion %s (want %q)", quote(s), APIVersion)
			ok = false
		}
	}
	if f, present := fs["id"]; present {
		if s, good := str(c, f); !good {
			ok = false
		} else if !idRE.MatchString(s) {
			c.add(f.val, "invalid id %s: must match [a-z0-9][a-z0-9._-]{0,63}", quote(s))
			ok = false
		} else {
			r.ID, pr.idPos = s, c.pos(f.val)
		}
	}
	if f, present := fs["version"]; present {
		var v int64
		if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() != "!!int" || f.val.Decode(&v) != nil || v < 1 || v > 1<<31-1 {
			c.add(f.val, "version must be a positive integer")
			ok = false
		} else {
			r.Version = int(v)
		}
	}
	if f, present := fs["name"]; present {
		var good bool
		if r.Name, good = text(c, f); !good {
			ok = false
		}
	}
	if f, present := fs["rationale"]; present {
		var good bool
		if r.Rationale, good = text(c, f); !good {
			ok = false
		}
	}
	if f, present := fs["severity"]; present {
		if s, good := str(c, f); !good {
			ok = false
		} else if sev, known := ParseSeverity(s); !known {
			c.add(f.val, "unknown severity %s (want info, low, medium, high or critical)", quote(s))
			ok = false
		} else {
			r.Severity = sev
		}
	}
	if f, present := fs["category"]; present {
		if s, good := str(c, f); !good {
			ok = false
		} else if !categoryRE.MatchString(s) {
			c.add(f.val, "invalid category %s: must match [a-z0-9_-]{1,64}", quote(s))
			ok = false
		} else {
			r.Category = s
		}
	}
	checkKnown := false
	if f, present := fs["check"]; present {
		if s, good := str(c, f); !good {
			ok = false
		} else if s == "" {
			c.add(f.val, "check must not be empty")
			ok = false
		} else if kinds != nil && !safeKnown(kinds, s) {
			c.add(f.val, "unknown check kind %s", quote(s))
			ok = false
		} else {
			r.Check, checkKnown = s, true
		}
	}
	if f, present := fs["enabled"]; present {
		var b bool
		if f.val.Kind != yaml.ScalarNode || f.val.ShortTag() != "!!bool" || f.val.Decode(&b) != nil {
			c.add(f.val, "enabled must be true or false, not %s", describe(f.val))
			ok = false
		} else {
			r.Enabled = b
		}
	}
	if f, present := fs["scope"]; present && !isNull(f.val) {
		if !parseScope(c, f.val, &r.Scope) {
			ok = false
		}
	}
	if f, present := fs["schedule"]; present && !isNull(f.val) {
		if !parseSchedule(c, f.val, &r.Schedule) {
			ok = false
		}
	}
	paramsPos, paramsOK := Pos{}, true
	if f, present := fs["params"]; present {
		paramsPos = c.pos(f.key)
		if f.val.Kind == yaml.MappingNode {
			r.Params = f.val
		} else if !isNull(f.val) {
			c.add(f.val, "params must be a mapping, not %s", describe(f.val))
			ok, paramsOK = false, false
		}
	} else if f, present := fs["check"]; present {
		paramsPos = c.pos(f.val)
	}
	if checkKnown && kinds != nil && paramsOK {
		if err := safeValidate(kinds, r.Check, r.Params); err != nil {
			if es := kindError(err, paramsPos); len(es) > 0 {
				for _, e := range es {
					if c.full {
						break
					}
					c.addAt(e.Line, e.Col, "%s", e.Msg)
					if e.File != c.file {
						c.errs[len(c.errs)-1].File = e.File
					}
				}
				ok = false
			}
		}
	}
	return pr, ok
}

func safeKnown(kinds Kinds, kind string) (known bool) {
	defer func() {
		if recover() != nil {
			known = false
		}
	}()
	return kinds.Known(kind)
}

func safeValidate(kinds Kinds, kind string, params *yaml.Node) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("internal error in check %s: %s", quote(kind), quote(fmt.Sprint(r)))
		}
	}()
	return kinds.ValidateParams(kind, params)
}

func parseScope(c *collector, n *yaml.Node, s *Scope) bool {
	fs, ok := fields(c, n, "scope", "groups", "roles")
	if fs == nil {
		return false
	}
	if f, present := fs["groups"]; present {
		var good bool
		s.Groups, good = strList(c, f, func(e *yaml.Node, v string) bool {
			if v == "" || utf8.RuneCountInString(v) > 64 || strings.TrimSpace(v) != v {
				c.add(e, "invalid group %s: must be 1-64 characters without leading or trailing spaces", quote(v))
				return false
			}
			return true
		})
		ok = ok && good
	}
	if f, present := fs["roles"]; present {
		var good bool
		s.Roles, good = strList(c, f, func(e *yaml.Node, v string) bool {
			if !matchList(Roles, v) {
				c.add(e, "unknown role %s (want pupil, staff, headteacher or guest)", quote(v))
				return false
			}
			return true
		})
		ok = ok && good
	}
	return ok
}

func parseSchedule(c *collector, n *yaml.Node, s *Schedule) bool {
	fs, ok := fields(c, n, "schedule", "interval", "windows")
	if fs == nil {
		return false
	}
	if f, present := fs["interval"]; present {
		if v, good := str(c, f); !good {
			ok = false
		} else if d, err := time.ParseDuration(v); err != nil {
			c.add(f.val, "invalid interval %s: want a duration such as 30m or 24h", quote(v))
			ok = false
		} else if d < time.Second || d > maxInterval {
			c.add(f.val, "interval %s out of range: must be between 1s and 720h (30 days)", quote(v))
			ok = false
		} else {
			s.Interval = d
		}
	}
	if f, present := fs["windows"]; present {
		switch {
		case f.val.Kind != yaml.SequenceNode:
			c.add(f.val, "windows must be a list, not %s", describe(f.val))
			ok = false
		case len(f.val.Content) == 0:
			c.add(f.val, "windows must not be empty (omit it to make the rule always active)")
			ok = false
		default:
			for _, wn := range f.val.Content {
				w, good := parseWindow(c, wn)
				if good {
					s.Windows = append(s.Windows, w)
				}
				ok = ok && good
			}
		}
	}
	return ok
}

func parseWindow(c *collector, n *yaml.Node) (Window, bool) {
	var w Window
	fs, ok := fields(c, n, "window", "days", "from", "to")
	if fs == nil {
		return w, false
	}
	for _, k := range []string{"from", "to"} {
		if _, present := fs[k]; !present {
			c.add(n, "missing required key %s in window", quote(k))
			ok = false
		}
	}
	if f, present := fs["days"]; present {
		if f.val.Kind == yaml.SequenceNode && len(f.val.Content) == 0 {
			c.add(f.val, "days must not be empty (omit it for every day)")
			ok = false
		} else if isNull(f.val) {
			c.add(f.val, "days must be a list, not null (omit it for every day)")
			ok = false
		} else {
			days, good := strList(c, f, func(e *yaml.Node, v string) bool {
				if _, known := dayNames[v]; !known {
					c.add(e, "unknown day %s (want mon, tue, wed, thu, fri, sat or sun)", quote(v))
					return false
				}
				return true
			})
			ok = ok && good
			for _, d := range days {
				w.Days[dayNames[d]] = true
			}
		}
	} else {
		for i := range w.Days {
			w.Days[i] = true
		}
	}
	times := map[string]*int{"from": &w.From, "to": &w.To}
	for _, k := range []string{"from", "to"} {
		f, present := fs[k]
		if !present {
			continue
		}
		v, good := str(c, f)
		if !good {
			ok = false
			continue
		}
		if k == "to" && v == "24:00" {
			w.To = 24 * 60
			continue
		}
		m := hhmmRE.FindStringSubmatch(v)
		if m == nil {
			c.add(f.val, "invalid time %s: want HH:MM (24-hour, quoted)", quote(v))
			ok = false
			continue
		}
		h, _ := strconv.Atoi(m[1])
		mi, _ := strconv.Atoi(m[2])
		*times[k] = h*60 + mi
	}
	if ok && w.From == w.To {
		c.add(fs["to"].val, "window from and to must differ")
		ok = false
	}
	return w, ok
}

// quote formats user text for messages: Go-quoted, truncated to maxQuoted runes.
func quote(s string) string {
	if utf8.RuneCountInString(s) > maxQuoted {
		r := []rune(s)
		return strconv.Quote(string(r[:maxQuoted])) + "..."
	}
	return strconv.Quote(s)
}

// quoteRaw is quote without the surrounding quotes unless needed.
func quoteRaw(s string) string {
	q := quote(s)
	if q == `"`+s+`"` && !strings.ContainsAny(s, " \t") {
		return s
	}
	return q
}
