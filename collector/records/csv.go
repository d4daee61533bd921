package records

import (
	"encoding/csv"
	"io"
	"strings"
)

// IncidentColumns is the incident log's header row.
var IncidentColumns = []string{"id", "time", "person", "category", "severity", "term", "reason", "first_reviewer", "second_reviewer", "conclusion", "concluded_at"}

// Cell defuses spreadsheet formula injection: a cell that would start a
// formula (= + - @, tab, CR) gets a leading apostrophe.
func Cell(s string) string {
	if s != "" && strings.ContainsRune("=+-@\t\r", rune(s[0])) {
		return "'" + s
	}
	return s
}

// IncidentsCSV writes the header and rows (each in IncidentColumns order),
// every cell defused.
func IncidentsCSV(w io.Writer, rows [][]string) error {
	cw := csv.NewWriter(w)
	cw.Write(IncidentColumns)
	for _, r := range rows {
		rec := make([]string, len(r))
		for i, c := range r {
			rec[i] = Cell(c)
		}
		cw.Write(rec)
	}
	cw.Flush()
	return cw.Error()
}
