package match

import (
	"slices"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Symbols of the normalised stream are runes stored in a uint32 together
// with two word-boundary flags.
const (
	symMask  = 0x1FFFFF // the symbol (a rune)
	fStart   = 1 << 30  // the symbol begins a word
	fEnd     = 1 << 29  // the symbol ends a word
	altShift = 21       // bits 21-27: the Latin lookalike of a Cyrillic, Greek or Armenian letter
	altMask  = 0x7F << altShift
	// symAlt: a symbol with its lookalike. Two symbols squash only when
	// both agree, so that the prefilter, which reads every lookalike as
	// its Latin letter, sees the repeat too (Greek Ν and ν look like n
	// and v).
	symAlt = symMask | altMask

	// ClassIL is the symbol that stands for the ambiguous class
	// i, l, 1, |, ! (and their lookalikes) in normalised text.
	ClassIL = 'I'

	// maxRunSep is the largest number of separator characters allowed
	// between the single characters of a spaced-out word ("k i l l",
	// "k. i. l. l"); a wider gap ("k i l l   m e") separates words.
	maxRunSep = 2
)

// kind classifies a character of the original text.
type kind uint8

const (
	kSep    kind = iota // separator: ends a word
	kWord               // letter or digit: part of a word
	kLeet               // @ $ ! | + : a letter inside a word (and $ @ leading one), else a separator
	kApos               // apostrophe: dropped inside a word, else a separator
	kIgnore             // combining marks, format characters (zero-width, soft hyphen): dropped, never end a word
)

type asciiInfo struct {
	kind         kind
	loose, exact byte
}

// asciiTab folds ASCII characters: kind, loose symbol (case, leetspeak, the
// i/l class) and exact symbol (case only).
var asciiTab [utf8.RuneSelf]asciiInfo

// leet maps digits and punctuation used as letters to the letter they stand
// for (before the i/l class is applied).
var leet = map[byte]byte{
	'0': 'o', '1': 'i', '3': 'e', '4': 'a', '5': 's', '7': 't', '8': 'b', '9': 'g',
	'@': 'a', '$': 's', '!': 'i', '|': 'l', '+': 't',
}

// Confusables maps Cyrillic, Greek and other letters that look like Latin
// letters to the Latin letter (applied in loose mode only, before case
// folding, and again after it). Exported for documentation and tests.
var Confusables = map[rune]rune{
	// Cyrillic lower case
	'а': 'a', 'в': 'b', 'е': 'e', 'һ': 'h', 'і': 'i', 'ј': 'j', 'к': 'k', 'м': 'm',
	'н': 'h', 'о': 'o', 'р': 'p', 'с': 'c', 'т': 't', 'у': 'y', 'х': 'x', 'ѕ': 's',
	'ԁ': 'd', 'ԛ': 'q', 'ԝ': 'w', 'ӏ': 'l', 'ү': 'y', 'ь': 'b', 'г': 'r',
	// Cyrillic upper case (lookalikes of Latin capitals)
	'А': 'a', 'В': 'b', 'Е': 'e', 'Һ': 'h', 'І': 'i', 'Ј': 'j', 'К': 'k', 'М': 'm',
	'Н': 'h', 'О': 'o', 'Р': 'p', 'С': 'c', 'Т': 't', 'У': 'y', 'Х': 'x', 'Ѕ': 's',
	'Ԁ': 'd', 'Ԛ': 'q', 'Ԝ': 'w', 'Ӏ': 'l', 'Ү': 'y', 'З': '3',
	// Greek lower case
	'α': 'a', 'β': 'b', 'γ': 'y', 'ε': 'e', 'η': 'n', 'ι': 'i', 'κ': 'k', 'μ': 'u',
	'ν': 'v', 'ο': 'o', 'ρ': 'p', 'τ': 't', 'υ': 'u', 'χ': 'x', 'ω': 'w', 'ϲ': 'c',
	'ϳ': 'j',
	// Greek upper case
	'Α': 'a', 'Β': 'b', 'Ε': 'e', 'Ζ': 'z', 'Η': 'h', 'Ι': 'i', 'Κ': 'k', 'Μ': 'm',
	'Ν': 'n', 'Ο': 'o', 'Ρ': 'p', 'Τ': 't', 'Υ': 'y', 'Χ': 'x', 'Ϲ': 'c', 'Ϳ': 'j',
	// Latin and other lookalikes without a compatibility decomposition
	'ı': 'i', 'ȷ': 'j', 'ɑ': 'a', 'ɡ': 'g', 'ɩ': 'i', 'ʟ': 'l', 'ɪ': 'i', 'ᴏ': 'o',
	'օ': 'o', 'ս': 'u', 'ց': 'g', 'ℓ': 'l', 'ø': 'o', 'Ø': 'o', 'đ': 'd', 'Đ': 'd',
	'ł': 'l', 'Ł': 'l', 'ħ': 'h', 'Ħ': 'h', 'ŧ': 't', 'Ŧ': 't', 'ƀ': 'b',
}

func init() {
	for b := 0; b < utf8.RuneSelf; b++ {
		c := byte(b)
		info := asciiInfo{kind: kSep}
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9':
			lc := c
			if c >= 'A' && c <= 'Z' {
				lc = c + 'a' - 'A'
			}
			info = asciiInfo{kind: kWord, loose: looseLetter(lc), exact: lc}
		case c == '@', c == '$', c == '!', c == '|', c == '+':
			info = asciiInfo{kind: kLeet, loose: looseLetter(c), exact: c}
		case c == '\'', c == '`':
			info = asciiInfo{kind: kApos}
		}
		asciiTab[b] = info
	}
}

