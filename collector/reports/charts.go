package reports

import (
	"fmt"
	"io"
	"math"

	"github.com/go-pdf/fpdf"
)

// renderer is one PDF being written, with its text translator.
type renderer struct {
	pdf *fpdf.Fpdf
	tr  func(string) string
}

// newRenderer starts an A4 report with the core Helvetica font (every PDF
// reader has it; no font files to ship). Text goes through the cp1252
// translator, the encoding of the core fonts.
func newRenderer(title string) *renderer {
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetTitle(title, true)
	pdf.SetCreator("Vigil", true)
	pdf.SetMargins(15, 15, 15)
	pdf.SetAutoPageBreak(true, 15)
	r := &renderer{pdf: pdf, tr: pdf.UnicodeTranslatorFromDescriptor("")}
	pdf.SetFooterFunc(func() {
		pdf.SetY(-12)
		pdf.SetFont("Helvetica", "", 8)
		pdf.CellFormat(0, 5, r.tr(fmt.Sprintf("%s - page %d", title, pdf.PageNo())), "", 0, "C", false, 0, "")
	})
	pdf.AddPage()
	return r
}

func (r *renderer) heading(text string, size float64) {
	r.pdf.SetFont("Helvetica", "B", size)
	r.pdf.CellFormat(0, size*0.55, r.tr(text), "", 1, "L", false, 0, "")
	r.pdf.SetFont("Helvetica", "", 10)
}

func (r *renderer) section(text string) {
	r.pdf.Ln(3)
	r.pdf.SetFont("Helvetica", "B", 12)
	r.pdf.CellFormat(0, 7, r.tr(text), "B", 1, "L", false, 0, "")
	r.pdf.Ln(1)
	r.pdf.SetFont("Helvetica", "", 10)
}

func (r *renderer) para(text string) {
	r.pdf.SetFont("Helvetica", "", 9)
	r.pdf.MultiCell(0, 4.5, r.tr(text), "", "L", false)
	r.pdf.SetFont("Helvetica", "", 10)
}

// table writes rows under a header; widths in mm (the last may be 0: the
// rest of the line).
func (r *renderer) table(widths []float64, header []string, rows [][]string) {
	pw, _ := r.pdf.GetPageSize()
	l, _, rm, _ := r.pdf.GetMargins()
	ws := append([]float64(nil), widths...)
	used := 0.0
	for _, w := range ws[:len(ws)-1] {
		used += w
	}
	if ws[len(ws)-1] == 0 {
		ws[len(ws)-1] = pw - l - rm - used
	}
	r.pdf.SetFont("Helvetica", "B", 9)
	r.pdf.SetFillColor(230, 230, 230)
	for i, h := range header {
		r.pdf.CellFormat(ws[i], 6, r.tr(h), "1", 0, "L", true, 0, "")
	}
	r.pdf.Ln(-1)
	r.pdf.SetFont("Helvetica", "", 9)
	if len(rows) == 0 {
		r.pdf.CellFormat(pw-l-rm, 6, r.tr("None."), "1", 1, "L", false, 0, "")
	}
	for _, row := range rows {
		for i, c := range row {
			r.pdf.CellFormat(ws[i], 6, r.tr(c), "1", 0, "L", false, 0, "")
		}
		r.pdf.Ln(-1)
	}
	r.pdf.SetFont("Helvetica", "", 10)
}

// palette: distinguishable on screen and in greyscale print.
var palette = [][3]int{{31, 119, 180}, {255, 127, 14}, {44, 160, 44}, {214, 39, 40}, {148, 103, 189}, {140, 86, 75}, {227, 119, 194}, {127, 127, 127}, {188, 189, 34}, {23, 190, 207}}

// ChartBar is one bar of a chart; a Hidden bar is drawn as its Note, no bar, so
// a suppressed count is not given away by a bar's length.
type ChartBar struct {
	Label  string
	N      int
	Hidden bool
	Note   string
}

// barChart draws horizontal bars, one per line, scaled to the largest.
func (r *renderer) barChart(title string, bars []ChartBar) {
	pdf := r.pdf
	pw, _ := pdf.GetPageSize()
	l, _, rm, _ := pdf.GetMargins()
	const labelW, rowH = 55.0, 6.0
	plotW := pw - l - rm - labelW - 25
	if pdf.GetY()+float64(len(bars))*rowH+12 > 280 {
		pdf.AddPage()
	}
	pdf.SetFont("Helvetica", "B", 10)
	pdf.CellFormat(0, 6, r.tr(title), "", 1, "L", false, 0, "")
	pdf.SetFont("Helvetica", "", 9)
	maxN := 1
	for _, b := range bars {
		if !b.Hidden && b.N > maxN {
			maxN = b.N
		}
	}
	y := pdf.GetY()
	for i, b := range bars {
		c := palette[i%len(palette)]
		pdf.SetXY(l, y)
		pdf.CellFormat(labelW, rowH, r.tr(b.Label), "", 0, "R", false, 0, "")
		x := l + labelW + 2
		if b.Hidden {
			pdf.SetDrawColor(150, 150, 150)
			pdf.SetDashPattern([]float64{1, 1}, 0)
			pdf.Rect(x, y+1, 8, rowH-2, "D")
			pdf.SetDashPattern(nil, 0)
			pdf.SetDrawColor(0, 0, 0)
			pdf.SetXY(x+10, y)
			pdf.CellFormat(40, rowH, r.tr(b.Note), "", 0, "L", false, 0, "")
		} else {
			w := plotW * float64(b.N) / float64(maxN)
			pdf.SetFillColor(c[0], c[1], c[2])
			if w > 0 {
				pdf.Rect(x, y+1, w, rowH-2, "F")
			}
			pdf.SetXY(x+w+1, y)
			pdf.CellFormat(20, rowH, fmt.Sprint(b.N), "", 0, "L", false, 0, "")
		}
		y += rowH
	}
	pdf.SetXY(l, y+2)
	pdf.SetFont("Helvetica", "", 10)
}

