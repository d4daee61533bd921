package rules

import (
	"crypto/sha256"
	"embed"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"
)

const (
	maxErrorsTotal = 1000
	maxDirEntries  = 10 * MaxFiles // entries of any kind visited while walking a directory
	hashDomain     = "vigil/rules-bundle/v1\x00"
)

// Set is a validated rule set together with its bundle: the exact bytes of
// every rule file it was loaded from.
type Set struct {
	Rules   []Rule            // sorted by ID
	Files   map[string][]byte // relative path (forward slashes) -> exact bytes
	Hash    string            // HashFiles(Files)
	Version string            // optional label; empty unless set by the caller
}

// Enabled returns the enabled rules, sorted by ID.
func (s *Set) Enabled() []Rule {
	var out []Rule
	for _, r := range s.Rules {
		if r.Enabled {
			out = append(out, r)
		}
	}
	return out
}

// HashFiles returns "sha256:" and the hex SHA-256 of a canonical encoding of
// files: a domain string, then for each path in sorted order the 8-byte
// big-endian length of the path, the path, the 8-byte length of the content
// and the content. It does not depend on map order.
func HashFiles(files map[string][]byte) string {
	paths := make([]string, 0, len(files))
	for p := range files {
		paths = append(paths, p)
	}
	sort.Strings(paths)
	h := sha256.New()
	io.WriteString(h, hashDomain)
	var n [8]byte
	for _, p := range paths {
		binary.BigEndian.PutUint64(n[:], uint64(len(p)))
		h.Write(n[:])
		io.WriteString(h, p)
		binary.BigEndian.PutUint64(n[:], uint64(len(files[p])))
		h.Write(n[:])
		h.Write(files[p])
	}
	return "sha256:" + hex.EncodeToString(h.Sum(nil))
}

// IsRuleFile reports whether a file name has a rule-file extension
// (.yaml or .yml).
func IsRuleFile(name string) bool {
	return strings.HasSuffix(name, ".yaml") || strings.HasSuffix(name, ".yml")
}

// DataKind describes files carried in a bundle beside the rules (keyword
// libraries and their test cases): which relative paths it owns and how to
// validate one. The owning package registers it from init, so this package
// need not import it.
type DataKind struct {
	Match    func(path string) bool
	Validate func(display string, data []byte) Errors
}

var dataKinds []DataKind

// RegisterData adds a kind of data file to every rule set loaded afterwards.
func RegisterData(k DataKind) { dataKinds = append(dataKinds, k) }

func dataKind(rel string) (DataKind, bool) {
	for _, k := range dataKinds {
		if k.Match(rel) {
			return k, true
		}
	}
	return DataKind{}, false
}

// isBundleFile: rule files, and data files of a registered kind.
func isBundleFile(rel string) bool {
	if IsRuleFile(rel) {
		return true
	}
	_, ok := dataKind(rel)
	return ok
}