// looseLetter applies leetspeak and the i/l class to a lower-case ASCII
// letter, digit or leet punctuation.
func looseLetter(c byte) byte {
	if l, ok := leet[c]; ok {
		c = l
	}
	if c == 'i' || c == 'l' {
		return ClassIL
	}
	return c
}

// foldRune folds a non-ASCII rune, appending its symbols (loose or exact) to
// dst. For kLeet the appended symbol is the letter it may stand for.
func foldRune(r rune, s string, exact bool, dst []uint32) (kind, []uint32) {
	switch r {
	case '\u2019', '\u2018', '\u02BC', '\u02BB', '\u2032', '\uFF07':
		return kApos, dst
	case utf8.RuneError:
		return kSep, dst
	}
	if r == '\u0640' || unicode.In(r, unicode.Mn, unicode.Me, unicode.Cf) {
		return kIgnore, dst // U+0640 Arabic tatweel: elongation, not a letter
	}
	if !exact {
		if c, ok := Confusables[r]; ok {
			return kWord, append(dst, lookalike(r, c))
		}
	}
	d := norm.NFKD.PropertiesString(s).Decomposition()
	if d == nil {
		d = []byte(s) // does not allocate: s is at most 4 bytes and does not escape
	}
	if len(d) == 1 {
		a := asciiTab[d[0]]
		switch a.kind {
		case kWord, kLeet:
			if exact {
				return a.kind, append(dst, uint32(a.exact))
			}
			return a.kind, append(dst, uint32(a.loose))
		}
		return a.kind, dst
	}
	n0 := len(dst)
	for len(d) > 0 {
		c, w := utf8.DecodeRune(d)
		d = d[w:]
		if c < utf8.RuneSelf {
			a := asciiTab[c]
			if a.kind == kWord {
				if exact {
					dst = append(dst, uint32(a.exact))
				} else {
					dst = append(dst, uint32(a.loose))
				}
			}
			continue
		}
		if !unicode.IsLetter(c) && !unicode.IsNumber(c) && !unicode.Is(unicode.Mc, c) {
			continue // marks are dropped here: diacritics removal
		}
		if !exact {
			if x, ok := Confusables[c]; ok {
				dst = append(dst, lookalike(c, x))
				continue
			}
		}
		switch c {
		case 'ß', 'ẞ':
			dst = append(dst, 's', 's')
			continue
		case 'ς':
			c = 'σ'
		}
		if a, ok := arabicFold[c]; ok {
			dst = append(dst, uint32(a))
			continue
		}
		c = unicode.ToLower(c)
		if c < utf8.RuneSelf {
			if exact {
				dst = append(dst, uint32(asciiTab[c].exact))
			} else {
				dst = append(dst, uint32(asciiTab[c].loose))
			}
			continue
		}
		if !exact {
			if x, ok := Confusables[c]; ok {
				dst = append(dst, lookalike(c, x))
				continue
			}
		}
		dst = append(dst, uint32(c))
	}
	if len(dst) == n0 {
		if unicode.IsLetter(r) || unicode.IsNumber(r) {
			return kIgnore, dst
		}
		return kSep, dst
	}
	return kWord, dst
}

