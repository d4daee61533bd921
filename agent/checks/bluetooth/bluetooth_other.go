//go:build !linux && !windows && !darwin

package bluetooth

import (
	"context"
	"errors"
)

func readAdapters(ctx context.Context) (snapshot, error) {
	return snapshot{}, errors.New("the bluetooth check is not supported on this operating system")
}

func watchChanges(ctx context.Context, notify func()) { <-ctx.Done() }