// LoadDir loads every *.yaml and *.yml file under dir, recursively, in order
// of relative path with forward slashes. Entries whose name starts with "."
// are skipped (editor temporaries, VCS metadata); symbolic links to files are
// followed, links to directories are not. Error positions name the file as
// dir joined with its relative path, e.g. "rules/x.yaml:3:5". If the
// returned Errors is non-nil the set is nil and must not be used.
func LoadDir(dir string, kinds Kinds) (*Set, Errors) {
	display := func(rel string) string { return joinDisplay(dir, rel) }
	dirErr := func(format string, args ...any) Error {
		return Error{Pos: Pos{File: dir}, Msg: fmt.Sprintf(format, args...)}
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return nil, Errors{dirErr("cannot read rules directory: %v", unwrapPath(err))}
	}
	if !fi.IsDir() {
		return nil, Errors{dirErr("not a directory")}
	}
	var (
		head    Errors                // whole-directory problems
		pre     = map[string]Errors{} // per-file problems found while reading
		files   = map[string][]byte{}
		count   int
		total   int64
		entries int
	)
	walkErr := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if p == dir {
			if err != nil {
				head = append(head, dirErr("cannot read rules directory: %v", unwrapPath(err)))
				return fs.SkipAll
			}
			return nil
		}
		rel, rerr := filepath.Rel(dir, p)
		if rerr != nil {
			head = append(head, dirErr("cannot resolve %s: %v", quote(p), rerr))
			return fs.SkipAll
		}
		rel = filepath.ToSlash(rel)
		if err != nil {
			pre[rel] = append(pre[rel], Error{Pos: Pos{File: display(rel)}, Msg: fmt.Sprintf("cannot read: %v", unwrapPath(err))})
			if d != nil && d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		entries++
		if entries > maxDirEntries {
			head = append(head, dirErr("more than %d entries; refusing to read further", maxDirEntries))
			return fs.SkipAll
		}
		if strings.HasPrefix(d.Name(), ".") {
			if d.IsDir() {
				return fs.SkipDir
			}
			return nil
		}
		if d.IsDir() || !isBundleFile(rel) {
			return nil
		}
		count++
		if count > MaxFiles {
			head = append(head, dirErr("more than %d rule files", MaxFiles))
			return fs.SkipAll
		}
		fileErr := func(line int, format string, args ...any) {
			col := 0
			if line > 0 {
				col = 1
			}
			pre[rel] = append(pre[rel], Error{Pos: Pos{display(rel), line, col}, Msg: fmt.Sprintf(format, args...)})
		}
		st, err := os.Stat(p) // follows symbolic links
		if err != nil {
			fileErr(0, "cannot read: %v", unwrapPath(err))
			return nil
		}
		if !st.Mode().IsRegular() {
			fileErr(0, "not a regular file")
			return nil
		}
		if st.Size() > MaxFileSize {
			fileErr(1, "file is %d bytes; the limit is %d", st.Size(), MaxFileSize)
			return nil
		}
		if total+st.Size() > MaxTotalSize {
			head = append(head, dirErr("rule files total more than %d bytes", MaxTotalSize))
			return fs.SkipAll
		}
		data, err := readLimited(p, MaxFileSize)
		if err != nil {
			fileErr(0, "cannot read: %v", unwrapPath(err))
			return nil
		}
		total += int64(len(data))
		if total > MaxTotalSize {
			head = append(head, dirErr("rule files total more than %d bytes", MaxTotalSize))
			return fs.SkipAll
		}
		files[rel] = data // a file grown past the limit is reported by parseFile
		return nil
	})
	if walkErr != nil {
		head = append(head, dirErr("cannot read rules directory: %v", unwrapPath(walkErr)))
	}
	return load(files, pre, head, display, kinds)
}

func joinDisplay(dir, rel string) string {
	rel = filepath.FromSlash(rel)
	switch {
	case dir == "":
		return rel
	case strings.HasSuffix(dir, "/") || strings.HasSuffix(dir, string(filepath.Separator)):
		return dir + rel
	default:
		return dir + string(filepath.Separator) + rel
	}
}

// unwrapPath drops the path from *fs.PathError (positions already name it).
func unwrapPath(err error) error {
	var pe *fs.PathError
	if errors.As(err, &pe) {
		return pe.Err
	}
	return err
}

func readLimited(p string, limit int64) ([]byte, error) {
	f, err := os.Open(p)
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return io.ReadAll(io.LimitReader(f, limit+1))
}

