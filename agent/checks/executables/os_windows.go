package executables

import (
	"context"
	"os"
	"strconv"
	"strings"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"
)

// defaultPaths are the folders watched when a rule gives no paths: users'
// Downloads and Desktop, temp folders, and the roots of removable drives
// (USB sticks, SD cards: GetDriveType DRIVE_REMOVABLE) present when the
// paths are expanded (every 30 s while running).
func defaultPaths() []string {
	sys := os.Getenv("SystemDrive")
	if sys == "" {
		sys = "C:"
	}
	out := []string{
		sys + `\Users\*\Downloads`, sys + `\Users\*\Desktop`,
		sys + `\Users\*\AppData\Local\Temp`, sys + `\Windows\Temp`,
	}
	return append(out, removableDrives()...)
}

func removableDrives() []string {
	mask, err := windows.GetLogicalDrives()
	if err != nil {
		return nil
	}
	var out []string
	for i := 0; i < 26; i++ {
		if mask&(1<<i) == 0 {
			continue
		}
		root := string(rune('A'+i)) + `:\`
		p, err := windows.UTF16PtrFromString(root)
		if err != nil {
			continue
		}
		if windows.GetDriveType(p) == windows.DRIVE_REMOVABLE {
			out = append(out, root)
		}
	}
	return out
}

const uninstallKey = `Software\Microsoft\Windows\CurrentVersion\Uninstall`

// installedSoftware reads the Uninstall keys of HKLM (64- and 32-bit
// views) and of every user hive loaded under HKEY_USERS (users not logged
// in have no loaded hive and are missed). MSIX/Store apps are not covered.
func installedSoftware(ctx context.Context) ([]Software, error) {
	type root struct {
		k      registry.Key
		path   string
		access uint32
	}
	roots := []root{
		{registry.LOCAL_MACHINE, uninstallKey, registry.WOW64_64KEY},
		{registry.LOCAL_MACHINE, uninstallKey, registry.WOW64_32KEY},
	}
	if k, err := registry.OpenKey(registry.USERS, "", registry.ENUMERATE_SUB_KEYS); err == nil {
		sids, _ := k.ReadSubKeyNames(-1)
		k.Close()
		for _, sid := range sids {
			if !strings.HasSuffix(sid, "_Classes") {
				roots = append(roots, root{registry.USERS, sid + `\` + uninstallKey, 0})
			}
		}
	}
	var out []Software
	for _, r := range roots {
		k, err := registry.OpenKey(r.k, r.path, registry.ENUMERATE_SUB_KEYS|registry.QUERY_VALUE|r.access)
		if err != nil {
			continue
		}
		names, _ := k.ReadSubKeyNames(-1)
		for _, name := range names {
			if ctx.Err() != nil {
				k.Close()
				return out, ctx.Err()
			}
			if len(out) >= maxSoftware {
				break
			}
			if s, ok := uninstallEntry(name, readValues(k, name)); ok {
				out = append(out, s)
			}
		}
		k.Close()
	}
	return out, nil
}

func readValues(parent registry.Key, name string) map[string]string {
	vals := map[string]string{}
	k, err := registry.OpenKey(parent, name, registry.QUERY_VALUE)
	if err != nil {
		return vals
	}
	defer k.Close()
	names, _ := k.ReadValueNames(-1)
	for _, n := range names {
		if s, _, err := k.GetStringValue(n); err == nil {
			vals[n] = s
		} else if i, _, err := k.GetIntegerValue(n); err == nil {
			vals[n] = strconv.FormatUint(i, 10)
		}
	}
	return vals
}

// osSigner: the Authenticode signer is read from the PE itself
// (peSignerNames); WinVerifyTrust verification is not done.
func osSigner(string, string) []string { return nil }
