package reports

import (
	"encoding/csv"
	"encoding/json"
	"fmt"
	"io"
	"sort"
	"time"
)

// Threshold: counts from 1 to Threshold-1 are never shown to governors.
const Threshold = 5

// Cell is a count as governors may see it.
type Cell struct {
	N int
	// Suppressed: 1 to 4 ("fewer than 5"). Withheld: a count of any size
	// hidden so that a total minus the counts shown cannot reveal a
	// suppressed one.
	Suppressed, Withheld bool
}

// Hidden says whether the count is not shown.
func (c Cell) Hidden() bool { return c.Suppressed || c.Withheld }

// String is the cell as printed.
func (c Cell) String() string {
	switch {
	case c.Suppressed:
		return fmt.Sprintf("fewer than %d", Threshold)
	case c.Withheld:
		return "withheld"
	}
	return fmt.Sprint(c.N)
}

// Grid is a table of counts with its row and column totals, suppressed
// together: Rows x Cols cells, RowTotal per row, ColTotal per column and
// Total, each a Cell.
type Grid struct {
	Rows, Cols []string // keys
	RowLabels  []string
	ColLabels  []string
	Cells      [][]Cell // [row][col]
	RowTotal   []Cell
	ColTotal   []Cell
	Total      Cell
}

// MarshalJSON writes a shown count as a number and a hidden one as its
// words, so an API never carries a suppressed count's value.
func (c Cell) MarshalJSON() ([]byte, error) {
	if c.Hidden() {
		return json.Marshal(c.String())
	}
	return json.Marshal(c.N)
}

// UnmarshalJSON reads what MarshalJSON wrote (a hidden count's value is
// not in it, so it reads as zero).
func (c *Cell) UnmarshalJSON(b []byte) error {
	var s string
	if json.Unmarshal(b, &s) == nil {
		*c = Cell{Suppressed: s == Cell{Suppressed: true}.String(), Withheld: s == "withheld"}
		if !c.Hidden() {
			return fmt.Errorf("count %q is neither a number nor a suppressed count", s)
		}
		return nil
	}
	*c = Cell{}
	return json.Unmarshal(b, &c.N)
}

// NewGrid builds a grid from counts[row][col], to be passed to Suppress
// wherever counts are shown to governors (the governors' report and the
// trends the console serves them).
func NewGrid(rows, rowLabels, cols, colLabels []string, counts map[string]map[string]int) *Grid {
	return newGrid(rows, rowLabels, cols, colLabels, counts)
}

// newGrid builds a grid from counts[row][col].
func newGrid(rows, rowLabels, cols, colLabels []string, counts map[string]map[string]int) *Grid {
	g := &Grid{Rows: rows, Cols: cols, RowLabels: rowLabels, ColLabels: colLabels}
	g.Cells = make([][]Cell, len(rows))
	g.RowTotal = make([]Cell, len(rows))
	g.ColTotal = make([]Cell, len(cols))
	for i, r := range rows {
		g.Cells[i] = make([]Cell, len(cols))
		for j, c := range cols {
			n := counts[r][c]
			g.Cells[i][j].N = n
			g.RowTotal[i].N += n
			g.ColTotal[j].N += n
			g.Total.N += n
		}
	}
	return g
}

// lines are the grid's additive relations: each row with its total, each
// column with its total, the row totals with the grand total and the
// column totals with it. The last entry of each line is its total.
func (g *Grid) lines() [][]*Cell {
	var out [][]*Cell
	for i := range g.Rows {
		l := make([]*Cell, 0, len(g.Cols)+1)
		for j := range g.Cols {
			l = append(l, &g.Cells[i][j])
		}
		out = append(out, append(l, &g.RowTotal[i]))
	}
	for j := range g.Cols {
		l := make([]*Cell, 0, len(g.Rows)+1)
		for i := range g.Rows {
			l = append(l, &g.Cells[i][j])
		}
		out = append(out, append(l, &g.ColTotal[j]))
	}
	rt := make([]*Cell, 0, len(g.Rows)+1)
	for i := range g.RowTotal {
		rt = append(rt, &g.RowTotal[i])
	}
	out = append(out, append(rt, &g.Total))
	ct := make([]*Cell, 0, len(g.Cols)+1)
	for j := range g.ColTotal {
		ct = append(ct, &g.ColTotal[j])
	}
	return append(out, append(ct, &g.Total))
}

