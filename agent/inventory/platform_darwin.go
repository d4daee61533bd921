package inventory

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// osPlatform reads macOS's own sources: system_profiler, pkgutil receipts,
// application bundles in /Applications and the directory service.
type osPlatform struct{}

// maxReceipts bounds the pkgutil --pkg-info-plist calls of one audit (one
// process each).
const maxReceipts = 400

func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, name, args...)
	cmd.Stdout = &limitedWriter{w: &out, n: 8 << 20}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out.Bytes(), nil
}

func (osPlatform) Hardware(ctx context.Context, hw *vigilv1.Hardware) error {
	b, err := run(ctx, "system_profiler", "-xml", "SPHardwareDataType")
	if err != nil {
		return err
	}
	return SystemProfilerHardware(b, hw)
}

func (osPlatform) Accounts(ctx context.Context) ([]*vigilv1.LocalAccount, error) {
	users, err := run(ctx, "dscl", ".", "-list", "/Users", "UniqueID")
	if err != nil {
		return nil, err
	}
	admins, err := run(ctx, "dscl", ".", "-read", "/Groups/admin", "GroupMembership")
	if err != nil {
		return nil, err
	}
	return ParseDsclAccounts(users, admins), nil
}

func (osPlatform) Software(ctx context.Context) ([]*vigilv1.SoftwareItem, []*vigilv1.CollectionError) {
	var out []*vigilv1.SoftwareItem
	var errs []*vigilv1.CollectionError
	apps, _ := filepath.Glob("/Applications/*.app")
	for _, a := range apps {
		plist := filepath.Join(a, "Contents", "Info.plist")
		b, err := os.ReadFile(plist)
		if err == nil && bytes.HasPrefix(b, []byte("bplist")) {
			b, err = run(ctx, "plutil", "-convert", "xml1", "-o", "-", plist)
		}
		if err != nil {
			errs = append(errs, &vigilv1.CollectionError{Part: "software/applications", Error: fmt.Sprintf("%s: %v", a, err)})
			continue
		}
		it, err := AppInfo(b, filepath.Base(a))
		if err != nil {
			errs = append(errs, &vigilv1.CollectionError{Part: "software/applications", Error: fmt.Sprintf("%s: %v", a, err)})
			continue
		}
		out = append(out, it)
	}
	b, err := run(ctx, "pkgutil", "--pkgs")
	if err != nil {
		return out, append(errs, &vigilv1.CollectionError{Part: "software/pkgutil", Error: err.Error()})
	}
	ids := ParsePkgutilPkgs(bytes.NewReader(b))
	if len(ids) > maxReceipts {
		errs = append(errs, &vigilv1.CollectionError{Part: "software/pkgutil", Error: fmt.Sprintf("%d receipts, only the first %d read", len(ids), maxReceipts)})
		ids = ids[:maxReceipts]
	}
	for _, id := range ids {
		b, err := run(ctx, "pkgutil", "--pkg-info-plist", id)
		if err == nil {
			var it *vigilv1.SoftwareItem
			if it, err = PkgInfo(b); err == nil {
				out = append(out, it)
				continue
			}
		}
		errs = append(errs, &vigilv1.CollectionError{Part: "software/pkgutil", Error: fmt.Sprintf("%s: %v", id, err)})
	}
	return out, errs
}

func (osPlatform) OSBuild(ctx context.Context) string {
	b, err := run(ctx, "sw_vers", "-buildVersion")
	if err != nil {
		return ""
	}
	return string(bytes.TrimSpace(b))
}

// lowPriority: macOS has no per-thread nice that Go can reach without cgo;
// the one-audit-at-a-time slot and the bounds keep the cost down.
func lowPriority() error { return nil }
