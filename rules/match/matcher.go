package match

import (
	"errors"
	"fmt"
	"math"
	"slices"
	"strings"
	"sync"
	"unicode/utf8"

	"github.com/vigil-safeguarding/vigil/rules"
)

// MaxText is the number of leading bytes of a text that Find examines.
const MaxText = math.MaxInt32 - 1

// Match is one occurrence of a term in a text.
type Match struct {
	RuleID, Category string
	Severity         rules.Severity
	Term             string // the term as written in the library
	Start, End       int    // byte offsets of the match in the original text
	Text             string // the original text[Start:End]
	// Help is the library's help-seeking phrase (as the library writes it)
	// found near the term, which lowered Severity from BaseSeverity; both
	// are empty when no such phrase was near.
	Help         string
	BaseSeverity rules.Severity
}

// cterm is a compiled term.
type cterm struct {
	ruleID, category string
	severity         rules.Severity
	text             string
	pieces           [][]uint32 // loose symbols of each word
	xpieces          [][]uint32 // exact symbols of each word (exact terms only)
	gap              int
	prefix, exact    bool
	except           [][][]uint32
	help             [][][]uint32 // the library's help-seeking phrases (unless help=none)
	helpText         []string
	helpSuppress     bool // a help phrase suppresses the match instead of lowering it
}

// Matcher finds the terms of compiled libraries in text. It is immutable and
// safe for concurrent use.
type Matcher struct {
	terms    []cterm
	patTerms [][]int32 // pattern → terms
	patLen   []int32

	alpha   alphabet
	exact   dfa     // over per-word squashed patterns, run on candidate lines
	pre     dfa     // over globally squashed patterns, the prefilter over all text
	preLen  []int32 // prefilter pattern lengths
	preOpen []bool  // a prefilter pattern may end inside a word (prefix or gap terms)
	// preAnywhere: a prefilter pattern may also start inside a word (a
	// later word of a gap phrase, which may be joined to the one before).
	preAnywhere []bool
	// byteClass maps a byte to its prefilter class.
	byteClass [256]uint32

	pool sync.Pool
}

// preMaxLen is the number of leading symbols of a pattern that the
// prefilter looks for: longer patterns only make its automaton larger.
const preMaxLen = 6

