// Package reports renders the collector's reports (audit records, monitoring
// and governors' reports) as PDF and CSV documents. This file holds the
// layout helpers every report shares: the font, headings, tables and bar
// charts, so each report only decides what it says.
package reports

import (
	"fmt"
	"github.com/vigil-safeguarding/vigil/collector/records"
	"io"

	"github.com/go-pdf/fpdf"
)

// Page geometry in millimetres (A4 portrait).
const (
	pageMargin = 15.0
	pageWidth  = 210.0
	bodyWidth  = pageWidth - 2*pageMargin
	lineHeight = 5.0
)

// Doc wraps an fpdf document with the shared report layout.
type Doc struct {
	pdf *fpdf.Fpdf
	// tr converts UTF-8 to the encoding of the loaded font.
	tr     func(string) string
	family string
}

// newDoc starts an A4 document with the report font, a title in the header of
// every page and page numbers in the footer.
func newDoc(title string) *Doc {
	p := fpdf.New("P", "mm", "A4", "")
	p.SetMargins(pageMargin, pageMargin, pageMargin)
	p.SetAutoPageBreak(true, pageMargin+5)
	d := &Doc{pdf: p}
	loadFont(d)
	p.SetTitle(title, true)
	p.SetCreator("Vigil", true)
	p.SetFooterFunc(func() {
		p.SetY(-pageMargin)
		p.SetFont(d.family, "", 8)
		p.SetTextColor(110, 110, 110)
		p.CellFormat(0, 5, d.tr(fmt.Sprintf("%s - page %d", title, p.PageNo())), "", 0, "C", false, 0, "")
		p.SetTextColor(0, 0, 0)
	})
	p.AddPage()
	return d
}

// loadFont selects the report font: the collector's embedded DejaVu Sans
// (collector/records), so names and titles print as typed; if it cannot be
// loaded the core Helvetica font with a cp1252 translation is used.
func loadFont(d *Doc) {
	if fam, err := records.AddFonts(d.pdf); err == nil {
		d.family, d.tr = fam, func(s string) string { return s }
		return
	}
	d.family = "Helvetica"
	d.tr = d.pdf.UnicodeTranslatorFromDescriptor("cp1252")
}

// Title prints the report's main title.
func (d *Doc) Title(s string) {
	d.pdf.SetFont(d.family, "B", 16)
	d.pdf.MultiCell(bodyWidth, 8, d.tr(s), "", "L", false)
	d.pdf.Ln(2)
}

// Heading prints a section heading.
func (d *Doc) Heading(s string) {
	d.pdf.Ln(2)
	d.pdf.SetFont(d.family, "B", 12)
	d.pdf.MultiCell(bodyWidth, 6, d.tr(s), "", "L", false)
	d.pdf.Ln(1)
}

// Para prints a paragraph of body text.
func (d *Doc) Para(s string) {
	d.pdf.SetFont(d.family, "", 10)
	d.pdf.MultiCell(bodyWidth, lineHeight, d.tr(s), "", "L", false)
}

// Field prints "label: value" with the label in bold.
func (d *Doc) Field(label, value string) {
	d.pdf.SetFont(d.family, "B", 10)
	d.pdf.CellFormat(40, lineHeight, d.tr(label), "", 0, "L", false, 0, "")
	d.pdf.SetFont(d.family, "", 10)
	d.pdf.MultiCell(bodyWidth-40, lineHeight, d.tr(value), "", "L", false)
}

// Table prints a table with a bold header row. widths are fractions of the
// body width; cells that do not fit are cut with an ellipsis rather than
// wrapped, so rows stay one line and long software lists stay readable.
func (d *Doc) Table(widths []float64, header []string, rows [][]string) {
	w := make([]float64, len(widths))
	for i, f := range widths {
		w[i] = f * bodyWidth
	}
	row := func(cells []string, bold bool) {
		style := ""
		if bold {
			style = "B"
		}
		d.pdf.SetFont(d.family, style, 9)
		for i := range w {
			s := ""
			if i < len(cells) {
				s = d.fit(d.tr(cells[i]), w[i]-2)
			}
			d.pdf.CellFormat(w[i], lineHeight, s, "B", 0, "L", bold, 0, "")
		}
		d.pdf.Ln(-1)
	}
	d.pdf.SetFillColor(230, 230, 230)
	row(header, true)
	for _, r := range rows {
		if d.pdf.GetY() > 297-pageMargin-12 {
			d.pdf.AddPage()
			row(header, true)
		}
		row(r, false)
	}
	d.pdf.Ln(2)
}

// fit shortens an already translated string to the given width.
func (d *Doc) fit(s string, width float64) string {
	if d.pdf.GetStringWidth(s) <= width {
		return s
	}
	r := []byte(s)
	for len(r) > 0 && d.pdf.GetStringWidth(string(r)+"...") > width {
		r = r[:len(r)-1]
	}
	return string(r) + "..."
}

// Bar is one bar of a horizontal stacked bar chart.
type Bar struct {
	Label string
	// Parts are the stacked segments in order, drawn with Colours.
	Parts []float64
}

// BarChart draws horizontal stacked bars, one per row, scaled to the largest
// total, with a legend. colours are RGB triples matched to legend entries.
func (d *Doc) BarChart(bars []Bar, legend []string, colours [][3]int) {
	if len(bars) == 0 {
		return
	}
	labelW := 55.0
	chartW := bodyWidth - labelW - 15
	maxTotal := 0.0
	for _, b := range bars {
		t := 0.0
		for _, p := range b.Parts {
			t += p
		}
		if t > maxTotal {
			maxTotal = t
		}
	}
	if maxTotal == 0 {
		maxTotal = 1
	}
	d.pdf.SetFont(d.family, "", 9)
	for _, b := range bars {
		if d.pdf.GetY() > 297-pageMargin-12 {
			d.pdf.AddPage()
		}
		y := d.pdf.GetY()
		d.pdf.CellFormat(labelW, 6, d.fit(d.tr(b.Label), labelW-2), "", 0, "L", false, 0, "")
		x := pageMargin + labelW
		total := 0.0
		for i, p := range b.Parts {
			if p <= 0 {
				continue
			}
			c := colours[i%len(colours)]
			d.pdf.SetFillColor(c[0], c[1], c[2])
			wd := p / maxTotal * chartW
			d.pdf.Rect(x, y+1, wd, 4, "F")
			x += wd
			total += p
		}
		d.pdf.SetXY(x+1, y)
		d.pdf.CellFormat(14, 6, fmt.Sprintf("%g", total), "", 0, "L", false, 0, "")
		d.pdf.SetXY(pageMargin, y+6)
	}
	// Legend.
	d.pdf.Ln(1)
	x := pageMargin
	y := d.pdf.GetY()
	for i, l := range legend {
		c := colours[i%len(colours)]
		d.pdf.SetFillColor(c[0], c[1], c[2])
		d.pdf.Rect(x, y+1.5, 3, 3, "F")
		d.pdf.SetXY(x+4, y)
		w := d.pdf.GetStringWidth(d.tr(l)) + 6
		d.pdf.CellFormat(w, 6, d.tr(l), "", 0, "L", false, 0, "")
		x += w + 4
	}
	d.pdf.SetXY(pageMargin, y+8)
}

// Write finishes the document and writes it to w.
func (d *Doc) Write(w io.Writer) error {
	if err := d.pdf.Output(w); err != nil {
		return fmt.Errorf("rendering PDF: %w", err)
	}
	return nil
}
