package antivirus

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"time"
)

// darwinProbe: XProtect (bundle Info.plist and system_profiler's install
// history) and other products recognised by their daemon's process name.
type darwinProbe struct{}

func newProbe(settings) probe { return darwinProbe{} }

func (darwinProbe) Products(ctx context.Context) ([]Product, error) {
	var in xprotectInput
	in.PlistErr = os.ErrNotExist
	for _, p := range xprotectPlists {
		b, err := os.ReadFile(p)
		if errors.Is(err, os.ErrNotExist) {
			continue
		}
		in.PlistPath = p
		if err == nil && bytes.HasPrefix(b, []byte("bplist")) {
			b, err = run(ctx, "/usr/bin/plutil", "-convert", "xml1", "-o", "-", p)
		}
		if err == nil {
			in.Plist, err = parsePlistStrings(b)
		}
		in.PlistErr = err
		if fi, serr := os.Stat(p); serr == nil {
			in.PlistMtime = fi.ModTime()
		}
		break
	}
	if b, err := run(ctx, "/usr/sbin/system_profiler", "-json", "SPInstallHistoryDataType"); err != nil {
		in.HistoryErr = err
	} else {
		in.History, in.HistoryErr = parseInstallHistory(b)
	}
	var out []Product
	var errs []error
	if xp, ok := xprotectProduct(in); ok {
		out = append(out, xp)
	} else {
		errs = append(errs, fmt.Errorf("XProtect: bundle: %v; install history: %v", in.PlistErr, in.HistoryErr))
	}
	names, err := processNames(ctx)
	if err != nil {
		errs = append(errs, fmt.Errorf("list processes: %w", err))
	}
	out = append(out, matchDaemons(names, darwinDaemons)...)
	return out, errors.Join(errs...)
}

// run runs a command with a 20-second bound inside ctx; output is capped
// by the command itself (system_profiler's install history is ~100 KiB).
func run(ctx context.Context, name string, args ...string) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ctx, 20*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, name, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		if s := bytes.TrimSpace(stderr.Bytes()); len(s) > 0 {
			if len(s) > 200 {
				s = s[:200]
			}
			return nil, fmt.Errorf("%s: %w: %s", name, err, s)
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return out, nil
}
