package inventory

// Parsers for the OS's own inventory sources. They are platform-independent
// (each OS's collector feeds them what it read) so that every format is
// tested on every build, on recorded fixtures in testdata/.

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"
	"unicode/utf16"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// ParseDpkgStatus reads a dpkg status file (/var/lib/dpkg/status) and
// returns the installed packages. installDate, when set, gives a package's
// install date (dpkg does not record one; the caller uses the mtime of the
// package's file list).
func ParseDpkgStatus(r io.Reader, installDate func(pkg, arch string) string) ([]*vigilv1.SoftwareItem, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 4<<20)
	var out []*vigilv1.SoftwareItem
	fields := map[string]string{}
	last := ""
	flush := func() {
		if fields["Package"] != "" && isInstalled(fields["Status"]) {
			it := &vigilv1.SoftwareItem{Name: fields["Package"], Version: fields["Version"], Publisher: maintainerName(fields["Maintainer"]), Source: "dpkg"}
			if installDate != nil {
				it.InstallDate = installDate(fields["Package"], fields["Architecture"])
			}
			out = append(out, it)
		}
		clear(fields)
		last = ""
	}
	for sc.Scan() {
		line := sc.Text()
		if line == "" {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // continuation of a multi-line field (Description, Conffiles)
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			return out, fmt.Errorf("dpkg status: line %q after field %q is not 'Field: value'", truncate(line, 80), last)
		}
		last = k
		fields[k] = strings.TrimSpace(v)
	}
	flush()
	if err := sc.Err(); err != nil {
		return out, fmt.Errorf("read dpkg status: %w", err)
	}
	return out, nil
}

// isInstalled: "install ok installed" (or hold); half-installed, config-files
// and not-installed packages are not on the device in a usable form.
func isInstalled(status string) bool {
	f := strings.Fields(status)
	return len(f) == 3 && f[2] == "installed"
}

// maintainerName drops the e-mail address: "Debian X <x@...>" -> "Debian X".
func maintainerName(m string) string {
	if i := strings.IndexByte(m, '<'); i >= 0 {
		m = m[:i]
	}
	return strings.TrimSpace(m)
}

// RpmQueryFormat is the --qf the Linux collector passes to `rpm -qa`;
// ParseRpmQuery reads its output.
const RpmQueryFormat = `%{NAME}\t%{VERSION}-%{RELEASE}\t%{VENDOR}\t%{INSTALLTIME}\n`

// ParseRpmQuery reads `rpm -qa --qf RpmQueryFormat` output.
func ParseRpmQuery(r io.Reader) ([]*vigilv1.SoftwareItem, error) {
	sc := bufio.NewScanner(r)
	var out []*vigilv1.SoftwareItem
	n := 0
	for sc.Scan() {
		n++
		if strings.TrimSpace(sc.Text()) == "" {
			continue
		}
		f := strings.Split(sc.Text(), "\t")
		if len(f) != 4 {
			return out, fmt.Errorf("rpm query line %d: want 4 tab-separated fields, got %d", n, len(f))
		}
		it := &vigilv1.SoftwareItem{Name: f[0], Version: f[1], Source: "rpm"}
		if f[2] != "(none)" {
			it.Publisher = f[2]
		}
		if secs, err := strconv.ParseInt(f[3], 10, 64); err == nil && secs > 0 {
			it.InstallDate = time.Unix(secs, 0).UTC().Format(time.DateOnly)
		}
		out = append(out, it)
	}
	return out, sc.Err()
}