// LoadFiles validates a bundle received over the network: relative
// forward-slash paths of *.yaml / *.yml files mapped to their bytes. The
// set keeps a private copy of files. If the returned Errors is non-nil the
// set is nil and must not be used.
func LoadFiles(files map[string][]byte, kinds Kinds) (*Set, Errors) {
	var head Errors
	bundleErr := func(format string, args ...any) {
		head = append(head, Error{Pos: Pos{File: "<bundle>"}, Msg: fmt.Sprintf(format, args...)})
	}
	if len(files) > MaxFiles {
		bundleErr("more than %d rule files", MaxFiles)
		return nil, head
	}
	var total int64
	own := make(map[string][]byte, len(files))
	for name, data := range files {
		if err := checkBundleName(name); err != "" {
			bundleErr("invalid file name %s: %s", quote(name), err)
			continue
		}
		total += int64(len(data))
		own[name] = append([]byte(nil), data...)
	}
	if total > MaxTotalSize {
		bundleErr("rule files total more than %d bytes", MaxTotalSize)
	}
	if len(head) > 0 {
		sort.Slice(head, func(i, j int) bool { return head[i].Msg < head[j].Msg })
		return nil, head
	}
	return load(own, nil, nil, func(rel string) string { return rel }, kinds)
}

func checkBundleName(name string) string {
	switch {
	case !fs.ValidPath(name) || name == ".":
		return "must be a clean relative path with forward slashes"
	case strings.ContainsAny(name, "\\\x00:"):
		return "must not contain backslashes, colons or NUL"
	case !isBundleFile(name):
		return "must end in .yaml or .yml, or be a registered data file"
	}
	for _, el := range strings.Split(name, "/") {
		if strings.HasPrefix(el, ".") {
			return "path elements must not start with a dot"
		}
	}
	if len(name) > 1024 {
		return "too long"
	}
	return ""
}

// load parses files in path order, adds the per-file errors in pre at their
// place in that order, and checks ids are unique across the set.
func load(files map[string][]byte, pre map[string]Errors, head Errors, display func(string) string, kinds Kinds) (*Set, Errors) {
	errs := head
	names := make([]string, 0, len(files)+len(pre))
	for p := range files {
		names = append(names, p)
	}
	for p := range pre {
		if _, ok := files[p]; !ok {
			names = append(names, p)
		}
	}
	sort.Strings(names)
	seen := map[string]Pos{}
	var rules []Rule
	for _, p := range names {
		if len(errs) >= maxErrorsTotal {
			errs = append(errs, Error{Pos: Pos{File: display(p)}, Msg: "too many errors; stopping"})
			break
		}
		errs = append(errs, pre[p]...)
		data, ok := files[p]
		if !ok {
			continue
		}
		if dk, isData := dataKind(p); isData && !IsRuleFile(p) {
			errs = append(errs, dk.Validate(display(p), data)...)
			continue
		}
		prs, ferrs := parseFile(display(p), data, kinds)
		errs = append(errs, ferrs...)
		for _, pr := range prs {
			if first, dup := seen[pr.rule.ID]; dup {
				errs = append(errs, dupError(pr, first))
				continue
			}
			seen[pr.rule.ID] = pr.idPos
			rules = append(rules, pr.rule)
		}
	}
	if bk, ok := kinds.(BundleKinds); ok && len(errs) == 0 {
		for i := range rules {
			r := &rules[i]
			if err := bk.ValidateBundle(r.Check, r.Params, files); err != nil {
				errs = append(errs, kindError(err, r.Pos)...)
			}
		}
	}
	if len(errs) > 0 {
		return nil, errs
	}
	sort.Slice(rules, func(i, j int) bool { return rules[i].ID < rules[j].ID })
	for i := range rules {
		rules[i].Bundle = files
	}
	return &Set{Rules: rules, Files: files, Hash: HashFiles(files)}, nil
}

//go:embed default keywords
var defaultFS embed.FS

// Defaults returns a fresh copy of the embedded default rule pack: the rule
// files under rules/default/ keyed by path relative to that directory, and
// the keyword libraries under rules/keywords/ as "keywords/<file>" (kept
// only when a data kind for them is registered, i.e. in the agent).
func Defaults() map[string][]byte {
	out := map[string][]byte{}
	_ = fs.WalkDir(defaultFS, ".", func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return nil
		}
		rel := strings.TrimPrefix(p, "default/")
		if !isBundleFile(rel) {
			return nil
		}
		data, err := defaultFS.ReadFile(p)
		if err == nil {
			out[rel] = data
		}
		return nil
	})
	return out
}