// Series is one line of a line chart; a point with !Shown[i] is left out
// (the line breaks there) so a suppressed count is not drawn.
type Series struct {
	Name   string
	Values []int
	Shown  []bool
}

// lineChart draws series over the x labels with axes, a y scale and a
// legend.
func (r *renderer) lineChart(title string, xs []string, series []Series) {
	pdf := r.pdf
	pw, _ := pdf.GetPageSize()
	l, _, rm, _ := pdf.GetMargins()
	const h = 60.0
	legendRows := (len(series) + 2) / 3
	if pdf.GetY()+h+20+float64(legendRows)*5 > 280 {
		pdf.AddPage()
	}
	pdf.SetFont("Helvetica", "B", 10)
	pdf.CellFormat(0, 6, r.tr(title), "", 1, "L", false, 0, "")
	pdf.SetFont("Helvetica", "", 8)
	x0, y0 := l+12, pdf.GetY()+2
	w := pw - l - rm - 14
	maxN := 0
	for _, s := range series {
		for i, v := range s.Values {
			if s.Shown[i] && v > maxN {
				maxN = v
			}
		}
	}
	step := niceStep(maxN)
	top := int(math.Ceil(float64(max(maxN, 1))/float64(step))) * step
	yAt := func(v int) float64 { return y0 + h - h*float64(v)/float64(top) }
	pdf.SetDrawColor(200, 200, 200)
	for v := 0; v <= top; v += step {
		pdf.Line(x0, yAt(v), x0+w, yAt(v))
		pdf.SetXY(l, yAt(v)-2)
		pdf.CellFormat(10, 4, fmt.Sprint(v), "", 0, "R", false, 0, "")
	}
	pdf.SetDrawColor(0, 0, 0)
	pdf.Line(x0, y0, x0, y0+h)
	pdf.Line(x0, y0+h, x0+w, y0+h)
	n := len(xs)
	xAt := func(i int) float64 {
		if n == 1 {
			return x0 + w/2
		}
		return x0 + 5 + (w-10)*float64(i)/float64(n-1)
	}
	for i, lab := range xs {
		pdf.SetXY(xAt(i)-12, y0+h+1)
		pdf.CellFormat(24, 4, r.tr(lab), "", 0, "C", false, 0, "")
	}
	pdf.SetLineWidth(0.6)
	for si, s := range series {
		c := palette[si%len(palette)]
		pdf.SetDrawColor(c[0], c[1], c[2])
		pdf.SetFillColor(c[0], c[1], c[2])
		for i, v := range s.Values {
			if !s.Shown[i] {
				continue
			}
			if i > 0 && s.Shown[i-1] {
				pdf.Line(xAt(i-1), yAt(s.Values[i-1]), xAt(i), yAt(v))
			}
			pdf.Circle(xAt(i), yAt(v), 0.9, "F")
		}
	}
	pdf.SetLineWidth(0.2)
	pdf.SetDrawColor(0, 0, 0)
	ly := y0 + h + 7
	for si, s := range series {
		c := palette[si%len(palette)]
		lx := l + float64(si%3)*60
		if si%3 == 0 && si > 0 {
			ly += 5
		}
		pdf.SetFillColor(c[0], c[1], c[2])
		pdf.Rect(lx, ly+1, 4, 3, "F")
		pdf.SetXY(lx+5, ly)
		pdf.CellFormat(55, 5, r.tr(s.Name), "", 0, "L", false, 0, "")
	}
	pdf.SetXY(l, ly+7)
	pdf.SetFont("Helvetica", "", 10)
}

// niceStep is a gridline step giving about five lines up to maxN.
func niceStep(maxN int) int {
	for _, s := range []int{1, 2, 5, 10, 20, 25, 50, 100, 200, 250, 500, 1000, 2000, 5000, 10000} {
		if maxN/s <= 5 {
			return s
		}
	}
	return int(math.Pow10(int(math.Log10(float64(maxN)))))
}

func (r *renderer) write(w io.Writer) error {
	if err := r.pdf.Output(w); err != nil {
		return fmt.Errorf("reports: write PDF: %w", err)
	}
	return nil
}
