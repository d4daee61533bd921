//go:build !linux && !windows && !darwin

package screen

import (
	"fmt"
	"runtime"
)

// Open is not implemented on this operating system.
func Open(display string) (Source, error) {
	return nil, fmt.Errorf("%w: not implemented on %s", ErrUnavailable, runtime.GOOS)
}
