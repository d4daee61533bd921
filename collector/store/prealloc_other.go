//go:build !linux

package store

// preallocSparse is Linux-only; elsewhere the free-space reserve alone
// keeps Badger's mapped writes backed.
func preallocSparse(dir string) error { return nil }