// suppressPrimary hides every count from 1 to Threshold-1.
func (g *Grid) suppressPrimary() {
	for _, l := range g.lines() {
		for _, c := range l {
			if c.N > 0 && c.N < Threshold {
				c.Suppressed = true
			}
		}
	}
}

// protectOnce applies the complementary rule to every line once and says
// whether anything changed. In a line whose total is hidden, the only sum
// a reader can rebuild is of the shown parts, which reveals nothing unless
// exactly one entry of the line is hidden; in a line whose total is shown,
// the hidden parts must also number at least two and add up to at least
// Threshold, or the difference would pin them down (two hidden cells that
// add to 2 are both 1).
func protectOnce(lines [][]*Cell) bool {
	changed := false
	for _, l := range lines {
		for {
			hidden, sum := 0, 0
			parts, total := l[:len(l)-1], l[len(l)-1]
			for _, c := range parts {
				if c.Hidden() {
					hidden++
					sum += c.N
				}
			}
			need := false
			switch {
			case total.Hidden():
				need = hidden == 0 && total.N > 0 // the parts would add up to the hidden total
			default:
				need = hidden == 1 || hidden > 1 && sum < Threshold
			}
			if !need {
				break
			}
			// Withhold the smallest shown non-zero part (zeros reveal
			// nothing and hiding them protects nothing); if there is none,
			// withhold the total.
			var pick *Cell
			for _, c := range parts {
				if !c.Hidden() && c.N > 0 && (pick == nil || c.N < pick.N) {
					pick = c
				}
			}
			if pick == nil {
				if total.Hidden() {
					break
				}
				pick = total
			}
			pick.Withheld = true
			changed = true
		}
	}
	return changed
}

// Suppress applies the rule of docs/console.md to grids that share their
// row totals (the same alerts split two ways): primary suppression, then
// complementary suppression over every line of every grid, the shared row
// totals hidden in all grids when hidden in one, until nothing changes.
func Suppress(grids ...*Grid) {
	for _, g := range grids {
		g.suppressPrimary()
	}
	var lines [][]*Cell
	for _, g := range grids {
		lines = append(lines, g.lines()...)
	}
	for {
		changed := protectOnce(lines)
		for _, a := range grids {
			for _, b := range grids {
				if a == b || len(a.RowTotal) != len(b.RowTotal) {
					continue
				}
				for i := range a.RowTotal {
					if a.RowTotal[i].Hidden() && !b.RowTotal[i].Hidden() {
						b.RowTotal[i].Withheld, changed = true, true
					}
				}
				if a.Total.Hidden() && !b.Total.Hidden() {
					b.Total.Withheld, changed = true, true
				}
			}
		}
		if !changed {
			return
		}
	}
}

// Governors is the governors' termly report: aggregates only, suppressed.
// It holds no name, username, term, hostname or device id by construction:
// it is built from nothing but each alert's category, time and outcome.
type Governors struct {
	From, To, Generated time.Time
	// ByCategory: months (rows) by category (columns), with totals; the
	// column totals are the term's alerts by category.
	ByCategory *Grid
	// ByOutcome: the same months by outcome; the same row totals.
	ByOutcome *Grid
	// Open: alerts of the term still under review at the report's time.
	Open Cell
}

// Term is a school term as the report names it.
type Term struct {
	Name     string
	From, To time.Time // [From, To)
}

