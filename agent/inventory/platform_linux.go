package inventory

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"

	"golang.org/x/sys/unix"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// osPlatform reads Linux's own sources under root ("" is /).
type osPlatform struct{ root string }

func (p osPlatform) path(s string) string { return filepath.Join("/", p.root, s) }

// Hardware reads the firmware's DMI table as the kernel exposes it. The
// serial is readable by root only (the agent service runs as root).
func (p osPlatform) Hardware(_ context.Context, hw *vigilv1.Hardware) error {
	dir := p.path("sys/class/dmi/id")
	read := func(name string) (string, error) {
		b, err := os.ReadFile(filepath.Join(dir, name))
		return strings.TrimSpace(string(b)), err
	}
	var errs []string
	for _, f := range []struct {
		name string
		dst  *string
	}{{"sys_vendor", &hw.Manufacturer}, {"product_name", &hw.Model}, {"product_serial", &hw.Serial}} {
		v, err := read(f.name)
		if err != nil {
			errs = append(errs, err.Error())
			continue
		}
		*f.dst = v
	}
	if len(errs) > 0 {
		return fmt.Errorf("DMI (manufacturer, model, serial): %s", strings.Join(errs, "; "))
	}
	return nil
}

func (p osPlatform) Accounts(context.Context) ([]*vigilv1.LocalAccount, error) {
	pw, err := os.Open(p.path("etc/passwd"))
	if err != nil {
		return nil, err
	}
	defer pw.Close()
	gr, err := os.Open(p.path("etc/group"))
	if err != nil {
		return nil, err
	}
	defer gr.Close()
	return ParseAccounts(pw, gr)
}

func (p osPlatform) Software(ctx context.Context) ([]*vigilv1.SoftwareItem, []*vigilv1.CollectionError) {
	var out []*vigilv1.SoftwareItem
	var errs []*vigilv1.CollectionError
	status := p.path("var/lib/dpkg/status")
	if f, err := os.Open(status); err == nil {
		info := p.path("var/lib/dpkg/info")
		items, err := ParseDpkgStatus(f, func(pkg, arch string) string {
			// dpkg keeps no install date; the package's file list is
			// written when it is unpacked.
			for _, n := range []string{pkg + ":" + arch + ".list", pkg + ".list"} {
				if st, err := os.Stat(filepath.Join(info, n)); err == nil {
					return st.ModTime().UTC().Format(time.DateOnly)
				}
			}
			return ""
		})
		f.Close()
		out = append(out, items...)
		if err != nil {
			errs = append(errs, &vigilv1.CollectionError{Part: "software/dpkg", Error: err.Error()})
		}
	} else if !os.IsNotExist(err) {
		errs = append(errs, &vigilv1.CollectionError{Part: "software/dpkg", Error: err.Error()})
	}
	if p.rpmDB() {
		items, err := runRpm(ctx)
		out = append(out, items...)
		if err != nil {
			errs = append(errs, &vigilv1.CollectionError{Part: "software/rpm", Error: err.Error()})
		}
	}
	if len(out) == 0 && len(errs) == 0 {
		errs = append(errs, &vigilv1.CollectionError{Part: "software", Error: "no package database found (dpkg, rpm)"})
	}
	return out, errs
}

// rpmDB: an rpm database with packages in it (Debian ships the rpm tool
// with an empty one, which is not a package manager in use).
func (p osPlatform) rpmDB() bool {
	for _, d := range []string{"var/lib/rpm", "usr/lib/sysimage/rpm"} {
		for _, f := range []string{"rpmdb.sqlite", "Packages", "Packages.db"} {
			if st, err := os.Stat(filepath.Join(p.path(d), f)); err == nil && st.Size() > 0 {
				return true
			}
		}
	}
	return false
}

func runRpm(ctx context.Context) ([]*vigilv1.SoftwareItem, error) {
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	defer cancel()
	var out bytes.Buffer
	cmd := exec.CommandContext(ctx, "rpm", "-qa", "--qf", RpmQueryFormat)
	cmd.Stdout = &limitedWriter{w: &out, n: 8 << 20}
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("rpm -qa: %w", err)
	}
	return ParseRpmQuery(&out)
}

func (p osPlatform) OSBuild(context.Context) string {
	b, err := os.ReadFile(p.path("etc/os-release"))
	if err != nil {
		return ""
	}
	vals := map[string]string{}
	for _, line := range strings.Split(string(b), "\n") {
		if k, v, ok := strings.Cut(line, "="); ok {
			vals[k] = strings.Trim(v, `"'`)
		}
	}
	for _, k := range []string{"BUILD_ID", "PRETTY_NAME"} {
		if vals[k] != "" {
			return vals[k]
		}
	}
	return ""
}

// lowPriority lowers this OS thread to nice 19 (Linux nice values are per
// thread), so an audit yields the CPU to everything else on the device.
// Processes started from it (rpm) inherit it.
func lowPriority() error {
	if err := unix.Setpriority(unix.PRIO_PROCESS, unix.Gettid(), 19); err != nil {
		return fmt.Errorf("lower the audit thread's priority: %w", err)
	}
	return nil
}
