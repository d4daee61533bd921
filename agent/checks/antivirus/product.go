package antivirus

import (
	"context"
	"time"
)

// probe reads the antivirus products of this machine. Each platform has one
// (probe_linux.go, probe_windows.go, probe_darwin.go, probe_other.go); the
// parsing behind them is platform-independent and tested on fixtures.
//
// Products may return products together with an error (one source failed,
// another answered): the products are evaluated and the error is reported
// in the finding's details.
type probe interface {
	Products(ctx context.Context) ([]Product, error)
}

// Product is one antivirus product as a probe observed it.
type Product struct {
	Name    string // "ClamAV", "Microsoft Defender Antivirus", "XProtect", a Security Center displayName
	Version string // engine or product version, when known
	Source  string // where the observation came from: clamd, clamav-db, process, wsc, defender, xprotect

	// Running: the product's scanning service is up (clamd answering, WSC
	// state "on", Defender service and antivirus enabled, the daemon
	// process present).
	Running bool
	// Realtime is real-time (on-access) protection as the product reports
	// it; nil when the product does not report it.
	Realtime *bool

	SignatureVersion string
	// SignatureDate is when the loaded signatures were built or installed;
	// zero when the product does not report it.
	SignatureDate time.Time
	// OutOfDate is the product's own verdict on its signatures (Windows
	// Security Center's "definitions out of date" bit); nil when unknown.
	OutOfDate *bool

	// State is a short human-readable state ("on", "snoozed", "clamd not
	// answering: ..."), Extra any raw values worth keeping in the finding.
	State string
	Extra map[string]any
}

func ptr[T any](v T) *T { return &v }

// detail renders p for a finding's details (structpb-compatible values
// only: strings, numbers, bools, maps and []any).
func (p Product) detail(now time.Time) map[string]any {
	d := map[string]any{
		"name":    p.Name,
		"source":  p.Source,
		"running": p.Running,
	}
	if p.Version != "" {
		d["version"] = p.Version
	}
	if p.Realtime != nil {
		d["realtime"] = *p.Realtime
	}
	if p.SignatureVersion != "" {
		d["signature_version"] = p.SignatureVersion
	}
	if !p.SignatureDate.IsZero() {
		d["signature_date"] = p.SignatureDate.UTC().Format(time.RFC3339)
		d["signature_age_hours"] = float64(int64(now.Sub(p.SignatureDate).Hours()*10)) / 10
	}
	if p.OutOfDate != nil {
		d["signatures_out_of_date"] = *p.OutOfDate
	}
	if p.State != "" {
		d["state"] = p.State
	}
	for k, v := range p.Extra {
		if _, taken := d[k]; !taken {
			d[k] = v
		}
	}
	return d
}
