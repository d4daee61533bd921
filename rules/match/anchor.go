package match

import "strings"

// Prefilter anchors for gap terms.
//
// The prefilter flags a line when it sees the first symbols of a pattern.
// A gap term used to be flagged by its first word, so "you are ugly ;
// gap=1" made every line containing "you" a candidate that was normalised
// and verified in full: a few dozen such terms (first words like you, get,
// cut, want, make) cost more than the other thousand terms together, and
// the published libraries fell below the 2x speed floor against plain
// Aho-Corasick (docs/matcher.md section 7). A match of a gap term contains
// every one of its words, so any word is as sound a trigger as the first.
// gapAnchor picks the longest word after squashing that is not a function
// word or one of the commonest verbs and nouns of titles and chat (the
// object of "send ... noods" is rarer than "send"); verification is
// unchanged and still starts from the first word.
//
// A word other than the first may be joined to the words before it
// ("cutfatty" for "cut fatty"), and then it does not start a text word. A
// long anchor (minAnywhere symbols or more) is therefore looked for
// anywhere, inside words too: five symbols in a row are rare enough. A
// shorter one must start a word, and the term also gets, for each j < k,
// the pattern of words j..k joined: the text word that holds the anchor
// starts with one of them ("die" in "want to die" would otherwise fire in
// every "studies"). Every anchor pattern may end inside a word (the next
// word may be joined to it), so it is open.

// gapAnchor returns the index of the word of pieces the prefilter should
// look for.
func gapAnchor(pieces [][]uint32, commonWords map[string]bool) int {
	bi, bestLen, bestCommon := 0, -1, true
	for i, p := range pieces {
		g := gsquash(p)
		common := commonWords[symString(g)]
		// An uncommon word beats any common one; then the longer wins, and
		// the earlier on a tie.
		if (bestCommon && !common) || (common == bestCommon && len(g) > bestLen) {
			bi, bestLen, bestCommon = i, len(g), common
		}
	}
	return bi
}

// commonAnchorWords returns the squashed loose forms of words too frequent
// in titles and chat to be a good prefilter anchor (built per Compile: the
// normaliser's tables are not ready during package initialisation).
func commonAnchorWords() map[string]bool {
	out := map[string]bool{}
	for _, w := range strings.Fields(`a an the to of in on at for with from by and or but if so as is are was were be been
		i me my you your ur u he him his she her we us our they them it this that what how why who when where
		all any no not one some just like do dont get got go going gonna make made want wanna take took give
		tell send need know see can cant will would should have has had off out up about over after back
		buy find care meet hide cut kill beat fight phone school test pics pic youre im ive its thats lets
		really ever never every everyone someone anyone nobody`) {
		out[symString(gsquash(termPieces(w)[0]))] = true
	}
	return out
}

// prePattern is one prefilter pattern before deduplication.
type prePattern struct {
	syms     []uint32
	open     bool // may end inside a word
	anywhere bool // may start inside a word
}

// minAnywhere is the length (squashed symbols) from which a gap term's
// anchor is looked for inside words too.
const minAnywhere = 5

// prefilterPatterns lists the prefilter patterns of m's terms: each
// verification pattern that a gap-0 term uses, and the anchor of each gap
// term. pats are the verification patterns (see Compile).
func (m *Matcher) prefilterPatterns(pats [][]uint32) []prePattern {
	var out []prePattern
	for pi, p := range pats {
		need, open := false, false
		for _, ti := range m.patTerms[pi] {
			if t := &m.terms[ti]; t.gap == 0 {
				need = true
				open = open || t.prefix
			}
		}
		if need {
			out = append(out, prePattern{syms: gsquash(p), open: open})
		}
	}
	common := commonAnchorWords()
	for ti := range m.terms {
		if t := &m.terms[ti]; t.gap > 0 {
			k := gapAnchor(t.pieces, common)
			if a := gsquash(t.pieces[k]); k > 0 && len(a) >= minAnywhere {
				out = append(out, prePattern{syms: a, open: true, anywhere: true})
				continue
			}
			for j := 0; j <= k; j++ {
				var joined []uint32
				for _, p := range t.pieces[j : k+1] {
					joined = append(joined, p...)
				}
				out = append(out, prePattern{syms: gsquash(joined), open: true})
			}
		}
	}
	return out
}
