//go:build windows

package upgrade

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"time"

	"golang.org/x/sys/windows"

	"github.com/vigil-safeguarding/vigil/agent/state"
)

func keepPrevious(exe, prev string) error { return copyFile(exe, prev, 0o755) }

// replace moves the running binary aside (Windows allows renaming a running
// executable, not overwriting it) and the staged one into its place.
func replace(staged, exe string) error {
	old := exe + ".old"
	os.Remove(old)
	if err := os.Rename(exe, old); err != nil {
		return err
	}
	if err := os.Rename(staged, exe); err != nil {
		os.Rename(old, exe)
		return err
	}
	return nil
}

func restore(prev, exe string) error {
	failed := exe + ".failed"
	os.Remove(failed)
	os.Rename(exe, failed)
	return copyFile(prev, exe, 0o755)
}

// StartWatchdogProcess starts `PREV upgrade-watchdog --state DIR` detached
// from the agent's console and process group.
func StartWatchdogProcess(prev string, dir state.Dir) error {
	return startDetached(prev, []string{"upgrade-watchdog", "--state", string(dir)})
}

func startDetached(exe string, args []string) error {
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{CreationFlags: windows.CREATE_NEW_PROCESS_GROUP | windows.DETACHED_PROCESS}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// Reexec starts exe as a new process and exits this one: Windows has no
// exec.
func Reexec(exe string, args []string) error {
	cmd := exec.Command(exe, args...)
	cmd.Stdin, cmd.Stdout, cmd.Stderr = os.Stdin, os.Stdout, os.Stderr
	if err := cmd.Start(); err != nil {
		return err
	}
	os.Exit(0)
	return nil
}

// stopProcess ends pid if its image is exe, so a reused pid is never
// terminated.
func stopProcess(pid int, exe string) error {
	if pid <= 0 || pid == os.Getpid() {
		return nil
	}
	h, err := windows.OpenProcess(windows.PROCESS_QUERY_LIMITED_INFORMATION|windows.PROCESS_TERMINATE|windows.SYNCHRONIZE, false, uint32(pid))
	if err != nil {
		return nil // gone
	}
	defer windows.CloseHandle(h)
	buf := make([]uint16, windows.MAX_LONG_PATH)
	n := uint32(len(buf))
	if err := windows.QueryFullProcessImageName(h, 0, &buf[0], &n); err != nil {
		return nil
	}
	img := windows.UTF16ToString(buf[:n])
	if !strings.EqualFold(filepath.Clean(img), filepath.Clean(exe)) && !strings.EqualFold(filepath.Clean(img), filepath.Clean(exe+".old")) {
		return nil
	}
	if err := windows.TerminateProcess(h, 1); err != nil {
		return err
	}
	windows.WaitForSingleObject(h, uint32((20 * time.Second).Milliseconds()))
	return nil
}
