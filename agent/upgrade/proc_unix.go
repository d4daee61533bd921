//go:build !windows

package upgrade

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/state"
)

func keepPrevious(exe, prev string) error { return copyFile(exe, prev, 0o755) }

// replace renames the staged binary over the running one: atomic, and the
// running process keeps its (now unlinked) image.
func replace(staged, exe string) error {
	if err := os.Chmod(staged, 0o755); err != nil {
		return err
	}
	return os.Rename(staged, exe)
}

func restore(prev, exe string) error { return copyFile(prev, exe, 0o755) }

// StartWatchdogProcess starts `PREV upgrade-watchdog --state DIR` in a
// session of its own, so that it outlives the agent's exit and re-exec.
// Under systemd (INVOCATION_ID set) a session is not enough: restarting
// the unit kills its whole cgroup, so the watchdog runs as a transient unit
// of its own through systemd-run.
func StartWatchdogProcess(prev string, dir state.Dir) error {
	args := []string{"upgrade-watchdog", "--state", string(dir)}
	if os.Getenv("INVOCATION_ID") != "" {
		if run, err := exec.LookPath("systemd-run"); err == nil {
			unit := fmt.Sprintf("vigil-agent-upgrade-watchdog-%d", os.Getpid())
			return exec.Command(run, append([]string{"--collect", "--unit", unit, prev}, args...)...).Run()
		}
	}
	return startDetached(prev, args)
}

func startDetached(exe string, args []string) error {
	cmd := exec.Command(exe, args...)
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true}
	if err := cmd.Start(); err != nil {
		return err
	}
	return cmd.Process.Release()
}

// Reexec replaces this process with exe (same pid, so whoever started the
// agent still holds it).
func Reexec(exe string, args []string) error {
	return syscall.Exec(exe, append([]string{exe}, args...), os.Environ())
}

// stopProcess ends pid if it still runs exe (on Linux, checked through
// /proc, so a reused pid is never signalled).
func stopProcess(pid int, exe string) error {
	if pid <= 0 || pid == os.Getpid() {
		return nil
	}
	if runtime.GOOS == "linux" {
		link, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
		if err != nil {
			return nil // gone
		}
		want, _ := filepath.EvalSymlinks(exe)
		link = strings.TrimSuffix(link, " (deleted)")
		if link != exe && link != want {
			return nil // another program now has this pid
		}
	}
	if err := syscall.Kill(pid, syscall.SIGTERM); err != nil {
		return nil
	}
	for deadline := time.Now().Add(20 * time.Second); time.Now().Before(deadline); time.Sleep(100 * time.Millisecond) {
		if syscall.Kill(pid, 0) != nil {
			return nil
		}
	}
	return syscall.Kill(pid, syscall.SIGKILL)
}