// foldEntry is foldRune's loose result for one rune, precomputed.
type foldEntry struct {
	kind kind
	n    uint8 // number of symbols; foldSlow: not in the table
	syms [2]uint32
}

const foldSlow = 255

// Precomputed loose folds of the two-byte UTF-8 runes (Latin supplements,
// Greek, Cyrillic, Armenian, Hebrew, Arabic) and of general punctuation
// (dashes, quotes, spaces; U+2000-U+206F), the non-ASCII characters most
// window titles carry: a table lookup instead of a decomposition.
var (
	fold2   [0x800]foldEntry
	foldPct [0x70]foldEntry
)

func init() {
	fill := func(e *foldEntry, r rune) {
		var buf [8]uint32
		var enc [4]byte
		n := utf8.EncodeRune(enc[:], r)
		k, syms := foldRune(r, string(enc[:n]), false, buf[:0])
		if len(syms) > len(e.syms) {
			e.n = foldSlow
			return
		}
		e.kind, e.n = k, uint8(len(syms))
		copy(e.syms[:], syms)
	}
	for r := rune(0x80); r < 0x800; r++ {
		fill(&fold2[r], r)
	}
	for r := rune(0); r < 0x70; r++ {
		fill(&foldPct[r], 0x2000+r)
	}
}

// charAt classifies the character at text[i], returning its kind, width and
// (for kWord and kLeet) its loose symbols in tmp.
func charAt(text string, i int, tmp []uint32) (kind, int, []uint32) {
	b := text[i]
	if b < utf8.RuneSelf {
		a := &asciiTab[b]
		return a.kind, 1, append(tmp[:0], uint32(a.loose))
	}
	var e *foldEntry
	w := 0
	switch {
	case b >= 0xC2 && b < 0xE0 && i+1 < len(text) && text[i+1]&0xC0 == 0x80:
		e, w = &fold2[rune(b&0x1F)<<6|rune(text[i+1]&0x3F)], 2
	case b == 0xE2 && i+2 < len(text) && (text[i+1] == 0x80 || text[i+1] == 0x81) && text[i+2]&0xC0 == 0x80:
		if c := rune(text[i+1]&0x3F)<<6 | rune(text[i+2]&0x3F); c < 0x70 {
			e, w = &foldPct[c], 3
		}
	}
	if e != nil && e.n != foldSlow {
		return e.kind, w, append(tmp[:0], e.syms[:e.n]...)
	}
	r, w := utf8.DecodeRuneInString(text[i:])
	k, syms := foldRune(r, text[i:i+w], false, tmp[:0])
	return k, w, syms
}

func isLineBreak(r rune) bool {
	switch r {
	case '\n', '\r', '\v', '\f', '\u0085', '\u2028', '\u2029':
		return true
	}
	return false
}

// stream is the normalised form of one text: symbols with word flags, the
// byte span in the original text of each symbol, and the first symbol of
// each word.
type stream struct {
	sym        []uint32
	start, end []int32
	words      []int32
	tmp        []uint32
	xa         []uint32 // exact-fold buffer
	// alts: a Cyrillic, Greek or Armenian lookalike was kept (resolveScripts).
	alts bool
}

// normState is the tokeniser's state between characters.
type normState struct {
	inTok      bool
	tokFirst   int // index of the token's first symbol
	tokChars   int // word characters in the token
	prevSingle bool
	sepCount   int  // separators since the previous token
	sepNL      bool // a line break among them
	sepBefore  int
	nlBefore   bool
}

