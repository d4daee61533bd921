package antivirus

import (
	"errors"
	"fmt"
	"strconv"
	"strings"
	"time"
)

// Windows: decoding of what WMI answers. Platform-independent so that it
// is tested on recorded answers (testdata/windows/*.json); only the WMI
// queries live in probe_windows.go.

// antiVirusProduct is a root/SecurityCenter2 AntiVirusProduct instance.
// Field names are the WMI property names: the wmi package reads
// properties by field name, and the JSON fixtures (PowerShell's
// Get-CimInstance ... | ConvertTo-Json) decode into it case-insensitively.
// Windows Server has no SecurityCenter2 namespace.
type antiVirusProduct struct {
	DisplayName              string
	InstanceGuid             string
	PathToSignedProductExe   string
	PathToSignedReportingExe string
	ProductState             uint32
	Timestamp                string // RFC 1123, when the product last reported
}

// mpComputerStatus is a root/Microsoft/Windows/Defender MSFT_MpComputerStatus
// instance (the class behind Get-MpComputerStatus). Datetimes are CIM
// DATETIME strings ("20261123101530.000000+000"). AMRunningMode is absent
// on older Windows 10 builds (the query allows missing fields).
type mpComputerStatus struct {
	AMProductVersion              string
	AMRunningMode                 string
	AMServiceEnabled              bool
	AntivirusEnabled              bool
	RealTimeProtectionEnabled     bool
	AntivirusSignatureLastUpdated string
	AntivirusSignatureVersion     string
	AntivirusSignatureAge         uint32 // days
}

// wscState is a decoded Security Center productState. The value packs
// three bytes (documented in docs/checks/antivirus.md):
//
//	0xFF0000  security provider flags (0x04 antivirus, 0x08 antispyware, 0x02 auto-update, ...)
//	0x00F000  scanner state: 0x0000 off, 0x1000 on, 0x2000 snoozed, 0x3000 expired
//	0x000F00  owner: 0x0100 Microsoft (Windows Defender), 0x0000 another vendor
//	0x0000F0  signatures: 0x00 up to date, 0x10 out of date
//
// e.g. 266240 = 0x041000 (third-party antivirus, on, up to date),
// 393472 = 0x060100 (Windows Defender off, as when another product is
// active).
type wscState struct {
	Providers uint8
	Scanner   string // on, off, snoozed, expired, unknown(0x...)
	Microsoft bool
	OutOfDate bool
}

const (
	wscScannerMask   = 0x00F000
	wscOwnerMask     = 0x000F00
	wscSignatureMask = 0x0000F0

	wscScannerOn       = 0x1000
	wscOwnerMicrosoft  = 0x0100
	wscSignaturesStale = 0x0010
)

func decodeProductState(s uint32) wscState {
	st := wscState{
		Providers: uint8(s >> 16),
		Microsoft: s&wscOwnerMask == wscOwnerMicrosoft,
		OutOfDate: s&wscSignatureMask == wscSignaturesStale,
	}
	switch s & wscScannerMask {
	case 0x0000:
		st.Scanner = "off"
	case wscScannerOn:
		st.Scanner = "on"
	case 0x2000:
		st.Scanner = "snoozed"
	case 0x3000:
		st.Scanner = "expired"
	default:
		st.Scanner = fmt.Sprintf("unknown(0x%04x)", s&wscScannerMask)
	}
	return st
}

// wscProduct turns a Security Center entry into a Product. WSC "on" is
// the product's real-time protection being on; WSC reports no signature
// date, only the product's own out-of-date verdict.
func wscProduct(a antiVirusProduct) Product {
	st := decodeProductState(a.ProductState)
	on := st.Scanner == "on"
	p := Product{
		Name:      strings.TrimSpace(a.DisplayName),
		Source:    "wsc",
		Running:   on,
		Realtime:  ptr(on),
		OutOfDate: ptr(st.OutOfDate),
		State:     "Security Center state: " + st.Scanner,
		Extra: map[string]any{
			"product_state":     float64(a.ProductState),
			"product_state_hex": fmt.Sprintf("0x%06x", a.ProductState),
		},
	}
	if p.Name == "" {
		p.Name = "unnamed Security Center product"
	}
	if a.PathToSignedProductExe != "" {
		p.Extra["path"] = a.PathToSignedProductExe
	}
	if t, err := time.Parse(time.RFC1123, a.Timestamp); err == nil {
		p.Extra["reported_at"] = t.UTC().Format(time.RFC3339)
	}
	return p
}

