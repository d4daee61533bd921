package inventory

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"unsafe"

	"golang.org/x/sys/windows"
	"golang.org/x/sys/windows/registry"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// osPlatform reads Windows' own sources: the registry (Uninstall keys,
// firmware description) and the NetAPI account database. WMI is not used: it is slow on low-end laptops
// and its reads cannot be tested under Wine.
type osPlatform struct{}

// uninstallPaths are where installers register what Programs and Features
// lists: 64-bit, 32-bit (WOW6432Node) and per-user installs.
var uninstallPaths = []struct {
	root registry.Key
	name string
	path string
}{
	{registry.LOCAL_MACHINE, `HKLM`, `SOFTWARE\Microsoft\Windows\CurrentVersion\Uninstall`},
	{registry.LOCAL_MACHINE, `HKLM`, `SOFTWARE\WOW6432Node\Microsoft\Windows\CurrentVersion\Uninstall`},
	{registry.CURRENT_USER, `HKCU`, `Software\Microsoft\Windows\CurrentVersion\Uninstall`},
}

func (osPlatform) Software(context.Context) ([]*vigilv1.SoftwareItem, []*vigilv1.CollectionError) {
	var keys []map[string]string
	var errs []*vigilv1.CollectionError
	for _, u := range uninstallPaths {
		k, err := ReadUninstallKeys(u.root, u.path)
		if err != nil && !errors.Is(err, registry.ErrNotExist) {
			errs = append(errs, &vigilv1.CollectionError{Part: "software/registry", Error: fmt.Sprintf(`%s\%s: %v`, u.name, u.path, err)})
		}
		keys = append(keys, k...)
	}
	return UninstallSoftware(keys), errs
}

// uninstallValues are the values UninstallSoftware reads.
var uninstallValues = []string{"DisplayName", "DisplayVersion", "Publisher", "InstallDate", "SystemComponent", "ParentKeyName", "ReleaseType"}

// ReadUninstallKeys reads the subkeys of root\path (an Uninstall key) as
// values by name, in the same shape ParseRegExport gives.
func ReadUninstallKeys(root registry.Key, path string) ([]map[string]string, error) {
	k, err := registry.OpenKey(root, path, registry.ENUMERATE_SUB_KEYS|registry.QUERY_VALUE)
	if err != nil {
		return nil, err
	}
	defer k.Close()
	names, err := k.ReadSubKeyNames(-1)
	if err != nil {
		return nil, fmt.Errorf("list subkeys: %w", err)
	}
	var out []map[string]string
	for _, n := range names {
		sk, err := registry.OpenKey(k, n, registry.QUERY_VALUE)
		if err != nil {
			continue // removed meanwhile, or not readable: not installed software we can name
		}
		vals := map[string]string{}
		for _, v := range uninstallValues {
			if s, _, err := sk.GetStringValue(v); err == nil {
				vals[v] = s
			} else if d, _, err := sk.GetIntegerValue(v); err == nil {
				vals[v] = strconv.FormatUint(d, 10)
			}
		}
		sk.Close()
		out = append(out, vals)
	}
	return out, nil
}

// Hardware reads the firmware description the kernel keeps in the
// registry. The serial number is only in WMI (Win32_BIOS), which is not
// read here: said so in the answer.
func (osPlatform) Hardware(_ context.Context, hw *vigilv1.Hardware) error {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `HARDWARE\DESCRIPTION\System\BIOS`, registry.QUERY_VALUE)
	if err != nil {
		return fmt.Errorf(`HKLM\HARDWARE\DESCRIPTION\System\BIOS: %w`, err)
	}
	defer k.Close()
	hw.Manufacturer, _, _ = k.GetStringValue("SystemManufacturer")
	hw.Model, _, _ = k.GetStringValue("SystemProductName")
	return errors.New("serial number: not collected on Windows (only WMI Win32_BIOS holds it)")
}

// userInfo1 is USER_INFO_1 (lmaccess.h).
type userInfo1 struct {
	Name        *uint16
	Password    *uint16
	PasswordAge uint32
	Priv        uint32
	HomeDir     *uint16
	Comment     *uint16
	Flags       uint32
	ScriptPath  *uint16
}

const (
	filterNormalAccount = 0x0002 // FILTER_NORMAL_ACCOUNT
	userPrivAdmin       = 2      // USER_PRIV_ADMIN: a member of Administrators
	ufAccountDisable    = 0x0002 // UF_ACCOUNTDISABLE
	maxPreferredLength  = 0xFFFFFFFF
)

// Accounts lists the local user accounts (NetUserEnum level 0, then
// NetUserGetInfo level 1 for each: Wine's NetUserEnum knows only level 0)
// and which have administrator privilege. Disabled accounts are left out.
func (osPlatform) Accounts(context.Context) ([]*vigilv1.LocalAccount, error) {
	var buf *byte
	var read, total, resume uint32
	if err := windows.NetUserEnum(nil, 0, filterNormalAccount, &buf, maxPreferredLength, &read, &total, &resume); err != nil {
		return nil, fmt.Errorf("NetUserEnum: %w", err)
	}
	defer windows.NetApiBufferFree(buf)
	names := unsafe.Slice((**uint16)(unsafe.Pointer(buf)), read) // USER_INFO_0 is one name pointer
	var out []*vigilv1.LocalAccount
	var errs []string
	for _, n := range names {
		a := &vigilv1.LocalAccount{Name: windows.UTF16PtrToString(n)}
		var ib *byte
		if err := windows.NetUserGetInfo(nil, n, 1, &ib); err != nil {
			errs = append(errs, fmt.Sprintf("%s: NetUserGetInfo: %v", a.Name, err))
			out = append(out, a)
			continue
		}
		u := (*userInfo1)(unsafe.Pointer(ib))
		disabled := u.Flags&ufAccountDisable != 0
		a.Administrator = u.Priv == userPrivAdmin
		windows.NetApiBufferFree(ib)
		if disabled {
			continue
		}
		if a.Administrator {
			a.AdminGroups = []string{"Administrators"}
		}
		out = append(out, a)
	}
	if len(errs) > 0 {
		return out, fmt.Errorf("administrator status unknown for %s", strings.Join(errs, "; "))
	}
	return out, nil
}

func (osPlatform) OSBuild(context.Context) string {
	k, err := registry.OpenKey(registry.LOCAL_MACHINE, `SOFTWARE\Microsoft\Windows NT\CurrentVersion`, registry.QUERY_VALUE)
	if err != nil {
		return ""
	}
	defer k.Close()
	build, _, _ := k.GetStringValue("CurrentBuild")
	if ubr, _, err := k.GetIntegerValue("UBR"); err == nil && build != "" {
		build += "." + strconv.FormatUint(ubr, 10)
	}
	if dv, _, err := k.GetStringValue("DisplayVersion"); err == nil && dv != "" {
		build = strings.TrimSpace(dv + " " + build)
	}
	return build
}

var procSetThreadPriority = windows.NewLazySystemDLL("kernel32.dll").NewProc("SetThreadPriority")

// threadPriorityLowest is THREAD_PRIORITY_LOWEST.
const threadPriorityLowest = -2

// lowPriority lowers this thread's priority so an audit yields the CPU.
func lowPriority() error {
	if r, _, err := procSetThreadPriority.Call(uintptr(windows.CurrentThread()), uintptr(threadPriorityLowest&0xffffffff)); r == 0 {
		return fmt.Errorf("lower the audit thread's priority: %w", err)
	}
	return nil
}
