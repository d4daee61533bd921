package executables

import (
	"bufio"
	"bytes"
	"encoding/xml"
	"io"
	"strconv"
	"strings"
)

// Software is one installed program.
type Software struct {
	Name      string // dpkg package, registry DisplayName, bundle name
	AltNames  []string
	Version   string
	Publisher string // dpkg Maintainer, registry Publisher, bundle identifier: self-declared
	Source    string // "dpkg", "registry", "applications"
	Location  string // install location when known
}

// maxSoftware bounds the installed programs one scan reports on.
const maxSoftware = 100000

// parseDpkgStatus reads dpkg's status file (/var/lib/dpkg/status) and
// returns the packages whose status is installed.
func parseDpkgStatus(r io.Reader) ([]Software, error) {
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	var (
		out    []Software
		cur    Software
		status string
	)
	flush := func() {
		if cur.Name != "" && strings.HasSuffix(status, " installed") && len(out) < maxSoftware {
			cur.Source = "dpkg"
			out = append(out, cur)
		}
		cur, status = Software{}, ""
	}
	for sc.Scan() {
		line := sc.Text()
		if strings.TrimSpace(line) == "" {
			flush()
			continue
		}
		if line[0] == ' ' || line[0] == '\t' {
			continue // continuation of last
		}
		k, v, ok := strings.Cut(line, ":")
		if !ok {
			continue
		}
		v = strings.TrimSpace(v)
		switch k {
		case "Package":
			cur.Name = v
		case "Status":
			status = v
		case "Version":
			cur.Version = v
		case "Maintainer":
			cur.Publisher = v
		case "Source":
			if src, _, _ := strings.Cut(v, " "); src != "" && src != cur.Name {
				cur.AltNames = append(cur.AltNames, src)
			}
		}
	}
	flush()
	return out, sc.Err()
}

// uninstallEntry turns the values of one Windows registry Uninstall subkey
// (string values; DWORDs as decimal strings) into a Software. Updates,
// system components and entries without a DisplayName are skipped, like
// "Apps & features" does.
func uninstallEntry(key string, vals map[string]string) (Software, bool) {
	name := strings.TrimSpace(vals["DisplayName"])
	if name == "" || vals["SystemComponent"] == "1" || vals["ParentKeyName"] != "" || vals["ReleaseType"] == "Update" || vals["ReleaseType"] == "Security Update" {
		return Software{}, false
	}
	s := Software{
		Name:      name,
		Version:   vals["DisplayVersion"],
		Publisher: vals["Publisher"],
		Source:    "registry",
		Location:  strings.Trim(vals["InstallLocation"], `"`),
	}
	if key != "" && key != name && !strings.HasPrefix(key, "{") {
		s.AltNames = append(s.AltNames, key)
	}
	return s, true
}

// parseInfoPlist returns the top-level string (and integer) values of an
// XML property list. Binary plists give an empty map.
func parseInfoPlist(data []byte) map[string]string {
	out := map[string]string{}
	if !bytes.Contains(data[:min(len(data), 512)], []byte("<plist")) {
		return out
	}
	d := xml.NewDecoder(bytes.NewReader(data))
	d.Strict = false
	depth, key := 0, ""
	inKey, inVal := false, ""
	var text strings.Builder
	for {
		tok, err := d.Token()
		if err != nil {
			return out
		}
		switch t := tok.(type) {
		case xml.StartElement:
			depth++
			// plist(1) > dict(2) > key/string(3)
			if depth == 3 {
				text.Reset()
				switch t.Name.Local {
				case "key":
					inKey = true
				case "string", "integer":
					inVal = t.Name.Local
				}
			}
		case xml.CharData:
			if (inKey || inVal != "") && text.Len() < 4096 {
				text.Write(t)
			}
		case xml.EndElement:
			if depth == 3 {
				switch {
				case inKey:
					key = text.String()
				case inVal != "" && key != "":
					v := strings.TrimSpace(text.String())
					if inVal == "integer" {
						if _, err := strconv.ParseInt(v, 10, 64); err != nil {
							v = ""
						}
					}
					out[key] = v
					key = ""
				default:
					key = ""
				}
				inKey, inVal = false, ""
			}
			depth--
		}
	}
}

// appSoftware describes a .app bundle from its name and Info.plist.
func appSoftware(bundlePath, bundleName string, plist map[string]string) Software {
	name := strings.TrimSuffix(bundleName, ".app")
	s := Software{Name: name, Source: "applications", Location: bundlePath}
	for _, k := range []string{"CFBundleDisplayName", "CFBundleName", "CFBundleExecutable"} {
		if v := plist[k]; v != "" && v != name {
			s.AltNames = append(s.AltNames, v)
		}
	}
	s.Version = plist["CFBundleShortVersionString"]
	s.Publisher = plist["CFBundleIdentifier"]
	return s
}
