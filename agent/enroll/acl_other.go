//go:build !windows

package enroll

// restrictFile is a no-op where the 0600 mode already makes the file
// owner-only.
func restrictFile(string) error { return nil }