// normalize fills st with the normalised stream of text. Text longer than
// MaxText bytes is truncated to MaxText.
func (st *stream) normalize(text string) {
	if len(text) > MaxText {
		text = text[:MaxText]
	}
	st.sym, st.start, st.end, st.words = st.sym[:0], st.start[:0], st.end[:0], st.words[:0]
	if cap(st.sym) < len(text) {
		n := len(text) + 16
		st.sym = make([]uint32, 0, n)
		st.start = make([]int32, 0, n)
		st.end = make([]int32, 0, n)
	}
	st.alts = false
	var ns normState
	for i := 0; i < len(text); {
		b := text[i]
		if b < utf8.RuneSelf {
			a := &asciiTab[b]
			if a.kind == kWord {
				// Fast path: an ASCII letter or digit.
				if !ns.inTok {
					st.beginToken(&ns)
				}
				ns.tokChars++
				s := uint32(a.loose)
				if n := len(st.sym); n > ns.tokFirst && st.sym[n-1]&symMask == s {
					st.end[n-1] = int32(i + 1)
				} else {
					st.sym = append(st.sym, s)
					st.start = append(st.start, int32(i))
					st.end = append(st.end, int32(i+1))
				}
				i++
				continue
			}
			if a.kind == kSep {
				if ns.inTok {
					st.endToken(&ns)
				}
				ns.sepCount++
				if b == '\n' || b == '\r' || b == '\v' || b == '\f' {
					ns.sepNL = true
				}
				i++
				continue
			}
		}
		k, w, syms := charAt(text, i, st.tmp)
		st.tmp = syms
		switch k {
		case kWord:
			st.emit(&ns, syms, i, i+w)
			i += w
		case kIgnore:
			i += w
		case kSep:
			if ns.inTok {
				st.endToken(&ns)
			}
			ns.sepCount++
			if r, _ := utf8.DecodeRuneInString(text[i:]); isLineBreak(r) {
				ns.sepNL = true
			}
			i += w
		default: // kLeet, kApos: look at the whole run of such characters once
			j, followed := leetRun(text, i, st)
			for i < j {
				k2, w2, syms2 := charAt(text, i, st.tmp)
				st.tmp = syms2
				switch {
				case k2 == kIgnore:
				case k2 == kApos && ns.inTok && followed:
				case k2 == kLeet && followed && (ns.inTok || syms2[0] == 's' || syms2[0] == 'a'):
					st.emit(&ns, syms2, i, i+w2)
				default:
					if ns.inTok {
						st.endToken(&ns)
					}
					ns.sepCount++
				}
				i += w2
			}
		}
	}
	if ns.inTok {
		st.endToken(&ns)
	}
	if st.alts {
		st.resolveScripts()
	}
}

func (st *stream) beginToken(ns *normState) {
	ns.inTok = true
	ns.tokFirst = len(st.sym)
	ns.tokChars = 0
	ns.sepBefore, ns.nlBefore = ns.sepCount, ns.sepNL
	ns.sepCount, ns.sepNL = 0, false
	st.words = append(st.words, int32(len(st.sym)))
}

// emit appends the symbols of one word character spanning text[a:b],
// squashing repeats within the token.
func (st *stream) emit(ns *normState, syms []uint32, a, b int) {
	if !ns.inTok {
		st.beginToken(ns)
	}
	ns.tokChars++
	for _, s := range syms {
		if n := len(st.sym); n > ns.tokFirst && st.sym[n-1]&symAlt == s {
			st.end[n-1] = int32(b)
			continue
		}
		if s&altMask != 0 {
			st.alts = true
		}
		st.sym = append(st.sym, s)
		st.start = append(st.start, int32(a))
		st.end = append(st.end, int32(b))
	}
}

// endToken finishes the current token: it joins a single character to a
// preceding run of single characters ("k i l l") and sets the word flags.
func (st *stream) endToken(ns *normState) {
	ns.inTok = false
	first := ns.tokFirst
	n := len(st.sym)
	single := ns.tokChars == 1
	if n == first { // no symbols (cannot happen for kWord characters, but be safe)
		st.words = st.words[:len(st.words)-1]
		ns.prevSingle = false
		return
	}
	if single && ns.prevSingle && first > 0 && ns.sepBefore <= maxRunSep && !ns.nlBefore {
		// Join to the previous word.
		st.words = st.words[:len(st.words)-1]
		st.sym[first-1] &^= fEnd
		if st.sym[first-1]&symAlt == st.sym[first]&symAlt {
			st.end[first-1] = st.end[first]
			copy(st.sym[first:], st.sym[first+1:])
			copy(st.start[first:], st.start[first+1:])
			copy(st.end[first:], st.end[first+1:])
			n--
			st.sym, st.start, st.end = st.sym[:n], st.start[:n], st.end[:n]
		}
	} else {
		st.sym[first] |= fStart
	}
	st.sym[n-1] |= fEnd
	ns.prevSingle = single
}

