package match

import (
	"bytes"
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"github.com/vigil-safeguarding/vigil/rules"
)

// Limits on keyword libraries and terms.
const (
	MaxLibrarySize = 4 << 20 // bytes per library or cases file
	MaxTermWords   = 8       // words in a term or an except phrase
	MaxGapWords    = 4       // words in a term with gap > 0
	MaxGap         = 3       // largest gap= value
	MinPrefixLen   = 5       // letters in the last word of a prefix term
	ContextWords   = 5       // words either side of a match searched for except= phrases
)

// Term is one keyword or phrase of a library.
type Term struct {
	Text     string // the term as written
	RuleID   string
	Category string
	Severity rules.Severity
	Gap      int      // extra words allowed between the words of a phrase (0-3)
	Except   []string // words or phrases that cancel a match within ContextWords words
	Exact    bool     // no leetspeak, lookalike, i/l-class or repeat folding
	Prefix   bool     // the last word may be a prefix of a text word
	// Help is what a help-seeking phrase of the library near the term does
	// (help=lower|suppress|none); HelpDefault takes the library's.
	Help      HelpAction
	Rationale string
	Pos       rules.Pos
}

// Library is one keyword list file.
type Library struct {
	RuleID, Category, Name, Lang string
	Severity                     rules.Severity
	Terms                        []Term
	File                         string
	// Help lists help-seeking phrases ("#! help: childline, how to help a
	// friend"): near a term, within ContextWords words, they lower its
	// severity by one level or suppress it, as HelpAction (default
	// HelpLower) or the term's help= option says.
	Help       []string
	HelpAction HelpAction
}

// HelpAction is what a help-seeking phrase near a term does.
type HelpAction uint8

// Help actions. HelpDefault on a term takes the library's action; on a
// library it means HelpLower.
const (
	HelpDefault  HelpAction = iota
	HelpLower               // the match is kept one severity level lower, and says why
	HelpSuppress            // no match
	HelpNone                // the phrase changes nothing for this term
)

// ParseHelpAction parses lower, suppress or none.
func ParseHelpAction(s string) (HelpAction, bool) {
	switch s {
	case "lower":
		return HelpLower, true
	case "suppress":
		return HelpSuppress, true
	case "none":
		return HelpNone, true
	}
	return HelpDefault, false
}

func (a HelpAction) String() string {
	switch a {
	case HelpLower:
		return "lower"
	case HelpSuppress:
		return "suppress"
	case HelpNone:
		return "none"
	}
	return "default"
}

// Case is one line of a test-case file: text that must (Positive) or must
// not produce a match from the library.
type Case struct {
	Text     string
	Positive bool
	Pos      rules.Pos
}

var (
	ruleIDRE   = regexp.MustCompile(`^[a-z0-9][a-z0-9._-]{0,63}$`)
	categoryRE = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	langRE     = regexp.MustCompile(`^[a-z]{2,3}(-[A-Za-z0-9]{2,8})*$`)
)

// ValidLang reports whether tag is a language tag as libraries write it
// in "#! lang:" (en, en-GB, cy, ur-Latn).
func ValidLang(tag string) bool { return langRE.MatchString(tag) }

type lineReader struct {
	name string
	data []byte
	line int
}

func (lr *lineReader) next() (string, bool) {
	if len(lr.data) == 0 {
		return "", false
	}
	lr.line++
	var l []byte
	if i := bytes.IndexByte(lr.data, '\n'); i >= 0 {
		l, lr.data = lr.data[:i], lr.data[i+1:]
	} else {
		l, lr.data = lr.data, nil
	}
	return strings.TrimSuffix(string(l), "\r"), true
}

// col converts a byte offset in a line to a 1-based rune column.
func col(line string, off int) int {
	if off > len(line) {
		off = len(line)
	}
	return utf8.RuneCountInString(line[:off]) + 1
}

func checkFile(name string, data []byte) (*lineReader, rules.Errors) {
	if len(data) > MaxLibrarySize {
		return nil, rules.Errors{{Pos: rules.Pos{File: name}, Msg: fmt.Sprintf("file is larger than %d bytes", MaxLibrarySize)}}
	}
	if !utf8.Valid(data) {
		return nil, rules.Errors{{Pos: rules.Pos{File: name}, Msg: "file is not valid UTF-8"}}
	}
	data = bytes.TrimPrefix(data, []byte("\uFEFF"))
	return &lineReader{name: name, data: data}, nil
}