// TermOf is the term t falls in, by the usual English school year: autumn
// September to December, spring January to March, summer April to August
// (the school's exact dates vary; pass them instead where known).
func TermOf(t time.Time) Term {
	t = t.UTC()
	y := t.Year()
	d := func(y int, m time.Month) time.Time { return time.Date(y, m, 1, 0, 0, 0, 0, time.UTC) }
	switch m := t.Month(); {
	case m >= time.September:
		return Term{fmt.Sprintf("Autumn %d", y), d(y, time.September), d(y+1, time.January)}
	case m >= time.April:
		return Term{fmt.Sprintf("Summer %d", y), d(y, time.April), d(y, time.September)}
	}
	return Term{fmt.Sprintf("Spring %d", y), d(y, time.January), d(y, time.April)}
}

// months are the calendar months overlapping [from, to), as "2026-09".
func months(from, to time.Time) (keys, labels []string) {
	m := time.Date(from.UTC().Year(), from.UTC().Month(), 1, 0, 0, 0, 0, time.UTC)
	for ; m.Before(to); m = m.AddDate(0, 1, 0) {
		keys = append(keys, m.Format("2006-01"))
		labels = append(labels, m.Format("Jan 2006"))
	}
	return
}

// BuildGovernors makes the governors' report for alerts observed in
// [from, to).
func BuildGovernors(s Snapshot, from, to time.Time) Governors {
	g := Governors{From: from, To: to, Generated: s.Now}
	rows, rowLabels := months(from, to)
	byCat, byOut := map[string]map[string]int{}, map[string]map[string]int{}
	cats := map[string]bool{}
	seenOut := map[string]bool{}
	open := 0
	for _, a := range s.Alerts {
		obs := a.Finding.GetObservedAt().AsTime()
		if !inWindow(obs, from, to) {
			continue
		}
		mk := obs.UTC().Format("2006-01")
		cat := a.Finding.GetCategory()
		if cat == "" {
			cat = "uncategorised"
		}
		out := Outcome(a.State)
		if byCat[mk] == nil {
			byCat[mk], byOut[mk] = map[string]int{}, map[string]int{}
		}
		byCat[mk][cat]++
		byOut[mk][out]++
		cats[cat], seenOut[out] = true, true
		if !a.State.Status.Closed() {
			open++
		}
	}
	catKeys := make([]string, 0, len(cats))
	for c := range cats {
		catKeys = append(catKeys, c)
	}
	sort.Strings(catKeys)
	var outKeys, outLabels []string
	for _, o := range Outcomes {
		outKeys, outLabels = append(outKeys, o), append(outLabels, OutcomeLabel(o))
		delete(seenOut, o)
	}
	for o := range seenOut { // "concluded" without a recorded conclusion
		outKeys, outLabels = append(outKeys, o), append(outLabels, OutcomeLabel(o))
	}
	g.ByCategory = newGrid(rows, rowLabels, catKeys, catKeys, byCat)
	g.ByOutcome = newGrid(rows, rowLabels, outKeys, outLabels, byOut)
	Suppress(g.ByCategory, g.ByOutcome)
	// Open is not in a grid: alone it is a single count, suppressed by
	// the same threshold; it equals New + In review of the outcome
	// totals, so it is withheld if either of those is hidden.
	g.Open = Cell{N: open, Suppressed: open > 0 && open < Threshold}
	for j, k := range outKeys {
		if (k == "new" || k == "in_review") && g.ByOutcome.ColTotal[j].Hidden() && !g.Open.Hidden() {
			g.Open.Withheld = true
		}
	}
	return g
}

