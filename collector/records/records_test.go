package records

import (
	"bytes"
	"encoding/csv"
	"strings"
	"testing"

	"github.com/vigil-safeguarding/vigil/internal/testutil"
)

// TestReviewFormPrintsNamesAsTyped: names, notes and history in Polish,
// Turkish, Romanian, Greek and Cyrillic come back out of the PDF as typed
// (issue 10 item 3: "Łucja Wiśniewska" printed as ".ucja Wi.niewska").
func TestReviewFormPrintsNamesAsTyped(t *testing.T) {
	names := map[string]string{
		"Polish":    "Łucja Wiśniewska",
		"Turkish":   "Çağrı Öztürk, İlkay Şahin",
		"Romanian":  "Ștefan Țîrlea, Ioana Mărginean",
		"Greek":     "Αικατερίνη Παπαδοπούλου",
		"Ukrainian": "Олександра Ковальчук, Їжак Ґудзь",
		"Russian":   "Владимир Щербаков",
	}
	f := ReviewForm{
		AlertID:        "dev-1",
		Individual:     names["Polish"] + " (lwisniewska, pupil)  group: pupils",
		Reason:         "Zażółć gęślą jaźń: " + names["Russian"],
		FirstReviewer:  names["Turkish"] + " (dsl1, Designated Safeguarding Lead)",
		SecondReviewer: names["Romanian"] + " (head, Headteacher)",
		Context:        names["Greek"],
		Conclusions:    []Choice{{Label: "Parents informed", Chosen: true}, {Label: "No concern"}},
		Notes:          []Row{{Label: "2026-12-02 10:00 UTC dsl1", Text: "Говорила с " + names["Ukrainian"]}},
		History:        []string{"2026-12-02 10:00 UTC  dsl1  note  " + names["Greek"]},
	}
	for _, opt := range []Options{{}, {Uncompressed: true}} {
		var buf bytes.Buffer
		if err := ReviewFormPDF(&buf, f, opt); err != nil {
			t.Fatal(err)
		}
		text := testutil.PDFText(t, buf.Bytes())
		// -layout may split a long line; compare with runs of spaces folded.
		flat := strings.Join(strings.Fields(text), " ")
		for lang, n := range names {
			if !strings.Contains(flat, n) {
				t.Errorf("%s name %q not in the PDF text (compressed=%v):\n%s", lang, n, !opt.Uncompressed, text)
			}
		}
		for _, want := range []string{"Zażółć gęślą jaźń", "[X] Parents informed", "Record of reviewing devices"} {
			if !strings.Contains(flat, want) {
				t.Errorf("PDF text lacks %q", want)
			}
		}
	}
}

func TestIncidentsCSVDefusesFormulas(t *testing.T) {
	var buf bytes.Buffer
	if err := IncidentsCSV(&buf, [][]string{{"a", "=cmd|calc", "+1", "-2", "@x", "ok", "Łucja"}}); err != nil {
		t.Fatal(err)
	}
	r := csv.NewReader(&buf)
	r.FieldsPerRecord = -1
	rows, err := r.ReadAll()
	if err != nil || len(rows) != 2 {
		t.Fatalf("%v %q", err, buf.String())
	}
	want := []string{"a", "'=cmd|calc", "'+1", "'-2", "'@x", "ok", "Łucja"}
	for i, w := range want {
		if rows[1][i] != w {
			t.Errorf("cell %d: %q, want %q", i, rows[1][i], w)
		}
	}
}
