//go:build !linux && !windows && !darwin

package antivirus

import (
	"context"
	"fmt"
	"runtime"
)

type otherProbe struct{}

func newProbe(settings) probe { return otherProbe{} }

func (otherProbe) Products(context.Context) ([]Product, error) {
	return nil, fmt.Errorf("%w (%s)", errNotSupported, runtime.GOOS)
}
