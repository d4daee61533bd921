package executables

import (
	"context"
	"errors"
	"io"
	"io/fs"
	"os"
)

// dpkgStatusPath is dpkg's database of installed packages.
var dpkgStatusPath = "/var/lib/dpkg/status"

// defaultPaths are the folders watched when a rule gives no paths: users'
// Downloads and Desktop, temp folders and removable media mount points.
func defaultPaths() []string {
	return []string{
		"/home/*/Downloads", "/home/*/Desktop", "/root/Downloads", "/root/Desktop",
		"/tmp", "/var/tmp", "/dev/shm",
		"/media/*/*", "/run/media/*/*", "/mnt/*",
	}
}

// installedSoftware lists dpkg packages. RPM, snap, flatpak and AppImage
// are not covered.
func installedSoftware(ctx context.Context) ([]Software, error) {
	f, err := os.Open(dpkgStatusPath)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	defer f.Close()
	return parseDpkgStatus(io.LimitReader(f, 128<<20))
}

// osSigner: Linux has no platform code-signing for executables.
func osSigner(string, string) []string { return nil }
