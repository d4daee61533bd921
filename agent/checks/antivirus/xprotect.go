package antivirus

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"fmt"
	"sort"
	"strings"
	"time"
)

// macOS: XProtect, Apple's built-in signature-based antivirus. Parsing is
// platform-independent and tested on recorded output in testdata/darwin;
// probe_darwin.go reads the files and runs system_profiler.

// Where the XProtect bundle lives: macOS 11 and later, then 10.15 and
// earlier.
var xprotectPlists = []string{
	"/Library/Apple/System/Library/CoreServices/XProtect.bundle/Contents/Info.plist",
	"/System/Library/CoreServices/XProtect.bundle/Contents/Info.plist",
}

// installItem is one entry of `system_profiler -json SPInstallHistoryDataType`.
type installItem struct {
	Name    string    `json:"_name"`
	Date    time.Time `json:"install_date"`
	Version string    `json:"install_version"`
	Source  string    `json:"package_source"`
}

func parseInstallHistory(b []byte) ([]installItem, error) {
	var doc struct {
		Items []installItem `json:"SPInstallHistoryDataType"`
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("system_profiler install history: %w", err)
	}
	return doc.Items, nil
}

// xprotectSignatureItem is the install-history name of XProtect's
// signature data (XProtectPayloads is XProtect Remediator, versioned
// separately).
const xprotectSignatureItem = "XProtectPlistConfigData"

// xprotectHistory returns the XProtect signature installs, newest first.
func xprotectHistory(items []installItem) []installItem {
	var out []installItem
	for _, it := range items {
		if it.Name == xprotectSignatureItem || it.Name == "XProtect" {
			out = append(out, it)
		}
	}
	sort.SliceStable(out, func(i, j int) bool { return out[i].Date.After(out[j].Date) })
	return out
}

// parsePlistStrings returns the string values of the top-level dict of an
// XML property list (CFBundleShortVersionString and the like).
func parsePlistStrings(b []byte) (map[string]string, error) {
	if bytes.HasPrefix(b, []byte("bplist")) {
		return nil, errors.New("binary property list (convert with plutil -convert xml1)")
	}
	var doc struct {
		Dict struct {
			Items []struct {
				XMLName xml.Name
				Value   string `xml:",chardata"`
			} `xml:",any"`
		} `xml:"dict"`
	}
	if err := xml.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("property list: %w", err)
	}
	out := map[string]string{}
	items := doc.Dict.Items
	for i := 0; i+1 < len(items); i++ {
		if items[i].XMLName.Local == "key" && items[i+1].XMLName.Local == "string" {
			out[strings.TrimSpace(items[i].Value)] = strings.TrimSpace(items[i+1].Value)
			i++
		}
	}
	if len(out) == 0 {
		return nil, errors.New("property list has no string values")
	}
	return out, nil
}

// xprotectInput is what the darwin probe gathered.
type xprotectInput struct {
	PlistPath  string
	Plist      map[string]string // parsed Info.plist, nil on error
	PlistMtime time.Time
	PlistErr   error
	History    []installItem // all install history, nil on error
	HistoryErr error
}

// xprotectProduct: version from the bundle's Info.plist; date from the
// install-history entry of that version, else the bundle's modification
// time (macOS 15 updates XProtect outside Software Update, so the newest
// version may have no history entry), else the newest history entry.
// XProtect is part of macOS and cannot be switched off without disabling
// System Integrity Protection, so it is reported as running; it has no
// real-time switch to report (Realtime nil).
func xprotectProduct(in xprotectInput) (Product, bool) {
	hist := xprotectHistory(in.History)
	p := Product{Name: "XProtect", Source: "xprotect", Running: true, Extra: map[string]any{}}
	version := ""
	if in.PlistErr == nil && in.Plist != nil {
		version = in.Plist["CFBundleShortVersionString"]
		if version == "" {
			version = in.Plist["CFBundleVersion"]
		}
		p.Extra["bundle"] = in.PlistPath
	} else if in.PlistErr != nil {
		p.Extra["bundle_error"] = in.PlistErr.Error()
	}
	if in.HistoryErr != nil {
		p.Extra["install_history_error"] = in.HistoryErr.Error()
	}
	switch {
	case version != "":
		p.SignatureVersion = version
		for _, h := range hist {
			if h.Version == version && !h.Date.IsZero() {
				p.SignatureDate = h.Date.UTC()
				p.Extra["signature_date_from"] = "install history"
				break
			}
		}
		if p.SignatureDate.IsZero() && !in.PlistMtime.IsZero() {
			p.SignatureDate = in.PlistMtime.UTC()
			p.Extra["signature_date_from"] = "bundle modification time"
		}
	case len(hist) > 0:
		p.SignatureVersion = hist[0].Version
		p.SignatureDate = hist[0].Date.UTC()
		p.Extra["signature_date_from"] = "install history"
	default:
		return Product{}, false
	}
	if len(hist) > 0 {
		p.Extra["last_install_history_version"] = hist[0].Version
	}
	return p, true
}
