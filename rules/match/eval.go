package match

import (
	"bufio"
	"fmt"
	"io"
	"sort"
	"strings"

	"github.com/vigil-safeguarding/vigil/rules"
)

// NoneLabel labels a line of an evaluation set that must not match at all.
const NoneLabel = "none"

// EvalLine is one labelled line of an evaluation set: a window title or a
// line of screen text and the categories a DSL wants it flagged under (any
// one of them counts as caught), or none.
type EvalLine struct {
	Labels []string // nil for a benign ("none") line
	Text   string
	Pos    rules.Pos
}

// Harmful reports whether the line must be flagged.
func (l EvalLine) Harmful() bool { return len(l.Labels) > 0 }

// ParseEvalSet reads an evaluation set: one `LABEL<TAB>TEXT` per line,
// LABEL a category id, several joined by commas, or "none"; blank lines and
// lines starting with '#' are skipped. Every malformed line is reported.
func ParseEvalSet(name string, data []byte) ([]EvalLine, rules.Errors) {
	lr, errs := checkFile(name, data)
	if errs != nil {
		return nil, errs
	}
	var out []EvalLine
	for {
		line, ok := lr.next()
		if !ok {
			break
		}
		if strings.TrimSpace(line) == "" || strings.HasPrefix(line, "#") {
			continue
		}
		pos := rules.Pos{File: name, Line: lr.line, Col: 1}
		label, text, ok := strings.Cut(line, "\t")
		text = strings.TrimSpace(text)
		if !ok || text == "" {
			errs = append(errs, rules.Error{Pos: pos, Msg: "want LABEL<TAB>TEXT"})
			continue
		}
		l := EvalLine{Text: text, Pos: pos}
		if label != NoneLabel {
			for _, c := range strings.Split(label, ",") {
				if !categoryRE.MatchString(c) || c == NoneLabel {
					errs = append(errs, rules.Error{Pos: pos, Msg: fmt.Sprintf("bad label %q: want category ids joined by commas, or %q", label, NoneLabel)})
					l.Labels = nil
					break
				}
				l.Labels = append(l.Labels, c)
			}
			if l.Labels == nil {
				continue
			}
		}
		out = append(out, l)
	}
	if len(errs) > 0 {
		return nil, errs
	}
	return out, nil
}

// EvalScore counts one category's lines (or all of them). A harmful line
// belongs to its first label; it is caught when a match of any of its
// labels is found.
type EvalScore struct {
	Category  string  `json:"category"`
	Lines     int     `json:"lines"`               // harmful lines (first label)
	Caught    int     `json:"caught"`              // of those, caught
	Flagged   int     `json:"flagged"`             // lines with a match of this category
	Correct   int     `json:"correct"`             // of those, labelled with it
	BenignHit int     `json:"benign_hits"`         // benign lines with a match of this category
	Recall    float64 `json:"recall"`              // Caught / Lines
	Precision float64 `json:"precision"`           // Correct / Flagged
	FPRate    float64 `json:"false_positive_rate"` // BenignHit / benign lines
}

// EvalResult is one line that went wrong: a harmful line not caught (with
// any matches of other categories), or a benign line that matched.
type EvalResult struct {
	Pos     string   `json:"pos"`
	Labels  []string `json:"labels,omitempty"`
	Text    string   `json:"text"`
	Matches []string `json:"matches,omitempty"` // "category: term"
}

// EvalReport is the outcome of Evaluate.
type EvalReport struct {
	Lines          int          `json:"lines"`
	Harmful        int          `json:"harmful"`
	Benign         int          `json:"benign"`
	Categories     []EvalScore  `json:"categories"` // sorted by category
	Overall        EvalScore    `json:"overall"`    // Category "all"; FPRate: benign lines with any match
	Misses         []EvalResult `json:"misses"`
	FalsePositives []EvalResult `json:"false_positives"`
}

