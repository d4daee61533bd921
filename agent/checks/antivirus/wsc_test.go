package antivirus

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// Windows decoding on fixtures shaped like the WMI instances the probe
// reads (SELECT * FROM AntiVirusProduct / MSFT_MpComputerStatus; DATETIME
// properties as CIM strings, which is how WMI hands them to the wmi
// package). Property names keep WMI's casing.

func loadJSON[T any](t *testing.T, name string) []T {
	t.Helper()
	b, err := os.ReadFile(filepath.Join("testdata", "windows", name))
	if err != nil {
		t.Fatal(err)
	}
	var v []T
	if err := json.Unmarshal(b, &v); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	return v
}

func TestDecodeProductState(t *testing.T) {
	for _, tc := range []struct {
		state     uint32
		providers uint8
		scanner   string
		microsoft bool
		outOfDate bool
	}{
		{266240, 0x04, "on", false, false},  // 0x041000 third-party antivirus, on, current
		{262144, 0x04, "off", false, false}, // 0x040000 third-party, off
		{262160, 0x04, "off", false, true},  // 0x040010 off and out of date
		{266256, 0x04, "on", false, true},   // 0x041010 on, out of date
		{270336, 0x04, "snoozed", false, false},
		{274432, 0x04, "expired", false, false},
		{393472, 0x06, "off", true, false}, // 0x060100 Windows Defender off (another product active)
		{397568, 0x06, "on", true, false},  // 0x061100 Windows Defender on, current
		{397584, 0x06, "on", true, true},   // 0x061110 Windows Defender on, out of date
		{393488, 0x06, "off", true, true},  // 0x060110
		{397312, 0x06, "on", false, false}, // 0x061000 third-party (e.g. Avast) on
		{331776, 0x05, "on", false, false}, // 0x051000
		{0x044000, 0x04, "unknown(0x4000)", false, false},
	} {
		got := decodeProductState(tc.state)
		if got.Providers != tc.providers || got.Scanner != tc.scanner || got.Microsoft != tc.microsoft || got.OutOfDate != tc.outOfDate {
			t.Errorf("%d (0x%06x): %+v, want providers 0x%02x scanner %s microsoft %v out-of-date %v",
				tc.state, tc.state, got, tc.providers, tc.scanner, tc.microsoft, tc.outOfDate)
		}
	}
}

