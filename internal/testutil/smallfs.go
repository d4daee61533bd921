package testutil

import (
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"
)

// LoopExt4 mounts a fresh ext4 filesystem of size bytes (a loop device over
// a sparse image, no reserved blocks) on a new temp dir and returns the
// mount point, unmounted at cleanup. Tests of full disks use it to fill a
// real filesystem to the last byte; it skips when not root or when loop
// mounts are not possible.
func LoopExt4(t testing.TB, size int64) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to loop-mount a small filesystem")
	}
	dir := t.TempDir()
	img, mnt := filepath.Join(dir, "fs.img"), filepath.Join(dir, "mnt")
	if err := os.Mkdir(mnt, 0o700); err != nil {
		t.Fatal(err)
	}
	f, err := os.Create(img)
	if err != nil {
		t.Fatal(err)
	}
	f.Truncate(size)
	f.Close()
	if out, err := exec.Command("mkfs.ext4", "-q", "-m", "0", "-F", img).CombinedOutput(); err != nil {
		t.Skipf("mkfs.ext4 unavailable: %v %s", err, out)
	}
	if out, err := exec.Command("mount", "-o", "loop", img, mnt).CombinedOutput(); err != nil {
		t.Skipf("cannot loop-mount here: %v %s", err, out)
	}
	t.Cleanup(func() { unmount(t, mnt) })
	return mnt
}

// Tmpfs mounts a tmpfs of size (mount's syntax: "8m") on a new temp dir
// and returns it, unmounted at cleanup; it skips when not root.
func Tmpfs(t testing.TB, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		t.Skip("needs root to mount a tmpfs")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size, "tmpfs", dir).CombinedOutput(); err != nil {
		t.Skipf("cannot mount tmpfs: %v: %s", err, out)
	}
	t.Cleanup(func() { unmount(t, dir) })
	return dir
}

// unmount retries while the kernel still holds the mount busy for a moment
// after the last file closed (a child process exiting), then detaches it
// lazily so a test never leaves a mount behind.
func unmount(t testing.TB, dir string) {
	for i := 0; i < 50; i++ {
		if exec.Command("umount", dir).Run() == nil {
			return
		}
		time.Sleep(100 * time.Millisecond)
	}
	if out, err := exec.Command("umount", "-l", dir).CombinedOutput(); err != nil {
		t.Errorf("umount %s: %v %s", dir, err, out)
	}
}

// FillToLastByte appends to path until its filesystem refuses even one
// more byte (halving the write size down to one byte) and returns how many
// bytes it wrote. Any error but ENOSPC fails the test.
func FillToLastByte(t testing.TB, path string) int64 {
	t.Helper()
	f, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY|os.O_APPEND, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var n int64
	for _, chunk := range []int{1 << 20, 64 << 10, 4 << 10, 512, 1} {
		buf := make([]byte, chunk)
		for {
			w, err := f.Write(buf)
			n += int64(w)
			if err != nil {
				if !errors.Is(err, syscall.ENOSPC) {
					t.Fatalf("fill %s: %v", path, err)
				}
				break
			}
		}
	}
	f.Sync()
	return n
}