// leetRun returns the end of the run of leet punctuation, apostrophes and
// ignorable characters starting at text[i], and whether a letter or digit
// follows it.
func leetRun(text string, i int, st *stream) (int, bool) {
	j := i
	for j < len(text) {
		k, w, syms := charAt(text, j, st.tmp)
		st.tmp = syms
		if k == kWord {
			return j, true
		}
		if k != kLeet && k != kApos && k != kIgnore {
			return j, false
		}
		j += w
	}
	return j, false
}

// wordOf returns the index of the word containing symbol k.
func (st *stream) wordOf(k int) int {
	lo, hi := 0, len(st.words)
	for lo < hi {
		m := int(uint(lo+hi) >> 1)
		if int(st.words[m]) <= k {
			lo = m + 1
		} else {
			hi = m
		}
	}
	return lo - 1
}

// wordEnd returns the index one past the last symbol of word w.
func (st *stream) wordEnd(w int) int {
	if w+1 < len(st.words) {
		return int(st.words[w+1])
	}
	return len(st.sym)
}

// exactFold appends the exact-mode symbols of text (letters and digits folded
// for case, compatibility forms and diacritics only; leet punctuation kept
// as itself; separators, apostrophes and ignorable characters dropped).
func exactFold(text string, dst []uint32) []uint32 {
	for i := 0; i < len(text); {
		b := text[i]
		if b < utf8.RuneSelf {
			a := asciiTab[b]
			if a.kind == kWord || a.kind == kLeet {
				dst = append(dst, uint32(a.exact))
			}
			i++
			continue
		}
		r, w := utf8.DecodeRuneInString(text[i:])
		var k kind
		n0 := len(dst)
		k, dst = foldRune(r, text[i:i+w], true, dst)
		if k != kWord && k != kLeet {
			dst = dst[:n0]
		}
		i += w
	}
	return dst
}

// Normalize returns the canonical normalised form of s, as the matcher sees
// it: words separated by one space, each word case-folded, NFKC-folded,
// stripped of diacritics, with lookalike letters and leetspeak folded, the
// i/l class written as ClassIL ('I'), runs of a repeated symbol squashed
// and spaced-out single characters joined ("K i l l" → "kI").
func Normalize(s string) string {
	var st stream
	st.normalize(s)
	var sb strings.Builder
	for k, v := range st.sym {
		if v&fStart != 0 && k > 0 {
			sb.WriteByte(' ')
		}
		sb.WriteRune(rune(v & symMask))
	}
	return sb.String()
}

// Scripts whose letters the lookalike table folds to Latin, but which are
// also written for real (Russian, Ukrainian, Bulgarian, Greek, Armenian):
// their lookalikes are kept as themselves, with the Latin letter beside
// them, until the word's script is known (resolveScripts).
const (
	scriptOther = iota
	scriptLatin
	scriptCyrillic
	scriptGreek
	scriptArmenian
	nScripts
)

// scriptOf returns the script of a symbol for the lookalike decision.
// Digits and leetspeak count as Latin: they have already been folded to
// Latin letters, and a digit inside a Cyrillic word is obfuscation.
func scriptOf(r rune) int {
	switch {
	case r < utf8.RuneSelf:
		if r >= 'a' && r <= 'z' || r == ClassIL || r >= '0' && r <= '9' {
			return scriptLatin
		}
		return scriptOther
	case r >= 0x0370 && r <= 0x03FF, r >= 0x1F00 && r <= 0x1FFF:
		return scriptGreek
	case r >= 0x0400 && r <= 0x052F, r >= 0x1C80 && r <= 0x1C8F, r >= 0x2DE0 && r <= 0x2DFF, r >= 0xA640 && r <= 0xA69F:
		return scriptCyrillic
	case r >= 0x0530 && r <= 0x058F:
		return scriptArmenian
	case unicode.Is(unicode.Latin, r):
		return scriptLatin
	}
	return scriptOther
}

// lookalike returns the loose symbol of r, a letter of the Confusables
// table that looks like Latin c. Latin-script lookalikes (ı, ł, ø, ...)
// fold at once. A Cyrillic, Greek or Armenian one is kept as its own
// lower-case letter, with the Latin letter in the alt bits: whether it is a
// homoglyph or a real letter depends on the rest of its word and line.
func lookalike(r, c rune) uint32 {
	sym := uint32(looseLetter(byte(c)))
	if sc := scriptOf(r); sc == scriptLatin || sc == scriptOther {
		return sym
	}
	n := unicode.ToLower(r)
	if n == 'ς' {
		n = 'σ'
	}
	return uint32(n) | sym<<altShift
}

