//go:build !linux && !darwin && !windows

package session

import (
	"context"
	"errors"
)

// NewProbe: no graphical session detection on this OS; helpers other
// than root's are refused.
func NewProbe() SessionProbe { return noProbe{} }

type noProbe struct{}

func (noProbe) GraphicalSessions(context.Context) ([]GraphicalSession, error) {
	return nil, errors.New("graphical sessions are not detected on this OS")
}

func helloDisplay(display string) string { return display }
