package console

import (
	"bytes"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"unicode"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/personid"
)

// RowError names a bad row of an imported CSV by its line number.
type RowError struct {
	Line  int    `json:"line"`
	Error string `json:"error"`
}

var columnAliases = map[string]string{
	"username": "username", "user": "username", "user_name": "username", "login": "username", "account": "username",
	"display_name": "display_name", "name": "display_name", "full_name": "display_name", "displayname": "display_name",
	"role": "role", "type": "role",
	"year": "year", "class": "year", "year_group": "year", "form": "year", "group": "year",
	"email": "email", "e_mail": "email", "email_address": "email", "mail": "email", "upn": "email", "user_principal_name": "email",
}

func normRole(r string) (string, bool) {
	switch strings.ToLower(strings.Join(strings.Fields(r), " ")) {
	case "pupil", "student":
		return "pupil", true
	case "staff", "teacher", "teaching staff", "support staff":
		return "staff", true
	case "headteacher", "head teacher", "head", "principal":
		return "headteacher", true
	}
	return "", false
}

// ParsePeopleCSV reads a people directory as a school MIS exports it: a
// header row naming the columns (username; display_name or name; role
// pupil/staff/headteacher; year or class; email or upn, used for a row
// without a username), in any order, with extra columns ignored; a UTF-8
// BOM, CRLF line ends and ; or tab separators are accepted. People are
// stored under their canonical identity (personid), so `SCHOOL\jsmith` and
// `jsmith@school.example` in one file are one person twice (a bad row), and
// routing finds the record whatever form a device reports. Bad rows are
// reported by line number.
func ParsePeopleCSV(r io.Reader) ([]store.Person, []RowError, error) {
	data, err := io.ReadAll(io.LimitReader(r, 64<<20))
	if err != nil {
		return nil, nil, err
	}
	data = bytes.TrimPrefix(data, []byte("\xef\xbb\xbf"))
	first, _, _ := bytes.Cut(data, []byte("\n"))
	cr := csv.NewReader(bytes.NewReader(data))
	switch {
	case bytes.Count(first, []byte(",")) > 0:
	case bytes.Count(first, []byte(";")) > 0:
		cr.Comma = ';'
	case bytes.Count(first, []byte("\t")) > 0:
		cr.Comma = '\t'
	}
	cr.FieldsPerRecord = -1
	cr.TrimLeadingSpace = true
	cr.LazyQuotes = true
	header, err := cr.Read()
	if err == io.EOF {
		return nil, nil, errors.New("the file is empty")
	}
	if err != nil {
		return nil, nil, fmt.Errorf("header row: %w", err)
	}
	col := map[string]int{}
	for i, h := range header {
		k := strings.ToLower(strings.TrimSpace(h))
		k = strings.NewReplacer(" ", "_", "-", "_").Replace(k)
		if c, ok := columnAliases[k]; ok {
			if _, dup := col[c]; !dup {
				col[c] = i
			}
		}
	}
	_, hasUser := col["username"]
	_, hasEmail := col["email"]
	if !hasUser && !hasEmail {
		return nil, nil, fmt.Errorf("the header row has no username (or email) column (found: %s)", strings.Join(header, ", "))
	}
	if _, ok := col["role"]; !ok {
		return nil, nil, fmt.Errorf("the header row has no role column (found: %s)", strings.Join(header, ", "))
	}
	get := func(rec []string, c string) string {
		i, ok := col[c]
		if !ok || i >= len(rec) {
			return ""
		}
		return strings.TrimSpace(rec[i])
	}
	var people []store.Person
	var bad []RowError
	seen := map[string]int{}
	for {
		rec, err := cr.Read()
		if err == io.EOF {
			break
		}
		line, _ := cr.FieldPos(0)
		if err != nil {
			var pe *csv.ParseError
			if errors.As(err, &pe) {
				bad = append(bad, RowError{Line: pe.Line, Error: pe.Err.Error()})
				continue
			}
			return nil, nil, err
		}
		blank := true
		for _, f := range rec {
			blank = blank && strings.TrimSpace(f) == ""
		}
		if blank {
			continue
		}
		raw := get(rec, "username")
		if raw == "" {
			raw = get(rec, "email")
		}
		u := personid.Canonical(raw)
		role, ok := normRole(get(rec, "role"))
		switch {
		case u == "":
			bad = append(bad, RowError{line, "no username"})
		case strings.IndexFunc(raw, notInAccountName) >= 0 || len(u) > 128:
			// A space inside is a name in the wrong column, not a login.
			bad = append(bad, RowError{line, fmt.Sprintf("username %q is not an account name", raw)})
		case !ok:
			bad = append(bad, RowError{line, fmt.Sprintf("role %q: want pupil, staff or headteacher", get(rec, "role"))})
		case seen[u] != 0:
			bad = append(bad, RowError{line, fmt.Sprintf("username %s is already on line %d (both are %s)", raw, seen[u], u)})
		default:
			seen[u] = line
			people = append(people, store.Person{Username: u, DisplayName: get(rec, "display_name"), Role: role, Year: get(rec, "year")})
		}
	}
	return people, bad, nil
}

func notInAccountName(r rune) bool { return r == '/' || unicode.IsSpace(r) || unicode.IsControl(r) }

// Admin socket endpoints (mounted by the daemon beside collector/admin).

// PeopleImportRequest is the body of POST /v1/people/import.
type PeopleImportRequest struct {
	CSV     string `json:"csv"`
	SkipBad bool   `json:"skip_bad"`
}

// PeopleImportResponse answers it.
type PeopleImportResponse struct {
	Imported int        `json:"imported"`
	Errors   []RowError `json:"errors"`
}

// AdminHandler serves the console's admin-socket endpoints.
func (s *Server) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	s.adminUserRoutes(mux)
	mux.HandleFunc("POST /v1/people/import", func(w http.ResponseWriter, r *http.Request) {
		var req PeopleImportRequest
		dec := json.NewDecoder(http.MaxBytesReader(w, r.Body, 80<<20))
		if err := dec.Decode(&req); err != nil {
			jsonError(w, http.StatusBadRequest, "request body: %v", err)
			return
		}
		people, bad, err := ParsePeopleCSV(strings.NewReader(req.CSV))
		if err != nil {
			jsonError(w, http.StatusBadRequest, "%v", err)
			return
		}
		if len(bad) > 0 && !req.SkipBad {
			var lines []string
			for i, b := range bad {
				if i == 50 {
					lines = append(lines, fmt.Sprintf("... and %d more", len(bad)-50))
					break
				}
				lines = append(lines, fmt.Sprintf("line %d: %s", b.Line, b.Error))
			}
			writeJSON(w, http.StatusUnprocessableEntity, map[string]any{
				"error": fmt.Sprintf("%d bad rows, nothing imported (fix them, or import the rest with --skip-bad):\n  %s",
					len(bad), strings.Join(lines, "\n  ")),
				"errors": bad,
			})
			return
		}
		if err := s.st.PutPeople(people); err != nil {
			s.internal(w, "import people", err)
			return
		}
		if err := s.ReloadPeople(); err != nil {
			s.internal(w, "import people", err)
			return
		}
		s.log.Info("console: people imported", "count", len(people), "bad_rows", len(bad))
		if bad == nil {
			bad = []RowError{}
		}
		writeJSON(w, http.StatusOK, PeopleImportResponse{Imported: len(people), Errors: bad})
	})
	return mux
}

// InitialPasswordFile is written (owner-only) in the data dir on first
// start (auth.EnsureAdmin).
const InitialPasswordFile = auth.InitialPasswordFile
