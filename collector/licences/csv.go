package licences

import (
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"strconv"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// maxImportErrors bounds the errors reported for one file: enough to fix
// a column that is wrong throughout, short enough to read.
const maxImportErrors = 20

// ImportError lists every bad cell of a CSV file, each with its line and
// column; nothing of the file is imported when there is one.
type ImportError struct {
	Problems []string
	More     int // problems beyond those listed
}

func (e *ImportError) Error() string {
	s := fmt.Sprintf("licence file not imported (nothing was changed): %d problem(s):\n  %s", len(e.Problems)+e.More, strings.Join(e.Problems, "\n  "))
	if e.More > 0 {
		s += fmt.Sprintf("\n  ... and %d more", e.More)
	}
	return s
}

func (e *ImportError) add(format string, a ...any) {
	if len(e.Problems) >= maxImportErrors {
		e.More++
		return
	}
	e.Problems = append(e.Problems, fmt.Sprintf(format, a...))
}

// columns the register knows; product and seats are required.
var knownColumns = []string{"product", "publisher", "seats", "expiry", "reference"}

// ParseCSV reads a licence file: a header row naming the columns (product,
// publisher, seats, expiry, reference; any order, any case; product and
// seats required), then one licence a row. Expiry is YYYY-MM-DD or
// DD/MM/YYYY, empty for a perpetual licence. Every problem is reported
// with its line and column, and an error means no row is usable.
func ParseCSV(r io.Reader) ([]store.Licence, error) {
	cr := csv.NewReader(r)
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	header, err := cr.Read()
	if errors.Is(err, io.EOF) {
		return nil, errors.New("licence file is empty: want a header row (product,publisher,seats,expiry,reference) and one row per licence")
	}
	if err != nil {
		return nil, fmt.Errorf("licence file: %w", err)
	}
	ie := &ImportError{}
	col := map[string]int{}
	for i, h := range header {
		name := strings.ToLower(strings.TrimSpace(strings.TrimPrefix(h, "\ufeff")))
		known := false
		for _, k := range knownColumns {
			known = known || k == name
		}
		switch {
		case !known:
			ie.add("line 1, column %d: unknown column %q (want %s)", i+1, h, strings.Join(knownColumns, ", "))
		case col[name] != 0:
			ie.add("line 1, column %d: column %q given twice", i+1, name)
		default:
			col[name] = i + 1 // 1-based; 0 means absent
		}
	}
	for _, req := range []string{"product", "seats"} {
		if col[req] == 0 {
			ie.add("line 1: no %q column (the header row must name it)", req)
		}
	}
	if len(ie.Problems) > 0 {
		return nil, ie
	}
	var out []store.Licence
	for {
		rec, err := cr.Read()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				ie.add("line %d, column %d: %v", pe.Line, pe.Column, pe.Err)
				continue
			}
			return nil, fmt.Errorf("licence file: %w", err)
		}
		line, _ := cr.FieldPos(0)
		if len(rec) == 1 && strings.TrimSpace(rec[0]) == "" {
			continue // blank line
		}
		cell := func(name string) (string, int) {
			i := col[name]
			if i == 0 || i > len(rec) {
				return "", i
			}
			return strings.TrimSpace(rec[i-1]), i
		}
		var l store.Licence
		var c int
		l.Product, c = cell("product")
		if l.Product == "" {
			ie.add("line %d, column %d (product): empty", line, c)
		} else if Normalise(l.Product) == "" {
			ie.add("line %d, column %d (product): %q has no name left once versions and editions are removed", line, c, l.Product)
		}
		l.Publisher, _ = cell("publisher")
		l.Reference, _ = cell("reference")
		seats, c := cell("seats")
		if n, err := strconv.Atoi(seats); err != nil || n < 1 {
			ie.add("line %d, column %d (seats): %q is not a whole number of seats of at least 1", line, c, seats)
		} else {
			l.Seats = n
		}
		if v, c := cell("expiry"); v != "" {
			t, err := ParseDate(v)
			if err != nil {
				ie.add("line %d, column %d (expiry): %v", line, c, err)
			}
			l.Expiry = t
		}
		out = append(out, l)
	}
	if len(ie.Problems) > 0 {
		return nil, ie
	}
	if len(out) == 0 {
		return nil, errors.New("licence file has a header row but no licences")
	}
	return out, nil
}

// ParseDate reads YYYY-MM-DD or the UK's DD/MM/YYYY.
func ParseDate(v string) (time.Time, error) {
	for _, layout := range []string{"2006-01-02", "02/01/2006", "2/1/2006"} {
		if t, err := time.Parse(layout, v); err == nil {
			return t, nil
		}
	}
	return time.Time{}, fmt.Errorf("%q is not a date (want YYYY-MM-DD or DD/MM/YYYY)", v)
}