func TestParseCIMDateTime(t *testing.T) {
	for in, want := range map[string]string{
		"20261123063012.000000+060": "2026-11-23T05:30:12Z",
		"20261113091500.000000+000": "2026-11-13T09:15:00Z",
		"20261123010000.500000-300": "2026-11-23T06:00:00.5Z",
	} {
		got, err := parseCIMDateTime(in)
		if err != nil || got.Format(time.RFC3339Nano) != want {
			t.Errorf("%s: %v %v, want %s", in, got, err, want)
		}
	}
	for _, bad := range []string{"", "2026112306301", "20261123063012.000000Z060", "2026112306301x.000000+060", "********************+000"} {
		if _, err := parseCIMDateTime(bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
}

func windowsFixture(t *testing.T, wscFile, mpFile string) []Product {
	t.Helper()
	var wsc []antiVirusProduct
	if wscFile != "" {
		wsc = loadJSON[antiVirusProduct](t, wscFile)
	}
	var mp []mpComputerStatus
	if mpFile != "" {
		mp = loadJSON[mpComputerStatus](t, mpFile)
	}
	ps, err := windowsProducts(wsc, nil, mp, nil, testNow)
	if err != nil {
		t.Fatal(err)
	}
	return ps
}

func TestWindowsFixtures(t *testing.T) {
	s := defaults(t)
	for _, tc := range []struct {
		wsc, mp string
		status  string
		msg     string
		names   []string
	}{
		{"wsc_defender_only.json", "defender_current.json", "pass",
			"Microsoft Defender Antivirus 4.18.24090.11 is running, signatures 6 hours old (version 1.421.1634.0)", []string{defenderName}},
		{"wsc_defender_only.json", "defender_old.json", "fail",
			"Microsoft Defender Antivirus signatures are 10 days old (limit 3d)", []string{defenderName}},
		{"wsc_defender_only.json", "defender_rtp_off.json", "fail",
			"real-time protection is off in Microsoft Defender Antivirus", []string{defenderName}},
		// Windows Server: no Security Center, Defender only.
		{"", "defender_old.json", "fail", "Microsoft Defender Antivirus signatures are 10 days old (limit 3d)", []string{defenderName}},
		// Defender passive behind Sophos: Sophos (266240, on, current) passes.
		{"wsc_third_party.json", "defender_passive.json", "pass",
			"Sophos Anti-Virus is running, signatures up to date by its own report", []string{"Sophos Anti-Virus", defenderName}},
		// Defender status unreadable: Security Center's own entries.
		{"wsc_third_party.json", "", "pass", "Sophos Anti-Virus is running, signatures up to date by its own report", []string{"Windows Defender", "Sophos Anti-Virus"}},
		{"wsc_defender_only.json", "", "pass", "Windows Defender is running, signatures up to date by its own report", []string{"Windows Defender"}},
		{"wsc_third_party_problems.json", "defender_passive.json", "fail",
			"Avast Antivirus protection is not running (Security Center state: off); McAfee VirusScan reports its signatures are out of date; " +
				"real-time protection is off in Microsoft Defender Antivirus",
			[]string{"Avast Antivirus", "McAfee VirusScan", defenderName}},
	} {
		t.Run(tc.wsc+"+"+tc.mp, func(t *testing.T) {
			ps := windowsFixture(t, tc.wsc, tc.mp)
			var names []string
			for _, p := range ps {
				names = append(names, p.Name)
			}
			if strings.Join(names, "|") != strings.Join(tc.names, "|") {
				t.Errorf("products %q, want %q", names, tc.names)
			}
			o := evaluate(ps, nil, s, testNow)
			checkDetails(t, o)
			if o.Status != tc.status || o.Message != tc.msg {
				t.Errorf("got %s %q\nwant %s %q", o.Status, o.Message, tc.status, tc.msg)
			}
		})
	}
}

func TestDefenderDetails(t *testing.T) {
	ps := windowsFixture(t, "wsc_third_party.json", "defender_passive.json")
	d := ps[1].detail(testNow)
	for k, want := range map[string]any{
		"name": defenderName, "source": "defender", "version": "4.18.24090.11", "running": true, "realtime": false,
		"signature_version": "1.421.1634.0", "signature_date": "2026-11-23T05:30:12Z", "signature_age_hours": 6.4,
		"running_mode": "Passive Mode", "state": "Passive Mode", "wsc_product_state": float64(393472), "wsc_state": "off",
	} {
		if d[k] != want {
			t.Errorf("%s = %v (%T), want %v", k, d[k], d[k], want)
		}
	}
	sophos := ps[0].detail(testNow)
	for k, want := range map[string]any{
		"name": "Sophos Anti-Virus", "source": "wsc", "running": true, "realtime": true, "signatures_out_of_date": false,
		"product_state": float64(266240), "product_state_hex": "0x041000", "reported_at": "2026-11-23T09:14:37Z",
		"state": "Security Center state: on",
	} {
		if sophos[k] != want {
			t.Errorf("sophos %s = %v, want %v", k, sophos[k], want)
		}
	}
}

// Only the age in days (no LastUpdated): the oldest time it could mean.
func TestDefenderAgeFallback(t *testing.T) {
	p := defenderProduct(mpComputerStatus{AMServiceEnabled: true, AntivirusEnabled: true, RealTimeProtectionEnabled: true, AntivirusSignatureAge: 4}, testNow)
	if o := evaluate([]Product{p}, nil, defaults(t), testNow); o.Status != "fail" || o.Message != "Microsoft Defender Antivirus signatures are 5 days old (limit 3d)" {
		t.Errorf("%s %q", o.Status, o.Message)
	}
	p = defenderProduct(mpComputerStatus{AMServiceEnabled: false, AntivirusSignatureAge: 65535}, testNow)
	if !p.SignatureDate.IsZero() || p.Running || p.State != "antimalware service disabled" {
		t.Errorf("%+v", p)
	}
}

// Partial answers: a failed source is reported alongside the products of
// the other.
func TestWindowsPartialErrors(t *testing.T) {
	mp := loadJSON[mpComputerStatus](t, "defender_current.json")
	ps, err := windowsProducts(nil, errString("Invalid namespace"), mp, nil, testNow)
	if len(ps) != 1 || err == nil || err.Error() != "Security Center: Invalid namespace" {
		t.Fatalf("%v %v", ps, err)
	}
	o := evaluate(ps, err, defaults(t), testNow)
	if o.Status != "pass" || o.Details["probe_error"] != "Security Center: Invalid namespace" {
		t.Errorf("%s %q %v", o.Status, o.Message, o.Details["probe_error"])
	}
	ps, err = windowsProducts(nil, errString("Invalid namespace"), nil, errString("Access denied"), testNow)
	if len(ps) != 0 || err.Error() != "Security Center: Invalid namespace\nDefender: Access denied" {
		t.Fatalf("%v %v", ps, err)
	}
	if o := evaluate(ps, err, defaults(t), testNow); o.Status != "fail" || !strings.HasPrefix(o.Message, "antivirus status could not be read: Security Center: Invalid namespace") {
		t.Errorf("%s %q", o.Status, o.Message)
	}
}

type errString string

func (e errString) Error() string { return string(e) }