// ParseAccounts reads /etc/passwd and /etc/group: accounts with a uid of
// 1000 or more (people, not system users; nobody excluded) and root, each
// marked administrator when it is root or in sudo, admin or wheel.
func ParseAccounts(passwd, group io.Reader) ([]*vigilv1.LocalAccount, error) {
	adminGroups := map[string]bool{"sudo": true, "admin": true, "wheel": true}
	members := map[string][]string{} // user -> admin groups
	gidName := map[string]string{}
	sc := bufio.NewScanner(group)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 4 || strings.HasPrefix(f[0], "#") {
			continue
		}
		gidName[f[2]] = f[0]
		if !adminGroups[f[0]] {
			continue
		}
		for _, u := range strings.Split(f[3], ",") {
			if u = strings.TrimSpace(u); u != "" {
				members[u] = append(members[u], f[0])
			}
		}
	}
	if err := sc.Err(); err != nil {
		return nil, fmt.Errorf("read group file: %w", err)
	}
	var out []*vigilv1.LocalAccount
	sc = bufio.NewScanner(passwd)
	for sc.Scan() {
		f := strings.Split(sc.Text(), ":")
		if len(f) < 7 || strings.HasPrefix(f[0], "#") {
			continue
		}
		uid, err := strconv.Atoi(f[2])
		if err != nil || (uid != 0 && uid < 1000) || uid == 65534 {
			continue
		}
		groups := members[f[0]]
		if g := gidName[f[3]]; adminGroups[g] && !contains(groups, g) {
			groups = append(groups, g)
		}
		sort.Strings(groups)
		out = append(out, &vigilv1.LocalAccount{Name: f[0], Uid: f[2], Administrator: uid == 0 || len(groups) > 0, AdminGroups: groups})
	}
	return out, sc.Err()
}

func contains(list []string, s string) bool {
	for _, v := range list {
		if v == s {
			return true
		}
	}
	return false
}

// RegKey is one key of a registry export: its path and its values, with
// REG_SZ/REG_EXPAND_SZ as text and REG_DWORD as decimal text.
type RegKey struct {
	Path   string
	Values map[string]string
}

// ParseRegExport reads the text of `reg export` (Windows Registry Editor
// Version 5.00; UTF-16LE with a BOM as reg.exe writes it, or UTF-8).
func ParseRegExport(data []byte) ([]RegKey, error) {
	text, err := decodeRegText(data)
	if err != nil {
		return nil, err
	}
	lines := strings.Split(strings.ReplaceAll(text, "\r\n", "\n"), "\n")
	if len(lines) == 0 || !strings.HasPrefix(strings.TrimSpace(lines[0]), "Windows Registry Editor Version 5.00") {
		return nil, errors.New("registry export: missing the 'Windows Registry Editor Version 5.00' header")
	}
	var out []RegKey
	var cur *RegKey
	for i := 1; i < len(lines); i++ {
		line := strings.TrimRight(lines[i], " \t")
		// A value continues on the next line after a trailing backslash
		// (hex data).
		for strings.HasSuffix(line, "\\") && i+1 < len(lines) {
			i++
			line = strings.TrimSuffix(line, "\\") + strings.TrimSpace(lines[i])
		}
		switch {
		case line == "" || strings.HasPrefix(line, ";"):
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			out = append(out, RegKey{Path: line[1 : len(line)-1], Values: map[string]string{}})
			cur = &out[len(out)-1]
		case cur == nil:
			return out, fmt.Errorf("registry export line %d: value before any [key]", i+1)
		default:
			name, val, err := parseRegValue(line)
			if err != nil {
				return out, fmt.Errorf("registry export line %d: %w", i+1, err)
			}
			cur.Values[name] = val
		}
	}
	return out, nil
}

func decodeRegText(b []byte) (string, error) {
	if len(b) >= 2 && b[0] == 0xff && b[1] == 0xfe {
		b = b[2:]
		if len(b)%2 != 0 {
			return "", errors.New("registry export: odd length for UTF-16 text")
		}
		u := make([]uint16, len(b)/2)
		for i := range u {
			u[i] = uint16(b[2*i]) | uint16(b[2*i+1])<<8
		}
		return string(utf16.Decode(u)), nil
	}
	return string(bytes.TrimPrefix(b, []byte{0xef, 0xbb, 0xbf})), nil
}