// WriteCSV writes the governors' report: grid,period,column,count rows,
// with counts as printed ("fewer than 5", "withheld").
func (g Governors) WriteCSV(w io.Writer) error {
	cw := csv.NewWriter(w)
	cw.Write([]string{"table", "period", "column", "count"})
	cw.Write([]string{"window", Day(g.From), Day(g.To), "exclusive end"})
	for _, t := range []struct {
		name string
		g    *Grid
	}{{"by_category", g.ByCategory}, {"by_outcome", g.ByOutcome}} {
		for i, r := range t.g.Rows {
			for j := range t.g.Cols {
				cw.Write([]string{t.name, r, t.g.ColLabels[j], t.g.Cells[i][j].String()})
			}
			cw.Write([]string{t.name, r, "total", t.g.RowTotal[i].String()})
		}
		for j := range t.g.Cols {
			cw.Write([]string{t.name, "term", t.g.ColLabels[j], t.g.ColTotal[j].String()})
		}
		cw.Write([]string{t.name, "term", "total", t.g.Total.String()})
	}
	cw.Write([]string{"open", "term", "still under review", g.Open.String()})
	cw.Flush()
	return cw.Error()
}

// WritePDF renders the governors' report: trends as lines, the term by
// category and by outcome as bars, then the tables with totals.
func (g Governors) WritePDF(w io.Writer) error {
	r := newRenderer("Vigil governors' report")
	r.heading("Filtering and monitoring: governors' report", 15)
	r.para(fmt.Sprintf("Alerts observed from %s to %s (exclusive end); outcomes as at %s.", Day(g.From), Day(g.To), reportStamp(g.Generated)))
	r.para(fmt.Sprintf("Aggregates only. So that no child can be identified, counts from 1 to %d are shown as \"fewer than %d\", and a count that would let them be worked out from a total is shown as \"withheld\". Such counts are not drawn in the charts.", Threshold-1, Threshold))
	r.section("Alerts: " + g.ByCategory.Total.String())
	trend := func(gr *Grid) []Series {
		var ss []Series
		for j := range gr.Cols {
			s := Series{Name: gr.ColLabels[j]}
			for i := range gr.Rows {
				s.Values = append(s.Values, gr.Cells[i][j].N)
				s.Shown = append(s.Shown, !gr.Cells[i][j].Hidden())
			}
			ss = append(ss, s)
		}
		t := Series{Name: "All alerts"}
		for i := range gr.Rows {
			t.Values = append(t.Values, gr.RowTotal[i].N)
			t.Shown = append(t.Shown, !gr.RowTotal[i].Hidden())
		}
		return append([]Series{t}, ss...)
	}
	r.lineChart("Alerts by month and category", g.ByCategory.RowLabels, trend(g.ByCategory))
	termBars := func(gr *Grid) []ChartBar {
		var bs []ChartBar
		for j := range gr.Cols {
			c := gr.ColTotal[j]
			bs = append(bs, ChartBar{Label: gr.ColLabels[j], N: c.N, Hidden: c.Hidden(), Note: c.String()})
		}
		return bs
	}
	r.barChart("The term by category", termBars(g.ByCategory))
	r.barChart("The term by outcome", termBars(g.ByOutcome))
	r.para("Still under review at the time of the report: " + g.Open.String() + ".")
	r.pdf.AddPage()
	r.section("Alerts by month and category")
	r.gridTable(g.ByCategory)
	r.section("Alerts by month and outcome")
	r.lineChart("Outcomes by month", g.ByOutcome.RowLabels, trend(g.ByOutcome)[1:])
	r.gridTable(g.ByOutcome)
	return r.write(w)
}

// gridTable prints a grid transposed (one row per column key, one column
// per month, then the term total) so that many categories fit the page.
func (r *renderer) gridTable(g *Grid) {
	header := append(append([]string{""}, g.RowLabels...), "Term")
	widths := []float64{50}
	rest := (180.0 - 50) / float64(len(g.Rows)+1)
	for range len(g.Rows) + 1 {
		widths = append(widths, rest)
	}
	var rows [][]string
	for j := range g.Cols {
		row := []string{g.ColLabels[j]}
		for i := range g.Rows {
			row = append(row, g.Cells[i][j].String())
		}
		rows = append(rows, append(row, g.ColTotal[j].String()))
	}
	total := []string{"Total"}
	for i := range g.Rows {
		total = append(total, g.RowTotal[i].String())
	}
	rows = append(rows, append(total, g.Total.String()))
	r.table(widths, header, rows)
}