// ParseLibrary parses a keyword library file. name is used in positions.
// On error it returns the library built from the valid lines together with
// every problem found; only a library returned with nil Errors is valid.
//
// Format (see docs/matcher.md):
//
//	#! rule: keywords-self-harm
//	#! category: self_harm
//	#! severity: high
//	#! name: Self-harm and suicide
//	# comment
//	TERM [; key=value | ; flag]...  # rationale (required)
func ParseLibrary(name string, data []byte) (*Library, rules.Errors) {
	lr, errs := checkFile(name, data)
	if errs != nil {
		return nil, errs
	}
	lib := &Library{File: name, Lang: "en"}
	add := func(line, c int, format string, args ...any) {
		errs = append(errs, rules.Error{Pos: rules.Pos{File: name, Line: line, Col: c}, Msg: fmt.Sprintf(format, args...)})
	}
	headers := map[string]int{}
	seen := map[string]int{} // normalised term → line
	sawTerm := false
	for {
		line, ok := lr.next()
		if !ok {
			break
		}
		trimmed := strings.TrimLeft(line, " \t")
		indent := len(line) - len(trimmed)
		switch {
		case trimmed == "" || strings.TrimSpace(trimmed) == "":
			continue
		case strings.HasPrefix(trimmed, "#!"):
			if sawTerm {
				add(lr.line, indent+1, "header directive after the first term (put #! lines at the top)")
				continue
			}
			parseHeader(lib, line, indent+2, lr.line, headers, add)
			continue
		case trimmed[0] == '#':
			continue
		}
		sawTerm = true
		t, ok := parseTermLine(line, indent, lr.line, name, add)
		if !ok {
			continue
		}
		key := termKey(t)
		if key == "" {
			add(lr.line, t.Pos.Col, "term %q has no letters or digits after normalisation", t.Text)
			continue
		}
		if prev, dup := seen[key]; dup {
			add(lr.line, t.Pos.Col, "duplicate term %q: same normalised form %q as line %d", t.Text, key, prev)
			continue
		}
		seen[key] = lr.line
		lib.Terms = append(lib.Terms, t)
	}
	for _, h := range []string{"rule", "category", "severity"} {
		if _, ok := headers[h]; !ok {
			add(1, 1, "missing header directive \"#! %s: ...\"", h)
		}
	}
	if lib.Name == "" {
		lib.Name = lib.RuleID
	}
	for i := range lib.Terms {
		t := &lib.Terms[i]
		t.RuleID, t.Category = lib.RuleID, lib.Category
		if t.Severity == 0 {
			t.Severity = lib.Severity
		}
	}
	if len(errs) == 0 {
		errs = nil
	}
	return lib, errs
}

func parseHeader(lib *Library, line string, off, ln int, seen map[string]int, add func(int, int, string, ...any)) {
	rest := line[off:]
	colon := strings.IndexByte(rest, ':')
	if colon < 0 {
		add(ln, col(line, off), "header directive must be \"#! key: value\"")
		return
	}
	key := strings.TrimSpace(rest[:colon])
	val := strings.TrimSpace(rest[colon+1:])
	keyCol := col(line, off+len(rest[:colon])-len(strings.TrimLeft(rest[:colon], " \t")))
	valCol := col(line, off+colon+1+(len(rest[colon+1:])-len(strings.TrimLeft(rest[colon+1:], " \t"))))
	if prev, dup := seen[key]; dup {
		add(ln, keyCol, "duplicate header %q (first on line %d)", key, prev)
		return
	}
	seen[key] = ln
	switch key {
	case "rule":
		if !ruleIDRE.MatchString(val) {
			add(ln, valCol, "invalid rule id %q (want lower-case letters, digits, '.', '_', '-'; at most 64)", val)
		}
		lib.RuleID = val
	case "category":
		if !categoryRE.MatchString(val) {
			add(ln, valCol, "invalid category %q (want lower-case letters, digits, '_', '-')", val)
		}
		lib.Category = val
	case "severity":
		s, ok := rules.ParseSeverity(val)
		if !ok {
			add(ln, valCol, "unknown severity %q (want info, low, medium, high or critical)", val)
		}
		lib.Severity = s
	case "name":
		if val == "" {
			add(ln, valCol, "empty name")
		}
		lib.Name = val
	case "lang":
		if !langRE.MatchString(val) {
			add(ln, valCol, "invalid language tag %q (want e.g. en, en-GB, cy)", val)
		}
		lib.Lang = val
	case "help":
		entries, msg := phraseList(val, "help")
		if msg != "" {
			add(ln, valCol, "%s", msg)
		}
		lib.Help = entries
	case "help-action":
		a, ok := ParseHelpAction(val)
		if !ok || a == HelpNone {
			add(ln, valCol, "unknown help-action %q (want lower or suppress)", val)
		}
		lib.HelpAction = a
	default:
		delete(seen, key)
		add(ln, keyCol, "unknown header %q (want rule, category, severity, name, lang, help or help-action)", key)
	}
}

