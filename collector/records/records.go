// Package records renders the console's exported records: the review form
// of seed 002 Appendix 5 as a PDF, and the incident log as CSV. It knows
// nothing of alerts, routing or who may export: the console decides what
// goes in and hands over plain text.
//
// The PDF embeds DejaVu Sans (fonts/, Bitstream Vera licence, copied from
// Debian's fonts-dejavu-core) so names print as typed in Latin (with
// Latin Extended: Polish, Turkish, Romanian, Czech, Vietnamese...), Greek,
// Cyrillic, Armenian and Georgian. Not covered (their characters print as
// blanks): CJK, the Indic scripts, Thai, Ethiopic; Arabic, Urdu and Hebrew
// glyphs exist but print unjoined and left to right (fpdf shapes no
// text). docs/console.md says the same to schools.
package records

import (
	_ "embed"
	"fmt"
	"io"

	"github.com/go-pdf/fpdf"
)

//go:embed fonts/DejaVuSans.ttf
var sansRegular []byte

//go:embed fonts/DejaVuSans-Bold.ttf
var sansBold []byte

const family = "DejaVuSans"

// Row is a label and its text.
type Row struct{ Label, Text string }

// Choice is one conclusion of the form, ticked or not.
type Choice struct {
	Label  string
	Chosen bool
}

// ReviewForm is the review form's content, already worded.
type ReviewForm struct {
	AlertID        string
	Individual     string // name (login, role)  group: G
	Date           string
	Reason         string
	FirstReviewer  string // name and position
	FirstSigned    string
	SecondReviewer string
	SecondSigned   string
	MakeModel      string
	DeviceID       string
	IPAddress      string
	Category       string // category / severity
	Term           string
	Context        string
	Window         string // window title (process)
	Illegal        string // guidance when the category may be illegal; empty otherwise
	Conclusions    []Choice
	Concluded      string
	Notes          []Row // label: time and author
	History        []string
}

// Options for ReviewFormPDF.
type Options struct {
	// Uncompressed leaves the page streams plain (tests search them).
	Uncompressed bool
}

// AddFonts loads the embedded Unicode font (regular and bold) into pdf and
// returns its family name, for every PDF the collector writes.
func AddFonts(pdf *fpdf.Fpdf) (string, error) {
	pdf.AddUTF8FontFromBytes(family, "", sansRegular)
	pdf.AddUTF8FontFromBytes(family, "B", sansBold)
	if err := pdf.Error(); err != nil {
		return "", fmt.Errorf("load the embedded font: %w", err)
	}
	return family, nil
}

// ReviewFormPDF writes the review form as a PDF.
func ReviewFormPDF(out io.Writer, f ReviewForm, opt Options) error {
	pdf := fpdf.New("P", "mm", "A4", "")
	pdf.SetCompression(!opt.Uncompressed)
	pdf.AddUTF8FontFromBytes(family, "", sansRegular)
	pdf.AddUTF8FontFromBytes(family, "B", sansBold)
	if err := pdf.Error(); err != nil {
		return fmt.Errorf("load the embedded font: %w", err)
	}
	pdf.SetTitle("Record of reviewing devices and/or internet sites", true)
	pdf.SetCreator("Vigil", true)
	pdf.AddPage()
	pdf.SetFont(family, "B", 15)
	pdf.CellFormat(0, 9, "Record of reviewing devices and/or internet sites", "", 1, "L", false, 0, "")
	pdf.SetFont(family, "", 9)
	pdf.CellFormat(0, 5, "Form for responding to incidents of misuse (seed 002 Appendix 5). Alert "+f.AlertID, "", 1, "L", false, 0, "")
	pdf.Ln(3)
	section := func(title string) {
		pdf.Ln(2)
		pdf.SetFont(family, "B", 11)
		pdf.CellFormat(0, 7, title, "B", 1, "L", false, 0, "")
		pdf.SetFont(family, "", 10)
	}
	row := func(k, val string) {
		pdf.SetFont(family, "B", 10)
		pdf.CellFormat(55, 6, k, "", 0, "L", false, 0, "")
		pdf.SetFont(family, "", 10)
		pdf.MultiCell(0, 6, val, "", "L", false)
	}
	section("Individual / group")
	row("Individual/Group", f.Individual)
	row("Date", f.Date)
	row("Reason for investigation", f.Reason)
	section("Details of first reviewing person")
	row("Name and position", f.FirstReviewer)
	row("Signed", f.FirstSigned)
	section("Details of second reviewing person")
	row("Name and position", f.SecondReviewer)
	row("Signed", f.SecondSigned)
	section("Reference details for the device")
	row("Make and model", f.MakeModel)
	row("Device ID", f.DeviceID)
	row("IP address", f.IPAddress)
	section("Reason for concern")
	row("Category / severity", f.Category)
	row("Term", f.Term)
	row("Context", f.Context)
	row("Window / process", f.Window)
	if f.Illegal != "" {
		row("Illegal material", f.Illegal)
	}
	section("Conclusion")
	for _, c := range f.Conclusions {
		mark := "[ ]"
		if c.Chosen {
			mark = "[X]"
		}
		row(mark, c.Label)
	}
	row("Concluded", f.Concluded)
	section("Notes")
	if len(f.Notes) == 0 {
		row("", "none")
	}
	for _, n := range f.Notes {
		row(n.Label, n.Text)
	}
	section("History")
	pdf.SetFont(family, "", 8)
	for _, h := range f.History {
		pdf.MultiCell(0, 4.5, h, "", "L", false)
	}
	return pdf.Output(out)
}
