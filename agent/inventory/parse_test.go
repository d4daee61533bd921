package inventory

import (
	"bytes"
	"os"
	"path/filepath"
	"strings"
	"testing"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func fixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func byName(items []*vigilv1.SoftwareItem) map[string]*vigilv1.SoftwareItem {
	m := map[string]*vigilv1.SoftwareItem{}
	for _, it := range items {
		m[it.Name] = it
	}
	return m
}

func TestParseDpkgStatus(t *testing.T) {
	items, err := ParseDpkgStatus(bytes.NewReader(fixture(t, "dpkg-status")), func(pkg, arch string) string {
		if pkg == "bash" && arch == "amd64" {
			return "2025-01-02"
		}
		return ""
	})
	if err != nil {
		t.Fatal(err)
	}
	m := byName(items)
	if len(items) != 3 || m["oldtool"] != nil {
		t.Fatalf("want adduser, bash, dpkg (not the config-files remnant), got %v", items)
	}
	if a := m["adduser"]; a.Version != "3.134" || a.Publisher != "Debian Adduser Developers" || a.Source != "dpkg" {
		t.Errorf("adduser: %v", a)
	}
	if m["bash"].InstallDate != "2025-01-02" {
		t.Errorf("bash install date from its file list: %v", m["bash"])
	}
}

func TestParseDpkgStatusBad(t *testing.T) {
	_, err := ParseDpkgStatus(strings.NewReader("Package: a\nStatus: install ok installed\nno colon here\n"), nil)
	if err == nil || !strings.Contains(err.Error(), "no colon here") {
		t.Fatalf("want an error naming the bad line, got %v", err)
	}
}

func TestParseRpmQuery(t *testing.T) {
	items, err := ParseRpmQuery(bytes.NewReader(fixture(t, "rpm-qa.txt")))
	if err != nil {
		t.Fatal(err)
	}
	m := byName(items)
	if ff := m["firefox-esr"]; ff == nil || ff.Version != "115.6.0-1.el9" || ff.Publisher != "Red Hat, Inc." || ff.InstallDate != "2024-01-15" {
		t.Errorf("firefox-esr: %v", ff)
	}
	if g := m["gpg-pubkey"]; g == nil || g.Publisher != "" {
		t.Errorf("(none) vendor is no publisher: %v", g)
	}
	if _, err := ParseRpmQuery(strings.NewReader("a\tb\n")); err == nil {
		t.Error("a short line must be an error")
	}
}

func TestParseAccounts(t *testing.T) {
	accts, err := ParseAccounts(bytes.NewReader(fixture(t, "passwd")), bytes.NewReader(fixture(t, "group")))
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]*vigilv1.LocalAccount{}
	for _, a := range accts {
		got[a.Name] = a
	}
	if len(accts) != 4 || got["daemon"] != nil || got["nobody"] != nil {
		t.Fatalf("want root, teacher1, pupil1, tech; got %v", accts)
	}
	if !got["root"].Administrator || !got["teacher1"].Administrator || got["pupil1"].Administrator {
		t.Errorf("admins: root %v teacher1 %v pupil1 %v", got["root"], got["teacher1"], got["pupil1"])
	}
	// tech's primary group is sudo (gid 27).
	if a := got["tech"]; !a.Administrator || len(a.AdminGroups) != 1 || a.AdminGroups[0] != "sudo" {
		t.Errorf("tech: %v", a)
	}
}

// uninstall.reg is `reg export` (reg.exe under Wine) of Uninstall-style
// keys: UTF-16LE with BOM, dwords, hex(2) continued over lines.
func TestParseRegExportUninstall(t *testing.T) {
	keys, err := ParseRegExport(fixture(t, "uninstall.reg"))
	if err != nil {
		t.Fatal(err)
	}
	var vals []map[string]string
	for _, k := range keys {
		if strings.Contains(k.Path, `Uninstall\`) {
			vals = append(vals, k.Values)
		}
	}
	if len(vals) != 6 {
		t.Fatalf("want 6 subkeys, got %d: %v", len(vals), keys)
	}
	for _, k := range keys {
		if strings.HasSuffix(k.Path, "GoogleChrome") && k.Values["InstallLocation"] != `%ProgramFiles%\Google\Chrome` {
			t.Errorf("hex(2) value: %q", k.Values["InstallLocation"])
		}
		if strings.HasSuffix(k.Path, "7-Zip") && (k.Values["NoModify"] != "1" || k.Values["UninstallString"] != `C:\Program Files\7-Zip\Uninstall.exe`) {
			t.Errorf("7-Zip values: %v", k.Values)
		}
	}
	sw := byName(UninstallSoftware(vals))
	if len(sw) != 3 {
		t.Fatalf("want Office, 7-Zip, Chrome (no update, no system component, no nameless key), got %v", sw)
	}
	if o := sw["Microsoft Office Professional Plus 2016"]; o == nil || o.Version != "16.0.4266.1001" || o.Publisher != "Microsoft Corporation" || o.InstallDate != "2024-01-15" || o.Source != "registry" {
		t.Errorf("office: %v", o)
	}
	if _, err := ParseRegExport([]byte("not a registry file")); err == nil {
		t.Error("a file without the header must be refused")
	}
}

func TestPkgutil(t *testing.T) {
	ids := ParsePkgutilPkgs(bytes.NewReader(fixture(t, "pkgutil-pkgs.txt")))
	if len(ids) != 6 || ids[2] != "com.microsoft.package.Microsoft_Word.app" {
		t.Fatalf("ids %v", ids)
	}
	it, err := PkgInfo(fixture(t, "pkgutil-pkg-info-word.plist"))
	if err != nil {
		t.Fatal(err)
	}
	if it.Name != "com.microsoft.package.Microsoft_Word.app" || it.Version != "16.80.23121017" || it.InstallDate != "2024-01-15" || it.Publisher != "com.microsoft" {
		t.Errorf("word receipt: %v", it)
	}
}

func TestAppInfo(t *testing.T) {
	it, err := AppInfo(fixture(t, "Info-VLC.plist"), "VLC.app")
	if err != nil {
		t.Fatal(err)
	}
	if it.Name != "VLC" || it.Version != "3.0.20" || it.Publisher != "org.videolan" || it.Source != "applications" {
		t.Errorf("vlc: %v", it)
	}
	if _, err := AppInfo([]byte("bplist00\x00\x01"), "X.app"); err == nil || !strings.Contains(err.Error(), "binary") {
		t.Errorf("a binary plist must say so: %v", err)
	}
}

func TestSystemProfilerHardware(t *testing.T) {
	hw := &vigilv1.Hardware{}
	if err := SystemProfilerHardware(fixture(t, "system_profiler-SPHardwareDataType.xml"), hw); err != nil {
		t.Fatal(err)
	}
	if hw.Manufacturer != "Apple Inc." || hw.Model != "MacBook Air (MacBookAir10,1)" || hw.Serial != "FVFGK1ABQ6L4" || hw.CpuModel != "Apple M1" || hw.MemoryBytes != 8<<30 {
		t.Errorf("hardware: %v", hw)
	}
}

func TestParseDsclAccounts(t *testing.T) {
	accts := ParseDsclAccounts(fixture(t, "dscl-users.txt"), fixture(t, "dscl-admin.txt"))
	got := map[string]bool{}
	for _, a := range accts {
		got[a.Name] = a.Administrator
	}
	if len(accts) != 3 || !got["root"] || !got["teacher1"] || got["pupil1"] {
		t.Errorf("accounts %v", accts)
	}
}
