package executables

import (
	"bufio"
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

func TestParseDpkgStatus(t *testing.T) {
	f, err := os.Open("testdata/dpkg-status")
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	sw, err := parseDpkgStatus(f)
	if err != nil {
		t.Fatal(err)
	}
	var names []string
	for _, s := range sw {
		names = append(names, s.Name+"="+s.Version)
	}
	// nmap-common is config-files only and half-installed-thing is not
	// installed; wireshark-qt is held but installed.
	if got := strings.Join(names, ","); got != "tor=0.4.7.16-1,wireshark-qt=4.0.17-0+deb12u1,coreutils=9.1-1" {
		t.Fatalf("packages %s", got)
	}
	if sw[1].AltNames[0] != "wireshark" || sw[0].Source != "dpkg" || !strings.HasPrefix(sw[0].Publisher, "Debian Tor Maintainers") {
		t.Errorf("%+v", sw)
	}
}

// parseRegExport reads a regedit .reg export: one value map per key.
func parseRegExport(t *testing.T, path string) map[string]map[string]string {
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	out := map[string]map[string]string{}
	var cur map[string]string
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		line := strings.TrimSpace(sc.Text())
		switch {
		case strings.HasPrefix(line, "[") && strings.HasSuffix(line, "]"):
			key := line[1 : len(line)-1]
			cur = map[string]string{}
			out[key[strings.LastIndex(key, `\`)+1:]] = cur
		case strings.HasPrefix(line, `"`) && cur != nil:
			k, v, _ := strings.Cut(line, "=")
			k = strings.Trim(k, `"`)
			if d, ok := strings.CutPrefix(v, "dword:"); ok {
				n, _ := strconv.ParseUint(d, 16, 32)
				v = strconv.FormatUint(n, 10)
			} else {
				v, _ = strconv.Unquote(v)
			}
			cur[k] = v
		}
	}
	return out
}

func TestUninstallEntries(t *testing.T) {
	keys := parseRegExport(t, "testdata/uninstall.reg")
	got := map[string]Software{}
	for k, vals := range keys {
		if s, ok := uninstallEntry(k, vals); ok {
			got[s.Name] = s
		}
	}
	if len(got) != 3 {
		t.Fatalf("entries %v (updates, system components and nameless keys must be skipped)", got)
	}
	a := got["AnyDesk"]
	if a.Publisher != "AnyDesk Software GmbH" || a.Version != "ad 8.0.9" || a.Location != `C:\Program Files (x86)\AnyDesk` || a.Source != "registry" {
		t.Errorf("AnyDesk %+v", a)
	}
	if p := got["Psiphon 3"]; p.Publisher != "Psiphon Inc." || len(p.AltNames) != 0 {
		t.Errorf("Psiphon %+v", p)
	}
}

func TestInfoPlist(t *testing.T) {
	data, err := os.ReadFile("testdata/Info.plist")
	if err != nil {
		t.Fatal(err)
	}
	m := parseInfoPlist(data)
	if m["CFBundleExecutable"] != "firefox" || m["CFBundleName"] != "Tor Browser" || m["CFBundleIdentifier"] != "org.torproject.torbrowser" || m["CFBundleTypeName"] != "" {
		t.Fatalf("%v", m)
	}
	s := appSoftware("/Applications/TB.app", "TB.app", m)
	if s.Name != "TB" || s.Version != "13.0.1" || !contains(s.AltNames, "Tor Browser") {
		t.Errorf("%+v", s)
	}
	if len(parseInfoPlist([]byte("bplist00\x00\x01"))) != 0 {
		t.Error("binary plist")
	}
	// An .app bundle is an executable: its main executable is found from
	// CFBundleExecutable and hashed.
	app := filepath.Join(t.TempDir(), "Tor Browser.app")
	os.MkdirAll(filepath.Join(app, "Contents", "MacOS"), 0o755)
	writeFile(t, filepath.Join(app, "Contents", "Info.plist"), data, 0o644)
	exe := []byte("\xcf\xfa\xed\xfe\x07\x00\x00\x01 fake mach-o")
	writeFile(t, filepath.Join(app, "Contents", "MacOS", "firefox"), exe, 0o755)
	fi, err := inspect(app, 1<<20)
	if err != nil || fi.Type != TypeApp || fi.SHA256 != sha(exe) || fi.Name != "Tor Browser.app" {
		t.Fatalf("bundle: %+v %v", fi, err)
	}
}

// Installed software is matched by name (and publisher as signer); only
// denied programs are reported.
func TestScanSoftware(t *testing.T) {
	old := listSoftware
	defer func() { listSoftware = old }()
	listSoftware = func(context.Context) ([]Software, error) {
		f, _ := os.Open("testdata/dpkg-status")
		defer f.Close()
		sw, _ := parseDpkgStatus(f)
		for k, vals := range parseRegExport(t, "testdata/uninstall.reg") {
			if s, ok := uninstallEntry(k, vals); ok {
				sw = append(sw, s)
			}
		}
		return sw, nil
	}
	r := testRule(t, `files: false
processes: false
deny:
  - {name: [tor, "tor browser*"], category: filter_bypass, reason: Tor bypasses the filter}
  - {name: "wireshark", category: hacking_tools, severity: high, reason: captures traffic}
  - {signer: "Psiphon Inc*", category: filter_bypass, reason: Psiphon proxy}
`)
	s := newSink()
	if err := testCheck.Poll(context.Background(), r, s.emit); err != nil {
		t.Fatal(err)
	}
	got := map[string]string{}
	for _, o := range s.all() {
		got[o.Details["name"].(string)] = o.Details["matched"].(map[string]any)["category"].(string)
		if o.Key == "" || !strings.HasPrefix(o.Message, "denied software installed (") {
			t.Errorf("%+v", o)
		}
	}
	if len(got) != 3 || got["tor"] != "filter_bypass" || got["wireshark-qt"] != "hacking_tools" || got["Psiphon 3"] != "filter_bypass" {
		t.Fatalf("findings %v", got)
	}
}