// parseRegValue parses `"Name"="text"`, `@="text"`, `"Name"=dword:0000001`
// and hex forms (kept as their hex text, decoded for hex(2) strings).
func parseRegValue(line string) (string, string, error) {
	var name string
	rest := line
	if strings.HasPrefix(rest, "@=") {
		rest = rest[2:]
	} else {
		n, r, err := regQuoted(rest)
		if err != nil {
			return "", "", fmt.Errorf("value name: %w", err)
		}
		if !strings.HasPrefix(r, "=") {
			return "", "", fmt.Errorf("value %q: missing '='", n)
		}
		name, rest = n, r[1:]
	}
	switch {
	case strings.HasPrefix(rest, `"`):
		v, _, err := regQuoted(rest)
		return name, v, err
	case strings.HasPrefix(rest, "dword:"):
		n, err := strconv.ParseUint(rest[len("dword:"):], 16, 32)
		if err != nil {
			return "", "", fmt.Errorf("value %q: dword: %w", name, err)
		}
		return name, strconv.FormatUint(n, 10), nil
	case strings.HasPrefix(rest, "hex(2):"): // REG_EXPAND_SZ as UTF-16LE bytes
		return name, hexUTF16(rest[len("hex(2):"):]), nil
	case strings.HasPrefix(rest, "hex"):
		return name, rest, nil
	}
	return "", "", fmt.Errorf("value %q: unknown data %q", name, truncate(rest, 40))
}

func regQuoted(s string) (string, string, error) {
	if !strings.HasPrefix(s, `"`) {
		return "", "", errors.New("want a quoted string")
	}
	var b strings.Builder
	for i := 1; i < len(s); i++ {
		switch s[i] {
		case '\\':
			if i+1 < len(s) {
				i++
				b.WriteByte(s[i])
			}
		case '"':
			return b.String(), s[i+1:], nil
		default:
			b.WriteByte(s[i])
		}
	}
	return "", "", errors.New("unterminated string")
}

func hexUTF16(h string) string {
	var bs []byte
	for _, p := range strings.Split(h, ",") {
		if v, err := strconv.ParseUint(strings.TrimSpace(p), 16, 8); err == nil {
			bs = append(bs, byte(v))
		}
	}
	u := make([]uint16, 0, len(bs)/2)
	for i := 0; i+1 < len(bs); i += 2 {
		u = append(u, uint16(bs[i])|uint16(bs[i+1])<<8)
	}
	return strings.TrimRight(string(utf16.Decode(u)), "\x00")
}

// UninstallSoftware turns Uninstall registry keys (values by name) into
// software items the way Programs and Features lists them: entries with a
// DisplayName, not marked SystemComponent, and not updates of another entry
// (ParentKeyName / ReleaseType).
func UninstallSoftware(keys []map[string]string) []*vigilv1.SoftwareItem {
	var out []*vigilv1.SoftwareItem
	seen := map[string]bool{}
	for _, v := range keys {
		name := strings.TrimSpace(v["DisplayName"])
		if name == "" || v["SystemComponent"] == "1" || v["ParentKeyName"] != "" {
			continue
		}
		switch v["ReleaseType"] {
		case "Update", "Hotfix", "Security Update":
			continue
		}
		// The same product appears under both registry views at times.
		id := name + "\x00" + v["DisplayVersion"]
		if seen[id] {
			continue
		}
		seen[id] = true
		out = append(out, &vigilv1.SoftwareItem{Name: name, Version: v["DisplayVersion"], Publisher: v["Publisher"],
			InstallDate: yyyymmdd(v["InstallDate"]), Source: "registry"})
	}
	return out
}

// yyyymmdd turns the Uninstall key's InstallDate (20240131) into 2024-01-31.
func yyyymmdd(s string) string {
	if t, err := time.Parse("20060102", strings.TrimSpace(s)); err == nil {
		return t.Format(time.DateOnly)
	}
	return ""
}

// ParsePkgutilPkgs reads `pkgutil --pkgs`: one package id per line.
func ParsePkgutilPkgs(r io.Reader) []string {
	var out []string
	sc := bufio.NewScanner(r)
	for sc.Scan() {
		if s := strings.TrimSpace(sc.Text()); s != "" {
			out = append(out, s)
		}
	}
	return out
}

// PlistValue is a decoded property-list value: string, int64, float64,
// bool, time.Time, []byte, []any or map[string]any.
type PlistValue = any