// Evaluate runs every line through m and scores it: recall per category
// and overall, precision, and the share of benign lines with any match.
// It is what `vigil-agent rules eval` prints and what the evaluation gate
// test checks, so the published figures and the gate cannot disagree.
func Evaluate(m *Matcher, lines []EvalLine) *EvalReport {
	r := &EvalReport{Lines: len(lines)}
	by := map[string]*EvalScore{}
	score := func(c string) *EvalScore {
		s := by[c]
		if s == nil {
			s = &EvalScore{Category: c}
			by[c] = s
		}
		return s
	}
	all := EvalScore{Category: "all"}
	var buf []Match
	for _, l := range lines {
		buf = m.FindAppend(buf[:0], l.Text)
		cats := map[string]bool{}
		var terms []string
		for _, x := range buf {
			cats[x.Category] = true
			terms = append(terms, x.Category+": "+x.Term)
		}
		for c := range cats {
			s := score(c)
			s.Flagged++
			if contains(l.Labels, c) {
				s.Correct++
			}
			if !l.Harmful() {
				s.BenignHit++
			}
		}
		res := EvalResult{Pos: l.Pos.String(), Labels: l.Labels, Text: l.Text, Matches: terms}
		if !l.Harmful() {
			r.Benign++
			if len(buf) > 0 {
				all.Flagged++
				all.BenignHit++
				r.FalsePositives = append(r.FalsePositives, res)
			}
			continue
		}
		r.Harmful++
		all.Lines++
		s := score(l.Labels[0])
		s.Lines++
		caught := false
		for _, c := range l.Labels {
			caught = caught || cats[c]
		}
		if len(buf) > 0 {
			all.Flagged++
		}
		if caught {
			s.Caught++
			all.Caught++
			all.Correct++
		} else {
			r.Misses = append(r.Misses, res)
		}
	}
	for _, s := range by {
		s.finish(r.Benign)
		r.Categories = append(r.Categories, *s)
	}
	sort.Slice(r.Categories, func(i, j int) bool { return r.Categories[i].Category < r.Categories[j].Category })
	all.finish(r.Benign)
	r.Overall = all
	return r
}

func (s *EvalScore) finish(benign int) {
	s.Recall = ratio(s.Caught, s.Lines)
	s.Precision = ratio(s.Correct, s.Flagged)
	if benign > 0 {
		s.FPRate = float64(s.BenignHit) / float64(benign)
	}
}

// ratio is a/b, and 1 for 0/0 (nothing to find, nothing wrongly found).
func ratio(a, b int) float64 {
	if b == 0 {
		return 1
	}
	return float64(a) / float64(b)
}

func contains(xs []string, x string) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

// WriteText writes the report for people: a table of precision, recall and
// false-positive rate per category and overall, then every miss and every
// false positive with its position in the set.
func (r *EvalReport) WriteText(w io.Writer) error {
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "%d lines: %d harmful, %d benign (%.1f%%)\n\n", r.Lines, r.Harmful, r.Benign, 100*ratioOr0(r.Benign, r.Lines))
	fmt.Fprintf(bw, "%-16s %7s %7s %9s %7s %9s %8s %8s\n", "category", "lines", "caught", "recall", "flagged", "precision", "benign", "fp-rate")
	row := func(s EvalScore) {
		fmt.Fprintf(bw, "%-16s %7d %7d %9.3f %7d %9.3f %8d %8.3f\n", s.Category, s.Lines, s.Caught, s.Recall, s.Flagged, s.Precision, s.BenignHit, s.FPRate)
	}
	for _, s := range r.Categories {
		row(s)
	}
	row(r.Overall)
	fmt.Fprintf(bw, "\nmisses (%d):\n", len(r.Misses))
	for _, x := range r.Misses {
		fmt.Fprintf(bw, "%s: [%s] %s", x.Pos, strings.Join(x.Labels, ","), x.Text)
		if len(x.Matches) > 0 {
			fmt.Fprintf(bw, "  (matched %s)", strings.Join(x.Matches, "; "))
		}
		fmt.Fprintln(bw)
	}
	fmt.Fprintf(bw, "\nfalse positives (%d):\n", len(r.FalsePositives))
	for _, x := range r.FalsePositives {
		fmt.Fprintf(bw, "%s: %s  (matched %s)\n", x.Pos, x.Text, strings.Join(x.Matches, "; "))
	}
	return bw.Flush()
}

func ratioOr0(a, b int) float64 {
	if b == 0 {
		return 0
	}
	return float64(a) / float64(b)
}