// Compile builds a Matcher for the terms of libs. Terms are validated again
// (libraries may be built in code); invalid terms make Compile fail.
func Compile(libs ...*Library) (*Matcher, error) {
	m := &Matcher{alpha: alphabet{cls: map[uint32]uint16{}}}
	var errs []error
	patIDs := map[string]int32{}
	var pats [][]uint32
	for _, lib := range libs {
		if lib == nil {
			continue
		}
		for _, t := range lib.Terms {
			if msg := checkTerm(&t); msg != "" {
				errs = append(errs, fmt.Errorf("%s: %s", t.Pos, msg))
				continue
			}
			ct := cterm{
				ruleID: firstNonEmpty(t.RuleID, lib.RuleID), category: firstNonEmpty(t.Category, lib.Category),
				severity: t.Severity, text: t.Text, pieces: termPieces(t.Text),
				gap: t.Gap, prefix: t.Prefix, exact: t.Exact,
			}
			if ct.severity == 0 {
				ct.severity = lib.Severity
			}
			if t.Exact {
				ct.xpieces = exactPieces(t.Text)
				if len(ct.xpieces) != len(ct.pieces) {
					errs = append(errs, fmt.Errorf("%s: term %q: exact and loose forms split into different words", t.Pos, t.Text))
					continue
				}
			}
			for _, e := range t.Except {
				p := termPieces(e)
				if len(p) == 0 || len(p) > MaxTermWords {
					errs = append(errs, fmt.Errorf("%s: term %q: invalid except entry %q", t.Pos, t.Text, e))
					continue
				}
				ct.except = append(ct.except, p)
			}
			action := t.Help
			if action == HelpDefault {
				action = lib.HelpAction
			}
			if action != HelpNone {
				for _, h := range lib.Help {
					p := termPieces(h)
					if len(p) == 0 || len(p) > MaxTermWords {
						errs = append(errs, fmt.Errorf("%s: invalid help phrase %q", lib.File, h))
						continue
					}
					ct.help = append(ct.help, p)
					ct.helpText = append(ct.helpText, h)
				}
				ct.helpSuppress = action == HelpSuppress
			}
			var pat []uint32
			if ct.gap == 0 {
				for _, p := range ct.pieces {
					pat = append(pat, p...)
				}
			} else {
				pat = ct.pieces[0]
			}
			key := symString(pat)
			id, ok := patIDs[key]
			if !ok {
				id = int32(len(pats))
				patIDs[key] = id
				pats = append(pats, pat)
				m.patTerms = append(m.patTerms, nil)
				m.patLen = append(m.patLen, int32(len(pat)))
			}
			m.patTerms[id] = append(m.patTerms[id], int32(len(m.terms)))
			m.terms = append(m.terms, ct)
		}
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	m.alpha.n = 1
	for _, p := range pats {
		for _, x := range p {
			m.alpha.add(x)
		}
	}
	pres := m.prefilterPatterns(pats) // anchor.go: gap terms by their rarest word
	// Prefilter patterns: globally squashed, deduplicated. The prefilter
	// reads each character on its own, before its word's script is known,
	// so it reads every Cyrillic, Greek and Armenian lookalike as its
	// Latin letter: a pattern keeping such a letter is entered once per
	// Latin letter its cases fold to (preVariants).
	prePats := make([][]uint32, 0, len(pres))
	seenPre := map[string]int{}
	for _, pp := range pres {
		for _, v := range preVariants(pp.syms) {
			g := v.pat
			k := symString(g)
			id, ok := seenPre[k]
			if !ok {
				id = len(prePats)
				seenPre[k] = id
				prePats = append(prePats, g)
				m.preLen = append(m.preLen, int32(len(g)))
				m.preOpen = append(m.preOpen, false)
				m.preAnywhere = append(m.preAnywhere, false)
				for _, x := range g {
					m.alpha.add(x)
				}
			}
			m.preOpen[id] = m.preOpen[id] || pp.open || v.open
			m.preAnywhere[id] = m.preAnywhere[id] || pp.anywhere
		}
	}
	// Both automata share the alphabet: build them once it is complete.
	m.exact = buildDFA(pats, &m.alpha, false, nil)
	m.pre = buildDFA(prePats, &m.alpha, true, m.preOpen)
	base := uint32(m.alpha.n)
	for b := 0; b < 256; b++ {
		switch {
		case b >= utf8.RuneSelf:
			m.byteClass[b] = base + preSlow
		case b == '\n':
			m.byteClass[b] = base + preNL
		case asciiTab[b].kind == kWord:
			m.byteClass[b] = uint32(m.alpha.class(uint32(asciiTab[b].loose)))
		case asciiTab[b].kind == kSep:
			m.byteClass[b] = base + preSep
		default:
			m.byteClass[b] = base + preSlow
		}
	}
	m.pool.New = func() any { return new(stream) }
	return m, nil
}

func firstNonEmpty(a, b string) string {
	if a != "" {
		return a
	}
	return b
}

func symString(p []uint32) string {
	var sb strings.Builder
	for _, s := range p {
		sb.WriteRune(rune(s))
	}
	return sb.String()
}

type preVariant struct {
	pat  []uint32
	open bool // cut at preMaxLen symbols: may end inside a word
}

// preVariants returns the prefilter patterns of pattern p: its lookalike
// letters replaced by each Latin letter they may be read as, globally
// squashed and cut at preMaxLen symbols (at most 2^preMaxLen variants).
func preVariants(p []uint32) []preVariant {
	vs := []preVariant{{}}
	for _, s := range p {
		opts := []uint32{s}
		if s >= utf8.RuneSelf {
			if l := lookalikesOf(rune(s)); l != nil {
				opts = l
			}
		}
		var next []preVariant
		for _, v := range vs {
			if len(v.pat) == preMaxLen && !v.open {
				// Full: the next symbol either repeats the last (squashed) or cuts it.
				for _, o := range opts {
					if o == v.pat[len(v.pat)-1] {
						next = append(next, v)
					} else {
						next = append(next, preVariant{pat: v.pat, open: true})
					}
				}
				continue
			}
			if v.open {
				next = append(next, v)
				continue
			}
			for _, o := range opts {
				if n := len(v.pat); n > 0 && v.pat[n-1] == o {
					next = append(next, v)
					continue
				}
				next = append(next, preVariant{pat: append(slices.Clip(v.pat), o)})
			}
		}
		vs = dedupeVariants(next)
	}
	return vs
}

func dedupeVariants(vs []preVariant) []preVariant {
	seen := map[string]bool{}
	out := vs[:0]
	for _, v := range vs {
		k := symString(v.pat)
		if v.open {
			k += "\x00"
		}
		if !seen[k] {
			seen[k] = true
			out = append(out, v)
		}
	}
	return out
}

// exactPieces returns the exact-mode symbols of each word of s.
func exactPieces(s string) [][]uint32 {
	var st stream
	st.normalize(s)
	var out [][]uint32
	for w := range st.words {
		a, b := st.start[st.words[w]], st.end[st.wordEnd(w)-1]
		out = append(out, exactFold(s[a:b], nil))
	}
	return out
}

// Find returns the matches in text, sorted by Start (then End, rule, term).
func (m *Matcher) Find(text string) []Match {
	return m.FindAppend(nil, text)
}

// FindAppend appends the matches in text to dst (sorted and deduplicated
// among themselves) and returns the extended slice.
//
// Text is matched line by line ('\n' ends a line): a match, its gap words
// and its except context never span a line break. A prefilter runs the
// automaton of globally squashed patterns over the whole text; only lines
// where it fires are normalised fully and verified.
func (m *Matcher) FindAppend(dst []Match, text string) []Match {
	if m == nil || len(m.terms) == 0 || text == "" {
		return dst
	}
	if len(text) > MaxText {
		text = text[:MaxText]
	}
	st := m.pool.Get().(*stream)
	base := len(dst)
	trans, outMin, tab := m.pre.trans, m.pre.outMin, &m.byteClass
	// Four independent lanes (split at line breaks) interleaved in one loop
	// overlap the latency of the dependent DFA transitions.
	var ln [4]lane
	prev := 0
	for k := range ln {
		end := len(text)
		if k < len(ln)-1 && len(text) >= 16<<10 {
			end = max(prev, len(text)*(k+1)/len(ln))
			if j := strings.IndexByte(text[end:], '\n'); j >= 0 {
				end += j + 1
			} else {
				end = len(text)
			}
		}
		ln[k] = lane{i: prev, end: end, rejI: -2}
		prev = end
	}
	l0, l1, l2, l3 := &ln[0], &ln[1], &ln[2], &ln[3]
	for {
		n := min(l0.end-l0.i, l1.end-l1.i, l2.end-l2.i, l3.end-l3.i)
		if n <= 0 {
			break
		}
		t0, t1, t2, t3 := text[l0.i:l0.i+n], text[l1.i:l1.i+n], text[l2.i:l2.i+n], text[l3.i:l3.i+n]
		s0, s1, s2, s3 := l0.s, l1.s, l2.s, l3.s
		k := 0
		for ; k < n; k++ {
			s0 = trans[s0+tab[t0[k]]]
			s1 = trans[s1+tab[t1[k]]]
			s2 = trans[s2+tab[t2[k]]]
			s3 = trans[s3+tab[t3[k]]]
			if max(s0, s1, s2, s3) >= outMin {
				break
			}
		}
		l0.s, l1.s, l2.s, l3.s = s0, s1, s2, s3
		if k == n {
			l0.i += n
			l1.i += n
			l2.i += n
			l3.i += n
			continue
		}
		for _, l := range []*lane{l0, l1, l2, l3} {
			l.i += k
			if l.s >= outMin {
				dst = m.preEvent(st, text, l, dst)
			}
			l.i++
		}
	}
	for k := range ln {
		l := &ln[k]
		i, s, end := l.i, l.s, l.end
		for ; i < end; i++ {
			s = trans[s+tab[text[i]]]
			if s >= outMin {
				l.i, l.s = i, s
				dst = m.preEvent(st, text, l, dst)
				i, s = l.i, l.s
			}
		}
		// The text ends after a closed-output state: the word has ended.
		if s >= m.pre.outFirst && s < outMin && end > 0 && m.preCandidate(text, end-1, s, true) {
			dst = m.verifyLine(st, text, l, end-1, dst)
		}
	}
	dst = append(dst[:base], sortMatches(dst[base:])...)
	if cap(st.sym) <= 1<<22 { // do not keep scratch for huge lines
		m.pool.Put(st)
	}
	return dst
}

// sortMatches sorts ms by Start, End, RuleID and Term and removes
// duplicates, in place.
func sortMatches(ms []Match) []Match {
	if len(ms) < 2 {
		return ms
	}
	slices.SortFunc(ms, func(a, b Match) int {
		if a.Start != b.Start {
			return a.Start - b.Start
		}
		if a.End != b.End {
			return a.End - b.End
		}
		if c := strings.Compare(a.RuleID, b.RuleID); c != 0 {
			return c
		}
		return strings.Compare(a.Term, b.Term)
	})
	return slices.CompactFunc(ms, func(a, b Match) bool {
		return a.Start == b.Start && a.End == b.End && a.RuleID == b.RuleID && a.Term == b.Term
	})
}

// findEveryLine is Find without the prefilter: every line is normalised
// and verified. Tests use it as the reference for the prefilter.
func (m *Matcher) findEveryLine(text string) []Match {
	var st stream
	var dst []Match
	for ls := 0; ls <= len(text); {
		le := len(text)
		if j := strings.IndexByte(text[ls:], '\n'); j >= 0 {
			le = ls + j
		}
		dst = m.findLine(&st, text, ls, le, dst)
		ls = le + 1
	}
	return sortMatches(dst)
}

// lane is one position of the prefilter scan.
type lane struct {
	i, end int
	s      uint32 // state after text[i]
	rejS   uint32 // last rejected candidate: state and position
	rejI   int
}

// preEvent handles a prefilter transition at or above outMin after
// text[l.i]: a word end after a closed-output state, the slow path for
// special characters, an open-output state; then candidate checks and line
// verification. It leaves l.i at the last byte consumed.
func (m *Matcher) preEvent(st *stream, text string, l *lane, dst []Match) []Match {
	i, s := l.i, l.s
	if s&endBit != 0 {
		// text[i] ends the word (or is a special character) after a
		// closed-output state: the last symbol ended at text[i-1].
		sc := s &^ flagMask
		known := s&slowBit == 0
		switch {
		case sc == l.rejS && i == l.rejI+1:
			l.rejI = i
		case m.preCandidate(text, i-1, sc, known):
			return m.verifyLine(st, text, l, i, dst)
		default:
			l.rejS, l.rejI = sc, i
		}
		switch {
		case s&nlBit != 0:
			s = 0
		case s&slowBit != 0:
			s = sc | slowBit
		default:
			s = sc
		}
		l.s = s
	}
	if s&slowBit != 0 {
		// Leet punctuation, apostrophes and non-ASCII characters.
		var ni int
		ni, s = m.preSlow(st, text, i, s&^slowBit)
		i = ni - 1
		l.i, l.s = i, s
		if s < m.pre.outMin {
			return dst
		}
	}
	if s < m.pre.outMin {
		return dst
	}
	if s == l.rejS && i == l.rejI+1 {
		l.rejI = i // still in a rejected candidate (separator or repeat)
		return dst
	}
	if !m.preCandidate(text, i, s, false) {
		l.rejS, l.rejI = s, i
		return dst
	}
	return m.verifyLine(st, text, l, i, dst)
}

// verifyLine verifies the line containing text[i] and moves the lane to its
// end.
func (m *Matcher) verifyLine(st *stream, text string, l *lane, i int, dst []Match) []Match {
	ls := strings.LastIndexByte(text[:i], '\n') + 1
	le := len(text)
	if j := strings.IndexByte(text[i:], '\n'); j >= 0 {
		le = i + j
	}
	dst = m.findLine(st, text, ls, le, dst)
	l.i, l.s = le, 0
	return dst
}

// preSlow runs the prefilter over the character (or run of leet
// punctuation and apostrophes) at text[i], classifying it exactly as the
// normaliser does. It returns the next position and the new state.
func (m *Matcher) preSlow(st *stream, text string, i int, s uint32) (int, uint32) {
	trans := m.pre.trans
	step := func(syms []uint32) {
		for _, x := range syms {
			if a := x & altMask; a != 0 {
				x = a >> altShift // a lookalike reads as its Latin letter here
			}
			s = trans[s+uint32(m.alpha.class(x))]
		}
	}
	k, w, syms := charAt(text, i, st.tmp)
	st.tmp = syms
	switch k {
	case kWord, kIgnore, kSep:
		// The rest of a line of two-byte letters (Cyrillic, Greek,
		// Arabic ...) and the ASCII letters, digits and spaces between
		// them is read here, from the fold table and the byte classes,
		// while the state has no output: one call per line of such text
		// rather than one per character. Anything else (a line break,
		// leet punctuation, apostrophes, other runes) goes back to the
		// caller.
		for {
			if k == kWord {
				step(syms)
			}
			i += w
			if s >= m.pre.outFirst || i >= len(text) {
				return i, s
			}
			b := text[i]
			if b < utf8.RuneSelf {
				c := m.byteClass[b]
				if base := uint32(m.alpha.n); c == base+preSlow || c == base+preNL {
					return i, s
				}
				s = trans[s+c] // no flags: the state has no output
				k, w = kIgnore, 1
				continue
			}
			if b < 0xC2 || b >= 0xE0 || i+1 >= len(text) || text[i+1]&0xC0 != 0x80 {
				return i, s
			}
			e := &fold2[rune(b&0x1F)<<6|rune(text[i+1]&0x3F)]
			if e.n == foldSlow || e.kind == kLeet || e.kind == kApos {
				return i, s
			}
			k, w, syms = e.kind, 2, e.syms[:e.n]
		}
	}
	inTok := inTokenBefore(text, i)
	j, followed := leetRun(text, i, st)
	for i < j {
		k2, w2, syms2 := charAt(text, i, st.tmp)
		st.tmp = syms2
		switch {
		case k2 == kIgnore:
		case k2 == kApos && inTok && followed:
		case k2 == kLeet && followed && (inTok || syms2[0] == 's' || syms2[0] == 'a'):
			inTok = true
			step(syms2)
		default:
			inTok = false
		}
		i += w2
	}
	return i, s
}

// inTokenBefore reports whether the normaliser is inside a word just before
// text[i] (which starts a run of leet punctuation or apostrophes): whether
// the last character before it that is not ignorable is a letter or digit.
func inTokenBefore(text string, i int) bool {
	var tmp [8]uint32
	for i > 0 {
		r, w := utf8.DecodeLastRuneInString(text[:i])
		i -= w
		k, _, _ := charAt(text, i, tmp[:0])
		_ = r
		switch k {
		case kWord:
			return true
		case kIgnore:
			continue
		}
		return false
	}
	return false
}

// preCandidate reports whether one of the prefilter patterns recognised in
// state s, ending at text[i], may start at the start of a word and (unless
// it may end inside one) end at the end of a word. It looks at ASCII
// letters, digits and separators only; anything else makes it answer true:
// the prefilter must never lose a match.
//
// atEnd says the word is known to end after text[i] (else it is checked).
func (m *Matcher) preCandidate(text string, i int, s uint32, atEnd bool) bool {
	if i < 0 {
		return true
	}
	last := text[i]
	if last >= utf8.RuneSelf || asciiTab[last].kind != kWord {
		return true
	}
	// Word end: skip repeats of the last symbol; only another ASCII letter
	// or digit proves that the word goes on.
	if !atEnd {
		atEnd = true
		for j := i + 1; j < len(text) && text[j] < utf8.RuneSelf; j++ {
			if a := asciiTab[text[j]]; a.kind == kWord {
				if a.loose == asciiTab[last].loose {
					continue
				}
				atEnd = false
			}
			break
		}
	}
	for _, p := range m.pre.outputs(s) {
		if !atEnd && !m.preOpen[p] {
			continue
		}
		if m.preAnywhere[p] {
			return true
		}
		want := int(m.preLen[p])
		runs := 0
		cur := byte(0)
	walk:
		for j := i; ; j-- {
			if j < 0 {
				break
			}
			b := text[j]
			if b >= utf8.RuneSelf {
				return true
			}
			a := asciiTab[b]
			switch a.kind {
			case kWord:
				if runs == 0 || a.loose != cur {
					runs++
					cur = a.loose
					if runs > want {
						break walk
					}
				}
				// The first symbol's run: does one of its characters start a word?
				if runs == want && (m.preAnywhere[p] || j == 0 || text[j-1] >= utf8.RuneSelf || asciiTab[text[j-1]].kind != kWord) {
					return true
				}
			case kSep:
				if b == '\n' {
					break walk
				}
			default:
				return true
			}
		}
	}
	return false
}

// findLine normalises text[ls:le] and appends its verified matches.
func (m *Matcher) findLine(st *stream, text string, ls, le int, dst []Match) []Match {
	line := text[ls:le]
	st.normalize(line)
	d := &m.exact
	trans, outMin := d.trans, d.outMin
	s := uint32(0)
	for k, v := range st.sym {
		s = trans[s+uint32(m.alpha.class(v&symMask))]
		if s >= outMin {
			dst = m.hits(st, line, ls, s, k, dst)
		}
	}
	return dst
}

// hits verifies the patterns ending at symbol k in state s of the exact
// automaton. line is the text being verified, at byte offset off.
func (m *Matcher) hits(st *stream, line string, off int, s uint32, k int, dst []Match) []Match {
	for _, p := range m.exact.outputs(s) {
		i := k + 1 - int(m.patLen[p])
		if st.sym[i]&fStart == 0 {
			continue
		}
		for _, ti := range m.patTerms[p] {
			t := &m.terms[ti]
			end, ok := m.verify(st, line, t, 0, i)
			if !ok || nearPhrase(st, t.except, i, end, false) >= 0 {
				continue
			}
			sev, base, help := t.severity, rules.Severity(0), ""
			if h := nearPhrase(st, t.help, i, end, true); h >= 0 {
				if t.helpSuppress {
					continue
				}
				base, help = sev, t.helpText[h]
				if sev > rules.Info {
					sev--
				}
			}
			eb := int(st.end[end-1])
			if t.prefix {
				eb = int(st.end[st.wordEnd(st.wordOf(end-1))-1])
			}
			sb := int(st.start[i])
			dst = append(dst, Match{
				RuleID: t.ruleID, Category: t.category, Severity: sev, Term: t.text,
				Start: off + sb, End: off + eb, Text: line[sb:eb], Help: help, BaseSeverity: base,
			})
		}
	}
	return dst
}

// matchPiece reports whether piece p occurs at symbol at without a word
// start inside it, returning the index after it.
func (st *stream) matchPiece(p []uint32, at int) (int, bool) {
	if at+len(p) > len(st.sym) {
		return 0, false
	}
	for k, s := range p {
		v := st.sym[at+k]
		if v&symMask != s || (k > 0 && v&fStart != 0) {
			return 0, false
		}
	}
	return at + len(p), true
}

// verify matches the words of t from piece pi at symbol at; it returns the
// index after the match.
func (m *Matcher) verify(st *stream, text string, t *cterm, pi, at int) (int, bool) {
	e, ok := st.matchPiece(t.pieces[pi], at)
	if !ok {
		return 0, false
	}
	last := pi == len(t.pieces)-1
	if last && !t.prefix && st.sym[e-1]&fEnd == 0 {
		return 0, false
	}
	if t.exact {
		a, b := st.start[at], st.end[e-1]
		st.xa = exactFold(text[a:b], st.xa[:0])
		want := t.xpieces[pi]
		if last && t.prefix {
			if len(st.xa) < len(want) || !slices.Equal(st.xa[:len(want)], want) {
				return 0, false
			}
		} else if !slices.Equal(st.xa, want) {
			return 0, false
		}
	}
	if last {
		return e, true
	}
	// The next word follows directly (in the same text word or the next).
	if e < len(st.sym) {
		if r, ok := m.verify(st, text, t, pi+1, e); ok {
			return r, true
		}
	}
	// Or after up to gap whole words.
	if t.gap > 0 && st.sym[e-1]&fEnd != 0 && e < len(st.sym) {
		w := st.wordOf(e)
		for g := 1; g <= t.gap && w+g < len(st.words); g++ {
			if r, ok := m.verify(st, text, t, pi+1, int(st.words[w+g])); ok {
				return r, true
			}
		}
	}
	return 0, false
}

// nearPhrase returns the index of the first of phrases (except or help
// phrases) that starts within ContextWords words of the match [i, end), or
// inside it, or -1. With reach, a phrase that starts earlier but whose last
// word is within ContextWords words before the match counts too ("how to
// help a friend with self harm": a help phrase is often long).
func nearPhrase(st *stream, phrases [][][]uint32, i, end int, reach bool) int {
	if len(phrases) == 0 {
		return -1
	}
	w1 := min(st.wordOf(end-1)+ContextWords, len(st.words)-1)
	for pi, ex := range phrases {
		back := ContextWords
		if reach {
			back += len(ex) - 1
		}
		w0 := max(st.wordOf(i)-back, 0)
		for w := w0; w <= w1; w++ {
			if st.matchPhrase(ex, int(st.words[w])) {
				return pi
			}
		}
	}
	return -1
}

// matchPhrase matches an except phrase at symbol at: adjacent words, the
// last word matching as a prefix ("photo" matches "photos").
func (st *stream) matchPhrase(pieces [][]uint32, at int) bool {
	for pi, p := range pieces {
		e, ok := st.matchPiece(p, at)
		if !ok {
			return false
		}
		if pi == len(pieces)-1 {
			return true
		}
		if e >= len(st.sym) {
			return false
		}
		at = e
	}
	return true
}
