package match

import (
	"fmt"
	"io/fs"
	"os"
	"path"
	"path/filepath"
	"sort"
	"strings"

	"github.com/vigil-safeguarding/vigil/rules"
)

// Limits on a directory of libraries.
const (
	MaxLibraryFiles = 500      // *.txt and *.cases files per directory
	MaxLibraryTotal = 64 << 20 // bytes across them
)

// LoadDir loads every *.txt library and *.cases test file under dir
// (recursively). Cases are keyed by the File of their library: x.cases
// belongs to x.txt in the same directory. Positions name files as
// filepath.Join(dir, relative path).
func LoadDir(dir string) ([]*Library, map[string][]Case, rules.Errors) {
	return load(os.DirFS(dir), ".", func(p string) string { return filepath.Join(dir, filepath.FromSlash(p)) })
}

// LoadFS is LoadDir for a file system (for example an embed.FS); root is a
// slash-separated directory in fsys and files are named by their fsys path.
func LoadFS(fsys fs.FS, root string) ([]*Library, map[string][]Case, rules.Errors) {
	return load(fsys, root, func(p string) string { return p })
}

func load(fsys fs.FS, root string, display func(string) string) ([]*Library, map[string][]Case, rules.Errors) {
	var errs rules.Errors
	var libPaths, casePaths []string
	werr := fs.WalkDir(fsys, root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			errs = append(errs, rules.Error{Pos: rules.Pos{File: display(p)}, Msg: err.Error()})
			return nil
		}
		if d.IsDir() {
			if p != root && strings.HasPrefix(d.Name(), ".") {
				return fs.SkipDir
			}
			return nil
		}
		if !d.Type().IsRegular() {
			return nil
		}
		switch path.Ext(p) {
		case ".txt":
			libPaths = append(libPaths, p)
		case ".cases":
			casePaths = append(casePaths, p)
		}
		return nil
	})
	if werr != nil {
		errs = append(errs, rules.Error{Pos: rules.Pos{File: display(root)}, Msg: werr.Error()})
	}
	if n := len(libPaths) + len(casePaths); n > MaxLibraryFiles {
		return nil, nil, append(errs, rules.Error{Pos: rules.Pos{File: display(root)}, Msg: fmt.Sprintf("%d library and case files (at most %d)", n, MaxLibraryFiles)})
	}
	sort.Strings(libPaths)
	sort.Strings(casePaths)
	total := 0
	read := func(p string) ([]byte, bool) {
		data, err := fs.ReadFile(fsys, p)
		if err != nil {
			errs = append(errs, rules.Error{Pos: rules.Pos{File: display(p)}, Msg: err.Error()})
			return nil, false
		}
		total += len(data)
		if total > MaxLibraryTotal {
			errs = append(errs, rules.Error{Pos: rules.Pos{File: display(p)}, Msg: fmt.Sprintf("libraries exceed %d bytes in total", MaxLibraryTotal)})
			return nil, false
		}
		return data, true
	}
	var libs []*Library
	byBase := map[string]*Library{}
	ruleFile := map[string]string{}
	for _, p := range libPaths {
		data, ok := read(p)
		if !ok {
			continue
		}
		lib, lerrs := ParseLibrary(display(p), data)
		errs = append(errs, lerrs...)
		if lib == nil || lerrs != nil {
			continue
		}
		if prev, dup := ruleFile[lib.RuleID]; dup {
			errs = append(errs, rules.Error{Pos: rules.Pos{File: lib.File, Line: 1, Col: 1}, Msg: fmt.Sprintf("rule id %q is also used by %s", lib.RuleID, prev)})
			continue
		}
		ruleFile[lib.RuleID] = lib.File
		libs = append(libs, lib)
		byBase[strings.TrimSuffix(p, ".txt")] = lib
	}
	cases := map[string][]Case{}
	for _, p := range casePaths {
		data, ok := read(p)
		if !ok {
			continue
		}
		cs, cerrs := ParseCases(display(p), data)
		errs = append(errs, cerrs...)
		lib := byBase[strings.TrimSuffix(p, ".cases")]
		if lib == nil {
			if !hasPath(libPaths, strings.TrimSuffix(p, ".cases")+".txt") {
				errs = append(errs, rules.Error{Pos: rules.Pos{File: display(p)}, Msg: "test cases without a library (want " + path.Base(strings.TrimSuffix(p, ".cases")) + ".txt beside it)"})
			}
			continue
		}
		cases[lib.File] = append(cases[lib.File], cs...)
	}
	if len(errs) == 0 {
		errs = nil
	}
	return libs, cases, errs
}

func hasPath(ps []string, p string) bool {
	i := sort.SearchStrings(ps, p)
	return i < len(ps) && ps[i] == p
}

// CheckCases runs each library's test cases against m (which must have been
// compiled from libs): a positive case needs at least one match from its
// library's rule, a negative case none. Problems carry the case position.
func CheckCases(m *Matcher, libs []*Library, cases map[string][]Case) rules.Errors {
	var errs rules.Errors
	for _, lib := range libs {
		for _, c := range cases[lib.File] {
			var hits []Match
			for _, mt := range m.Find(c.Text) {
				if mt.RuleID == lib.RuleID {
					hits = append(hits, mt)
				}
			}
			switch {
			case c.Positive && len(hits) == 0:
				errs = append(errs, rules.Error{Pos: c.Pos, Msg: fmt.Sprintf("expected a match from %s, got none (normalised: %q)", lib.RuleID, Normalize(c.Text))})
			case !c.Positive && len(hits) > 0:
				h := hits[0]
				errs = append(errs, rules.Error{Pos: c.Pos, Msg: fmt.Sprintf("unexpected match of term %q from %s: %q at bytes %d-%d", h.Term, lib.RuleID, h.Text, h.Start, h.End)})
			}
		}
	}
	return errs
}

// CheckDir loads the libraries and cases under dir, compiles them and runs
// the cases (for `vigil-agent rules test DIR`). It returns every problem.
func CheckDir(dir string) rules.Errors {
	libs, cases, errs := LoadDir(dir)
	return check(libs, cases, errs)
}

// CheckFS is CheckDir for a file system.
func CheckFS(fsys fs.FS, root string) rules.Errors {
	libs, cases, errs := LoadFS(fsys, root)
	return check(libs, cases, errs)
}

func check(libs []*Library, cases map[string][]Case, errs rules.Errors) rules.Errors {
	m, err := Compile(libs...)
	if err != nil {
		return append(errs, rules.Error{Msg: err.Error()})
	}
	errs = append(errs, CheckCases(m, libs, cases)...)
	if len(errs) == 0 {
		return nil
	}
	return errs
}