// rationaleStart returns the index of the '#' that starts the rationale
// comment: the first '#' preceded by a space or tab, or -1.
func rationaleStart(line string, from int) int {
	for i := from + 1; i < len(line); i++ {
		if line[i] == '#' && (line[i-1] == ' ' || line[i-1] == '\t') {
			return i
		}
	}
	return -1
}

func parseTermLine(line string, indent, ln int, file string, add func(int, int, string, ...any)) (Term, bool) {
	t := Term{Pos: rules.Pos{File: file, Line: ln, Col: indent + 1}}
	h := rationaleStart(line, indent)
	body := line
	if h < 0 {
		add(ln, col(line, len(strings.TrimRight(line, " \t"))), "missing rationale comment: end the line with \"# why this term is listed\"")
		return t, false
	}
	body = line[:h]
	t.Rationale = strings.TrimSpace(line[h+1:])
	if t.Rationale == "" {
		add(ln, col(line, h), "empty rationale comment")
		return t, false
	}
	ok := true
	fields := strings.Split(body, ";")
	off := 0
	seenKeys := map[string]bool{}
	for fi, f := range fields {
		fOff := off
		off += len(f) + 1
		lead := len(f) - len(strings.TrimLeft(f, " \t"))
		f = strings.TrimSpace(f)
		c := col(line, fOff+lead)
		if fi == 0 {
			t.Text = f
			t.Pos.Col = c
			if f == "" {
				add(ln, c, "empty term")
				ok = false
			}
			continue
		}
		if f == "" {
			add(ln, c, "empty option (stray ';')")
			ok = false
			continue
		}
		key, val, hasVal := strings.Cut(f, "=")
		key = strings.TrimSpace(key)
		val = strings.TrimSpace(val)
		vc := c
		if hasVal {
			vc = col(line, fOff+lead+strings.IndexByte(f, '=')+1)
		}
		if seenKeys[key] {
			add(ln, c, "duplicate option %q", key)
			ok = false
			continue
		}
		seenKeys[key] = true
		switch key {
		case "severity":
			s, good := rules.ParseSeverity(val)
			if !good {
				add(ln, vc, "unknown severity %q (want info, low, medium, high or critical)", val)
				ok = false
			}
			t.Severity = s
		case "gap":
			g, err := strconv.Atoi(val)
			if err != nil || g < 0 || g > MaxGap {
				add(ln, vc, "invalid gap %q (want 0 to %d)", val, MaxGap)
				ok = false
			}
			t.Gap = g
		case "except":
			entries, msg := phraseList(val, "except")
			if msg != "" {
				add(ln, vc, "%s", msg)
				ok = false
				continue
			}
			t.Except = entries
		case "help":
			a, good := ParseHelpAction(val)
			if !good {
				add(ln, vc, "unknown help action %q (want lower, suppress or none)", val)
				ok = false
			}
			t.Help = a
		case "exact", "prefix":
			if hasVal {
				add(ln, vc, "option %q is a flag and takes no value", key)
				ok = false
				continue
			}
			if key == "exact" {
				t.Exact = true
			} else {
				t.Prefix = true
			}
		default:
			add(ln, c, "unknown option %q (want severity, gap, except, help, exact or prefix)", key)
			ok = false
		}
	}
	if !ok {
		return t, false
	}
	if err := checkTerm(&t); err != "" {
		add(ln, t.Pos.Col, "%s", err)
		return t, false
	}
	return t, true
}

// phraseList parses a comma-separated list of words or phrases (except=
// and #! help:), returning the entries or a message for the first bad one.
func phraseList(val, what string) ([]string, string) {
	if strings.TrimSpace(val) == "" {
		return nil, "empty " + what + " list"
	}
	var out []string
	for _, e := range strings.Split(val, ",") {
		e = strings.TrimSpace(e)
		switch n := len(termPieces(e)); {
		case e == "":
			return nil, "empty entry in " + what + " list"
		case n == 0:
			return nil, fmt.Sprintf("%s entry %q has no letters or digits", what, e)
		case n > MaxTermWords:
			return nil, fmt.Sprintf("%s entry %q has %d words (at most %d)", what, e, n, MaxTermWords)
		}
		out = append(out, e)
	}
	return out, ""
}

