//go:build !linux

package daemon

import (
	"log/slog"
	"runtime/debug"
)

// trimMemory returns the heap left over from start-up to the OS (see
// trim_linux.go for the image pages, which only Linux gets back).
func trimMemory(*slog.Logger) { debug.FreeOSMemory() }
