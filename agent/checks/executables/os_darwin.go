package executables

import (
	"bufio"
	"bytes"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"time"
)

// defaultPaths are the folders watched when a rule gives no paths: users'
// Downloads and Desktop, temp folders (per-user $TMPDIR lives under
// /private/var/folders) and mounted volumes.
func defaultPaths() []string {
	return []string{
		"/Users/*/Downloads", "/Users/*/Desktop",
		"/private/tmp", "/private/var/tmp", "/private/var/folders/*/*/T",
		"/Volumes/*",
	}
}

// installedSoftware lists .app bundles in /Applications (and one folder
// level below it, e.g. /Applications/Utilities) and users' ~/Applications,
// named from the bundle and its Info.plist (XML plists only; a binary
// Info.plist falls back to the bundle name). Packages installed by pkg
// receipts or Homebrew are not covered.
func installedSoftware(ctx context.Context) ([]Software, error) {
	var out []Software
	for _, g := range []string{"/Applications/*.app", "/Applications/*/*.app", "/Users/*/Applications/*.app"} {
		ms, _ := filepath.Glob(g)
		for _, m := range ms {
			if ctx.Err() != nil {
				return out, ctx.Err()
			}
			if len(out) >= maxSoftware {
				return out, nil
			}
			data, _ := readLimited(filepath.Join(m, "Contents", "Info.plist"), 1<<20)
			out = append(out, appSoftware(m, filepath.Base(m), parseInfoPlist(data)))
		}
	}
	return out, nil
}

// osSigner asks codesign for the signing authority and team of a Mach-O
// binary or app bundle. codesign -dv reports what the signature claims
// without verifying it (codesign --verify would).
func osSigner(path, typ string) []string {
	if typ != TypeMachO && typ != TypeApp {
		return nil
	}
	if _, err := os.Stat("/usr/bin/codesign"); err != nil {
		return nil
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	out, _ := exec.CommandContext(ctx, "/usr/bin/codesign", "-dv", "--verbose=2", path).CombinedOutput()
	var names []string
	sc := bufio.NewScanner(bytes.NewReader(out))
	for sc.Scan() {
		line := sc.Text()
		if v, ok := strings.CutPrefix(line, "Authority="); ok && len(names) == 0 {
			names = append(names, v)
		}
		if v, ok := strings.CutPrefix(line, "TeamIdentifier="); ok && v != "not set" {
			names = append(names, v)
		}
	}
	return names
}