// checkTerm validates the shape of a term; it returns "" when valid.
func checkTerm(t *Term) string {
	pieces := termPieces(t.Text)
	switch {
	case len(pieces) == 0:
		return fmt.Sprintf("term %q has no letters or digits after normalisation", t.Text)
	case len(pieces) > MaxTermWords:
		return fmt.Sprintf("term %q has %d words (at most %d)", t.Text, len(pieces), MaxTermWords)
	case t.Gap < 0 || t.Gap > MaxGap:
		return fmt.Sprintf("gap %d out of range 0-%d", t.Gap, MaxGap)
	case t.Gap > 0 && len(pieces) < 2:
		return fmt.Sprintf("gap=%d needs a phrase of at least two words", t.Gap)
	case t.Gap > 0 && len(pieces) > MaxGapWords:
		return fmt.Sprintf("a term with gap has at most %d words", MaxGapWords)
	case t.Severity > rules.Critical:
		return fmt.Sprintf("invalid severity %d", t.Severity)
	}
	if t.Prefix {
		if n := lastWordLetters(t.Text); n < MinPrefixLen {
			return fmt.Sprintf("prefix term %q: the last word must have at least %d letters (has %d)", t.Text, MinPrefixLen, n)
		}
	}
	return ""
}

// lastWordLetters counts the letters and digits of the last word of s (as
// the tokeniser splits it).
func lastWordLetters(s string) int {
	var st stream
	st.normalize(s)
	if len(st.words) == 0 {
		return 0
	}
	w := len(st.words) - 1
	a, b := st.start[st.words[w]], st.end[st.wordEnd(w)-1]
	n := 0
	for _, r := range s[a:b] {
		if unicode.IsLetter(r) || unicode.IsNumber(r) || strings.ContainsRune("@$!|+", r) {
			n++
		}
	}
	return n
}

// termPieces returns the loose normalised words of a term.
func termPieces(s string) [][]uint32 {
	var st stream
	st.normalize(s)
	var out [][]uint32
	for w := range st.words {
		a, b := int(st.words[w]), st.wordEnd(w)
		p := make([]uint32, b-a)
		for k := a; k < b; k++ {
			p[k-a] = st.sym[k] & symMask
		}
		out = append(out, p)
	}
	return out
}

// termKey is the normalised form of a term used to detect duplicates.
func termKey(t Term) string {
	var sb strings.Builder
	for i, p := range termPieces(t.Text) {
		if i > 0 {
			sb.WriteByte(' ')
		}
		for _, s := range p {
			sb.WriteRune(rune(s))
		}
	}
	return sb.String()
}

// ParseCases parses a test-case file: '+ TEXT' lines must match the
// library, '- TEXT' lines must not; '#' starts a comment line.
func ParseCases(name string, data []byte) ([]Case, rules.Errors) {
	lr, errs := checkFile(name, data)
	if errs != nil {
		return nil, errs
	}
	var cases []Case
	for {
		line, ok := lr.next()
		if !ok {
			break
		}
		trimmed := strings.TrimLeft(line, " \t")
		indent := len(line) - len(trimmed)
		if strings.TrimSpace(trimmed) == "" || trimmed[0] == '#' {
			continue
		}
		pos := rules.Pos{File: name, Line: lr.line, Col: indent + 1}
		if trimmed[0] != '+' && trimmed[0] != '-' {
			errs = append(errs, rules.Error{Pos: pos, Msg: "case line must start with '+' (must match) or '-' (must not match)"})
			continue
		}
		rest := trimmed[1:]
		if rest != "" && rest[0] != ' ' && rest[0] != '\t' {
			errs = append(errs, rules.Error{Pos: pos, Msg: fmt.Sprintf("want a space after %q", trimmed[:1])})
			continue
		}
		text := strings.TrimSpace(rest)
		if text == "" {
			errs = append(errs, rules.Error{Pos: pos, Msg: "empty case text"})
			continue
		}
		pos.Col = col(line, indent+1+(len(rest)-len(strings.TrimLeft(rest, " \t"))))
		cases = append(cases, Case{Text: text, Positive: trimmed[0] == '+', Pos: pos})
	}
	if len(errs) == 0 {
		errs = nil
	}
	return cases, errs
}