// arabicFold unifies the variant letters of Arabic-script writing (Arabic,
// Urdu, Persian, Punjabi in Shahmukhi), in exact and loose mode alike: the
// same word is typed with different keyboards and conventions. Hamza
// carriers (أ إ آ ؤ ئ) already lose their hamza with the other marks after
// decomposition; tashkeel (harakat, shadda, sukun, superscript alef) are
// marks and are dropped; tatweel is dropped in foldRune.
var arabicFold = map[rune]rune{
	'ٱ': 'ا', 'ٲ': 'ا', 'ٳ': 'ا', // alef wasla and alef variants → alef
	'ى': 'ي', 'ی': 'ي', 'ې': 'ي', 'ۍ': 'ي', // alef maksura, Farsi/Urdu yeh → Arabic yeh
	'ک': 'ك', 'ڪ': 'ك', // keheh (Urdu, Persian) and swash kaf → Arabic kaf
	'ہ': 'ه', 'ە': 'ه', 'ۃ': 'ه', 'ة': 'ه', // heh goal, ae, teh marbuta → heh
}

// resolveScripts decides, word by word, whether the Cyrillic, Greek and
// Armenian lookalikes of the stream are homoglyphs (folded to the Latin
// letter) or real letters (kept). A lookalike folds when its word mixes
// scripts ("kіll", "ѕеχ"), or when its word is wholly in one such script
// but the line has Latin words and no letter of that script that is not a
// lookalike ("ѕех chat"). Real Cyrillic or Greek text nearly always
// contains such a letter ("как дела", "Поиск"), so it is left alone.
// Folding can create repeats, which are squashed again.
func (st *stream) resolveScripts() {
	var lineLatin bool
	var native [nScripts]bool
	for _, v := range st.sym {
		r := rune(v & symMask)
		sc := scriptOf(r)
		switch {
		case sc == scriptLatin:
			// A Latin word, not a lone number ("Глава 2").
			lineLatin = lineLatin || r < '0' || r > '9'
		case v&altMask == 0:
			native[sc] = true
		}
	}
	folded := false
	for w := range st.words {
		a, b := int(st.words[w]), st.wordEnd(w)
		var in [nScripts]bool
		alts := false
		for k := a; k < b; k++ {
			in[scriptOf(rune(st.sym[k]&symMask))] = true
			alts = alts || st.sym[k]&altMask != 0
		}
		if !alts {
			continue
		}
		mixed := 0
		for _, sc := range []int{scriptLatin, scriptCyrillic, scriptGreek, scriptArmenian} {
			if in[sc] {
				mixed++
			}
		}
		for k := a; k < b; k++ {
			v := st.sym[k]
			if v&altMask == 0 {
				continue
			}
			sc := scriptOf(rune(v & symMask))
			if mixed > 1 || lineLatin && !native[sc] {
				st.sym[k] = v&(fStart|fEnd) | (v&altMask)>>altShift
				folded = true
			}
		}
	}
	if folded {
		st.resquash()
	}
}

// resquash collapses runs of a repeated symbol within each word again
// (after lookalikes were folded) and rebuilds the word index.
func (st *stream) resquash() {
	n := 0
	st.words = st.words[:0]
	for k, v := range st.sym {
		if n > 0 && v&fStart == 0 && st.sym[n-1]&fEnd == 0 && st.sym[n-1]&symAlt == v&symAlt {
			st.end[n-1] = st.end[k]
			st.sym[n-1] |= v & fEnd
			continue
		}
		if v&fStart != 0 {
			st.words = append(st.words, int32(n))
		}
		st.sym[n], st.start[n], st.end[n] = v, st.start[k], st.end[k]
		n++
	}
	st.sym, st.start, st.end = st.sym[:n], st.start[:n], st.end[:n]
}

// lookalikesOf returns the Latin letters that the upper- and lower-case
// forms of native symbol n (a lower-case Cyrillic, Greek or Armenian
// letter kept by resolveScripts) fold to, or nil when it has none.
func lookalikesOf(n rune) []uint32 {
	var out []uint32
	for _, r := range []rune{n, unicode.ToUpper(n), unicode.ToTitle(n)} {
		if c, ok := Confusables[r]; ok {
			if x := uint32(looseLetter(byte(c))); !slices.Contains(out, x) {
				out = append(out, x)
			}
		}
	}
	return out
}
