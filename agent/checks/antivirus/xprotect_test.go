package antivirus

import (
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// macOS decoding on fixtures: `system_profiler -json
// SPInstallHistoryDataType` output and XProtect.bundle's Info.plist.

func darwinFixture(t *testing.T, name string) []byte {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "darwin", name))
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestParseInstallHistory(t *testing.T) {
	items, err := parseInstallHistory(darwinFixture(t, "install_history.json"))
	if err != nil || len(items) != 8 {
		t.Fatalf("%d items, %v", len(items), err)
	}
	hist := xprotectHistory(items)
	var got []string
	for _, h := range hist {
		got = append(got, h.Version+"@"+h.Date.Format(time.RFC3339))
	}
	if want := "5318@2026-11-21T22:14:03Z 5316@2026-11-10T06:30:41Z 5310@2026-09-02T21:44:19Z"; strings.Join(got, " ") != want {
		t.Errorf("XProtect history %q, want %q", got, want)
	}
	if _, err := parseInstallHistory([]byte("not json")); err == nil {
		t.Error("garbage accepted")
	}
}

func TestParsePlist(t *testing.T) {
	m, err := parsePlistStrings(darwinFixture(t, "XProtect-Info.plist"))
	if err != nil {
		t.Fatal(err)
	}
	if m["CFBundleShortVersionString"] != "5318" || m["CFBundleName"] != "XProtect" || m["DTPlatformBuild"] != "" {
		t.Errorf("%v", m)
	}
	if _, ok := m["MacOSX"]; ok {
		t.Error("array element taken as a key")
	}
	for _, bad := range []string{"bplist00\x01\x02", "<plist><dict></dict></plist>", "<plist"} {
		if _, err := parsePlistStrings([]byte(bad)); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func TestXProtectProduct(t *testing.T) {
	items, _ := parseInstallHistory(darwinFixture(t, "install_history.json"))
	plist, _ := parsePlistStrings(darwinFixture(t, "XProtect-Info.plist"))
	mtime := time.Date(2026, 11, 21, 22, 14, 30, 0, time.UTC)
	s := defaults(t)

	// Version from the bundle, date from its install-history entry.
	p, ok := xprotectProduct(xprotectInput{PlistPath: xprotectPlists[0], Plist: plist, PlistMtime: mtime, History: items})
	if !ok || p.SignatureVersion != "5318" || !p.SignatureDate.Equal(time.Date(2026, 11, 21, 22, 14, 3, 0, time.UTC)) ||
		p.Extra["signature_date_from"] != "install history" || !p.Running || p.Realtime != nil {
		t.Fatalf("%+v", p)
	}
	if o := evaluate([]Product{p}, nil, s, testNow); o.Status != "pass" || o.Message != "XProtect is running, signatures 37 hours old (version 5318)" {
		t.Errorf("%s %q", o.Status, o.Message)
	}
	// Three weeks later, without an update: fail.
	later := testNow.Add(18 * 24 * time.Hour)
	if o := evaluate([]Product{p}, nil, s, later); o.Status != "fail" || o.Message != "XProtect signatures are 19 days old (limit 3d)" {
		t.Errorf("%s %q", o.Status, o.Message)
	}

	// A version with no history entry (updated outside Software Update):
	// the bundle's modification time.
	newer := map[string]string{"CFBundleShortVersionString": "5321"}
	p, _ = xprotectProduct(xprotectInput{Plist: newer, PlistMtime: testNow.Add(-time.Hour), History: items})
	if p.SignatureVersion != "5321" || !p.SignatureDate.Equal(testNow.Add(-time.Hour)) || p.Extra["signature_date_from"] != "bundle modification time" ||
		p.Extra["last_install_history_version"] != "5318" {
		t.Errorf("%+v", p)
	}

	// No bundle readable: the newest history entry.
	p, ok = xprotectProduct(xprotectInput{PlistErr: os.ErrNotExist, History: items})
	if !ok || p.SignatureVersion != "5318" || p.Extra["bundle_error"] == nil {
		t.Errorf("%+v", p)
	}

	// Nothing at all: no product.
	if _, ok := xprotectProduct(xprotectInput{PlistErr: os.ErrNotExist, HistoryErr: errors.New("system_profiler: exit status 1")}); ok {
		t.Error("XProtect reported with neither bundle nor history")
	}
}

func TestMatchDaemons(t *testing.T) {
	// Linux comm names are cut to 15 bytes.
	ps := matchDaemons([]string{"bash", "sophos_threat_d", "wdavdaemon", "falcon-sensor", "esets", "esets_daemon"}, linuxDaemons)
	var names []string
	for _, p := range ps {
		names = append(names, p.Name)
		if !p.Running || p.Source != "process" || p.Realtime != nil || !p.SignatureDate.IsZero() {
			t.Errorf("%+v", p)
		}
	}
	if want := "Microsoft Defender for Endpoint|CrowdStrike Falcon|Sophos Protection for Linux|ESET Endpoint Antivirus"; strings.Join(names, "|") != want {
		t.Errorf("%q, want %q", names, want)
	}
	if ps := matchDaemons([]string{"SophosScanD", "launchd"}, darwinDaemons); len(ps) != 1 || ps[0].Name != "Sophos Anti-Virus" {
		t.Errorf("%+v", ps)
	}
	if ps := matchDaemons(nil, linuxDaemons); len(ps) != 0 {
		t.Errorf("%+v", ps)
	}
}
