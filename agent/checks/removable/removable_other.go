//go:build !linux && !windows && !darwin

package removable

import "errors"

func newSource() (source, error) {
	return nil, errors.New("the removable check is not supported on this operating system")
}