// ParsePlist decodes an XML property list (plutil -convert xml1, or the
// -xml / --pkg-info-plist output of system_profiler and pkgutil).
func ParsePlist(data []byte) (PlistValue, error) {
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = false
	for {
		tok, err := d.Token()
		if err != nil {
			if bytes.HasPrefix(data, []byte("bplist")) {
				return nil, errors.New("binary property list: convert it with plutil -convert xml1 first")
			}
			return nil, fmt.Errorf("plist: no <plist> element: %w", err)
		}
		if se, ok := tok.(xml.StartElement); ok && se.Name.Local == "plist" {
			v, end, err := plistNext(d)
			if err != nil {
				return nil, err
			}
			if end {
				return nil, errors.New("plist: empty")
			}
			return v, nil
		}
	}
}

// plistNext decodes the next value; end reports a closing tag instead.
func plistNext(d *xml.Decoder) (PlistValue, bool, error) {
	for {
		tok, err := d.Token()
		if err != nil {
			return nil, false, fmt.Errorf("plist: %w", err)
		}
		switch t := tok.(type) {
		case xml.EndElement:
			return nil, true, nil
		case xml.StartElement:
			v, err := plistElem(d, t)
			return v, false, err
		}
	}
}

func plistElem(d *xml.Decoder, se xml.StartElement) (PlistValue, error) {
	switch se.Name.Local {
	case "dict":
		m := map[string]any{}
		for {
			k, end, err := plistNext(d)
			if err != nil {
				return nil, err
			}
			if end {
				return m, nil
			}
			ks, ok := k.(plistKey)
			if !ok {
				return nil, errors.New("plist: dict entry without <key>")
			}
			v, end, err := plistNext(d)
			if err != nil {
				return nil, err
			}
			if end {
				return nil, fmt.Errorf("plist: key %q without a value", ks)
			}
			m[string(ks)] = v
		}
	case "array":
		var a []any
		for {
			v, end, err := plistNext(d)
			if err != nil {
				return nil, err
			}
			if end {
				return a, nil
			}
			a = append(a, v)
		}
	case "true", "false":
		if err := d.Skip(); err != nil {
			return nil, err
		}
		return se.Name.Local == "true", nil
	}
	var text string
	if err := d.DecodeElement(&text, &se); err != nil {
		return nil, fmt.Errorf("plist <%s>: %w", se.Name.Local, err)
	}
	text = strings.TrimSpace(text)
	switch se.Name.Local {
	case "key":
		return plistKey(text), nil
	case "string":
		return text, nil
	case "integer":
		n, err := strconv.ParseInt(text, 10, 64)
		if err != nil {
			return nil, fmt.Errorf("plist integer %q: %w", text, err)
		}
		return n, nil
	case "real":
		f, err := strconv.ParseFloat(text, 64)
		if err != nil {
			return nil, fmt.Errorf("plist real %q: %w", text, err)
		}
		return f, nil
	case "date":
		t, err := time.Parse(time.RFC3339, text)
		if err != nil {
			return nil, fmt.Errorf("plist date %q: %w", text, err)
		}
		return t, nil
	case "data":
		return []byte(text), nil
	}
	return nil, fmt.Errorf("plist: unknown element <%s>", se.Name.Local)
}

type plistKey string

// PkgInfo is what `pkgutil --pkg-info-plist ID` says about a receipt.
func PkgInfo(data []byte) (*vigilv1.SoftwareItem, error) {
	v, err := ParsePlist(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("pkg-info plist: not a dict")
	}
	id, _ := m["pkgid"].(string)
	if id == "" {
		return nil, errors.New("pkg-info plist: no pkgid")
	}
	it := &vigilv1.SoftwareItem{Name: id, Source: "pkgutil"}
	it.Version, _ = m["pkg-version"].(string)
	if secs, ok := m["install-time"].(int64); ok && secs > 0 {
		it.InstallDate = time.Unix(secs, 0).UTC().Format(time.DateOnly)
	}
	// Receipt ids are reverse-DNS: com.microsoft.Word -> "com.microsoft".
	if parts := strings.Split(id, "."); len(parts) >= 3 {
		it.Publisher = parts[0] + "." + parts[1]
	}
	return it, nil
}

