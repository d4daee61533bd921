package reports

import (
	"fmt"
	"testing"
)

// grid builds a grid of counts[row][col] with keys r0.., c0...
func testGrid(counts [][]int) *Grid {
	var rows, cols []string
	m := map[string]map[string]int{}
	for i, r := range counts {
		rows = append(rows, fmt.Sprintf("r%d", i))
		m[rows[i]] = map[string]int{}
		for j, n := range r {
			if i == 0 {
				cols = append(cols, fmt.Sprintf("c%d", j))
			}
			m[rows[i]][cols[j]] = n
		}
	}
	return newGrid(rows, rows, cols, cols, m)
}

func shown(g *Grid) (cells [][]string, rowT, colT []string, total string) {
	for i := range g.Rows {
		var r []string
		for j := range g.Cols {
			r = append(r, g.Cells[i][j].String())
		}
		cells = append(cells, r)
		rowT = append(rowT, g.RowTotal[i].String())
	}
	for j := range g.Cols {
		colT = append(colT, g.ColTotal[j].String())
	}
	return cells, rowT, colT, g.Total.String()
}

const (
	few = "fewer than 5"
	wh  = "withheld"
)

func TestSuppressionRule(t *testing.T) {
	for _, tc := range []struct {
		name   string
		counts [][]int
		cells  [][]string
		rowT   []string
		colT   []string
		total  string
	}{
		{"nothing small", [][]int{{10, 5, 7}}, [][]string{{"10", "5", "7"}}, []string{"22"}, []string{"10", "5", "7"}, "22"},
		{"zeros are shown", [][]int{{0, 0}}, [][]string{{"0", "0"}}, []string{"0"}, []string{"0", "0"}, "0"},
		// One small cell: the total minus the others would give it, so the
		// smallest other count is withheld too (and its column total).
		{"one small cell", [][]int{{10, 3, 7}}, [][]string{{"10", few, wh}}, []string{"20"}, []string{"10", few, wh}, "20"},
		// Two small cells adding to 2 would both be 1: a third is withheld.
		{"small cells adding to less than 5", [][]int{{10, 1, 1, 8}}, [][]string{{"10", few, few, wh}}, []string{"20"}, []string{"10", few, few, wh}, "20"},
		// Two small cells adding to 5 or more protect each other.
		{"small cells protecting each other", [][]int{{10, 3, 4}}, [][]string{{"10", few, few}}, []string{"17"}, []string{"10", few, few}, "17"},
		{"small total", [][]int{{2, 1, 0}}, [][]string{{few, few, "0"}}, []string{few}, []string{few, few, "0"}, few},
		// Across both directions: the small cell's row and column each
		// need a second hidden count, which then need theirs.
		{"rows and columns", [][]int{{10, 6}, {3, 9}}, [][]string{{wh, wh}, {few, wh}}, []string{"16", "12"}, []string{"13", "15"}, "28"},
		// A month with few alerts: its total is suppressed, so the other
		// month's total is withheld (the term total would give it), and
		// the small cell's column partner.
		{"small month", [][]int{{10, 6}, {2, 0}}, [][]string{{wh, "6"}, {few, "0"}}, []string{wh, few}, []string{"12", "6"}, "18"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			g := testGrid(tc.counts)
			Suppress(g)
			cells, rowT, colT, total := shown(g)
			if fmt.Sprint(cells) != fmt.Sprint(tc.cells) || fmt.Sprint(rowT) != fmt.Sprint(tc.rowT) || fmt.Sprint(colT) != fmt.Sprint(tc.colT) || total != tc.total {
				t.Errorf("counts %v\n got cells %q rows %q cols %q total %q\nwant cells %q rows %q cols %q total %q",
					tc.counts, cells, rowT, colT, total, tc.cells, tc.rowT, tc.colT, tc.total)
			}
			checkProtected(t, g)
		})
	}
}

// checkProtected: no line of the grid has exactly one hidden entry (parts
// and total), and where the total is shown the hidden parts add up to at
// least Threshold, so no hidden count follows from those shown.
func checkProtected(t *testing.T, gs ...*Grid) {
	t.Helper()
	for _, g := range gs {
		for _, l := range g.lines() {
			hidden, sum := 0, 0
			for _, c := range l {
				if c.Hidden() {
					hidden++
					if c != l[len(l)-1] {
						sum += c.N
					}
				}
			}
			if hidden == 1 {
				t.Errorf("a line has exactly one hidden count: it follows from the others")
			}
			if !l[len(l)-1].Hidden() && hidden > 0 && sum < Threshold {
				t.Errorf("hidden counts of a line with a shown total add to %d (< %d)", sum, Threshold)
			}
		}
	}
}

// Grids of the same alerts share their month totals: one hidden in one grid
// is hidden in the other, or the other would print it.
func TestSuppressionSharedTotals(t *testing.T) {
	byCat := testGrid([][]int{{10, 6}, {2, 1}})
	byOut := testGrid([][]int{{16, 0}, {3, 0}}) // the same months: 16 and 3
	Suppress(byCat, byOut)
	for i := range byCat.RowTotal {
		if byCat.RowTotal[i].Hidden() != byOut.RowTotal[i].Hidden() {
			t.Errorf("month %d total hidden in one grid (%v) but not the other (%v)", i, byCat.RowTotal[i], byOut.RowTotal[i])
		}
	}
	if !byOut.RowTotal[0].Hidden() {
		t.Errorf("month 0 total shown as %v: with the term total it gives month 1's 3", byOut.RowTotal[0])
	}
	checkProtected(t, byCat, byOut)
}

// Random grids: whatever the counts, the rule leaves no hidden count that a
// single line would give away, and shows every count it does not hide.
func TestSuppressionProperty(t *testing.T) {
	seed := uint64(42)
	next := func(n int) int { seed = seed*6364136223846793005 + 1442695040888963407; return int(seed>>33) % n }
	for k := 0; k < 500; k++ {
		rows, cols := 1+next(4), 1+next(6)
		counts := make([][]int, rows)
		for i := range counts {
			for range cols {
				counts[i] = append(counts[i], []int{0, 0, 1, 2, 3, 4, 5, 6, 9, 15, 40}[next(11)])
			}
		}
		g := testGrid(counts)
		Suppress(g)
		checkProtected(t, g)
		for _, l := range g.lines() {
			for _, c := range l {
				if c.N > 0 && c.N < Threshold && !c.Suppressed {
					t.Fatalf("counts %v: %d shown", counts, c.N)
				}
			}
		}
		if t.Failed() {
			t.Fatalf("counts %v", counts)
		}
	}
}