// defenderName is what Windows 10 and 11 call Defender in Get-MpComputerStatus'
// documentation; Security Center calls it "Windows Defender".
const defenderName = "Microsoft Defender Antivirus"

func defenderProduct(m mpComputerStatus, now time.Time) Product {
	p := Product{
		Name:             defenderName,
		Source:           "defender",
		Version:          m.AMProductVersion,
		Running:          m.AMServiceEnabled && m.AntivirusEnabled,
		Realtime:         ptr(m.RealTimeProtectionEnabled),
		SignatureVersion: m.AntivirusSignatureVersion,
		Extra:            map[string]any{},
	}
	switch {
	case !m.AMServiceEnabled:
		p.State = "antimalware service disabled"
	case !m.AntivirusEnabled:
		p.State = "antivirus disabled"
	}
	if m.AMRunningMode != "" {
		p.Extra["running_mode"] = m.AMRunningMode
		if p.State == "" && m.AMRunningMode != "Normal" {
			p.State = m.AMRunningMode
		}
	}
	if t, err := parseCIMDateTime(m.AntivirusSignatureLastUpdated); err == nil {
		p.SignatureDate = t
	} else if m.AntivirusSignatureAge < 65535 && m.AntivirusSignatureLastUpdated == "" {
		// Only the age in days is known: the oldest time it could mean.
		p.SignatureDate = now.Add(-time.Duration(m.AntivirusSignatureAge+1) * 24 * time.Hour)
		p.Extra["signature_age_days"] = float64(m.AntivirusSignatureAge)
	}
	return p
}

// windowsProducts merges Security Center and Defender. When Defender's own
// status is readable, it replaces Security Center's Microsoft-owned entry
// (whose state is kept in the details).
func windowsProducts(wsc []antiVirusProduct, wscErr error, mp []mpComputerStatus, mpErr error, now time.Time) ([]Product, error) {
	var out []Product
	haveDefender := mpErr == nil && len(mp) > 0
	var defender Product
	if haveDefender {
		defender = defenderProduct(mp[0], now)
	}
	for _, a := range wsc {
		if haveDefender && decodeProductState(a.ProductState).Microsoft {
			defender.Extra["wsc_product_state"] = float64(a.ProductState)
			defender.Extra["wsc_state"] = decodeProductState(a.ProductState).Scanner
			continue
		}
		out = append(out, wscProduct(a))
	}
	if haveDefender {
		out = append(out, defender)
	}
	var errs []error
	if wscErr != nil {
		errs = append(errs, fmt.Errorf("Security Center: %w", wscErr))
	}
	if mpErr != nil {
		errs = append(errs, fmt.Errorf("Defender: %w", mpErr))
	}
	return out, errors.Join(errs...)
}

// parseCIMDateTime parses a CIM DATETIME: yyyymmddHHMMSS.mmmmmmsUUU, where
// sUUU is the offset from UTC in minutes.
func parseCIMDateTime(s string) (time.Time, error) {
	if len(s) != 25 || s[14] != '.' || (s[21] != '+' && s[21] != '-') {
		return time.Time{}, fmt.Errorf("bad CIM datetime %q", s)
	}
	base, err := time.Parse("20060102150405.000000", s[:21])
	if err != nil {
		return time.Time{}, fmt.Errorf("bad CIM datetime %q", s)
	}
	mins, err := strconv.Atoi(s[22:])
	if err != nil {
		return time.Time{}, fmt.Errorf("bad CIM datetime %q", s)
	}
	if s[21] == '-' {
		mins = -mins
	}
	return base.Add(-time.Duration(mins) * time.Minute).UTC(), nil
}