// AppInfo reads an application bundle's Contents/Info.plist (XML).
func AppInfo(data []byte, bundleName string) (*vigilv1.SoftwareItem, error) {
	v, err := ParsePlist(data)
	if err != nil {
		return nil, err
	}
	m, ok := v.(map[string]any)
	if !ok {
		return nil, errors.New("Info.plist: not a dict")
	}
	it := &vigilv1.SoftwareItem{Name: strings.TrimSuffix(bundleName, ".app"), Source: "applications"}
	for _, k := range []string{"CFBundleDisplayName", "CFBundleName"} {
		if s, _ := m[k].(string); s != "" {
			it.Name = s
			break
		}
	}
	it.Version, _ = m["CFBundleShortVersionString"].(string)
	if it.Version == "" {
		it.Version, _ = m["CFBundleVersion"].(string)
	}
	if id, _ := m["CFBundleIdentifier"].(string); id != "" {
		if parts := strings.Split(id, "."); len(parts) >= 3 {
			it.Publisher = parts[0] + "." + parts[1]
		}
	}
	return it, nil
}

// SystemProfilerHardware reads `system_profiler -xml SPHardwareDataType`.
func SystemProfilerHardware(data []byte, hw *vigilv1.Hardware) error {
	v, err := ParsePlist(data)
	if err != nil {
		return err
	}
	arr, _ := v.([]any)
	if len(arr) == 0 {
		return errors.New("system_profiler: not an array of data types")
	}
	top, _ := arr[0].(map[string]any)
	items, _ := top["_items"].([]any)
	if len(items) == 0 {
		return errors.New("system_profiler: no _items")
	}
	it, _ := items[0].(map[string]any)
	str := func(k string) string { s, _ := it[k].(string); return s }
	hw.Manufacturer = "Apple Inc."
	hw.Model = str("machine_name")
	if id := str("machine_model"); id != "" {
		hw.Model = strings.TrimSpace(hw.Model + " (" + id + ")")
	}
	hw.Serial = str("serial_number")
	if c := str("chip_type"); c != "" {
		hw.CpuModel = c
	} else if c := str("cpu_type"); c != "" {
		hw.CpuModel = c
	}
	if m := str("physical_memory"); m != "" && hw.MemoryBytes == 0 {
		hw.MemoryBytes = parseSize(m)
	}
	return nil
}

// parseSize reads "16 GB" as system_profiler writes it.
func parseSize(s string) uint64 {
	f := strings.Fields(s)
	if len(f) != 2 {
		return 0
	}
	n, err := strconv.ParseUint(f[0], 10, 64)
	if err != nil {
		return 0
	}
	switch strings.ToUpper(f[1]) {
	case "KB":
		return n << 10
	case "MB":
		return n << 20
	case "GB":
		return n << 30
	case "TB":
		return n << 40
	}
	return 0
}

// ParseDsclAccounts reads `dscl . -list /Users UniqueID` and the
// GroupMembership line of `dscl . -read /Groups/admin GroupMembership`
// (macOS): accounts with a uid of 500 or more (macOS people start at 501).
func ParseDsclAccounts(users []byte, adminGroup []byte) []*vigilv1.LocalAccount {
	admins := map[string]bool{}
	if _, list, ok := strings.Cut(string(adminGroup), "GroupMembership:"); ok {
		for _, u := range strings.Fields(list) {
			admins[u] = true
		}
	}
	var out []*vigilv1.LocalAccount
	sc := bufio.NewScanner(bytes.NewReader(users))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) != 2 || strings.HasPrefix(f[0], "_") {
			continue
		}
		uid, err := strconv.Atoi(f[1])
		if err != nil || (uid != 0 && uid < 500) {
			continue
		}
		a := &vigilv1.LocalAccount{Name: f[0], Uid: f[1], Administrator: uid == 0 || admins[f[0]]}
		if admins[f[0]] {
			a.AdminGroups = []string{"admin"}
		}
		out = append(out, a)
	}
	return out
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}
