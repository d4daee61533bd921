//go:build !linux && !windows && !darwin

package inventory

import (
	"context"
	"errors"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// osPlatform on other systems reports what gopsutil gives and says the
// rest is not collected.
type osPlatform struct{}

var errNotHere = errors.New("not collected on this operating system")

func (osPlatform) Hardware(context.Context, *vigilv1.Hardware) error { return errNotHere }
func (osPlatform) Accounts(context.Context) ([]*vigilv1.LocalAccount, error) {
	return nil, errNotHere
}
func (osPlatform) Software(context.Context) ([]*vigilv1.SoftwareItem, []*vigilv1.CollectionError) {
	return nil, []*vigilv1.CollectionError{{Part: "software", Error: errNotHere.Error()}}
}
func (osPlatform) OSBuild(context.Context) string { return "" }
func lowPriority() error                          { return nil }
