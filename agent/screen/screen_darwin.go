//go:build darwin

// macOS implementation. Pragmatic and UNTESTED by the project's machines: it
// polls osascript once per second (no event-driven API without cgo) and
// shells out to screencapture. It needs the user's consent in System
// Settings > Privacy & Security: Accessibility (or Automation of System
// Events) for window titles, Screen Recording for screenshots (without it
// macOS returns only the desktop background and the menu bar).

package screen

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"image"
	"image/png"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"time"
)

// pollInterval is how often the frontmost window is polled on macOS.
const pollInterval = time.Second

// frontScript prints: process name, pid, bundle identifier and the front
// window's title, one per line. A process without windows (or without
// Accessibility consent for titles) yields an empty title.
const frontScript = `tell application "System Events"
	set p to first application process whose frontmost is true
	set n to name of p
	set i to unix id of p
	set b to ""
	try
		set b to bundle identifier of p
	end try
	set t to ""
	try
		set t to value of attribute "AXTitle" of front window of p
	end try
	if t is missing value then set t to ""
	return n & linefeed & (i as text) & linefeed & b & linefeed & t
end tell`

// Open checks that osascript and screencapture exist. display is ignored.
func Open(display string) (Source, error) {
	for _, tool := range []string{"osascript", "screencapture"} {
		if _, err := exec.LookPath(tool); err != nil {
			return nil, fmt.Errorf("%w: %s not found: %v", ErrUnavailable, tool, err)
		}
	}
	return &darwinSource{closed: make(chan struct{})}, nil
}

type darwinSource struct {
	closeOnce sync.Once
	closed    chan struct{}
}

func (s *darwinSource) Close() error {
	s.closeOnce.Do(func() { close(s.closed) })
	return nil
}

// Watch implements Source by polling every second.
func (s *darwinSource) Watch(ctx context.Context, fn func(Window)) error {
	if watchDone(ctx, s.closed) {
		return nil
	}
	t := time.NewTicker(pollInterval)
	defer t.Stop()
	var last Window
	first := true
	failures := 0
	for {
		w, err := frontWindow(ctx)
		if watchDone(ctx, s.closed) {
			return nil
		}
		if err != nil {
			// A transient failure (e.g. no frontmost process while switching
			// spaces) is tolerated; a persistent one (consent refused) ends Watch.
			if failures++; failures >= 10 {
				return err
			}
		} else {
			failures = 0
			if first || w != last {
				first = false
				last = w
				fn(w)
			}
		}
		select {
		case <-ctx.Done():
			return nil
		case <-s.closed:
			return nil
		case <-t.C:
		}
	}
}

func frontWindow(ctx context.Context) (Window, error) {
	ctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "osascript", "-e", frontScript)
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		return Window{}, fmt.Errorf("screen: osascript: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	parts := strings.SplitN(strings.TrimRight(string(out), "\n"), "\n", 4)
	if len(parts) < 2 {
		return Window{}, errors.New("screen: osascript: unexpected output")
	}
	w := Window{Process: parts[0]}
	w.PID, _ = strconv.Atoi(strings.TrimSpace(parts[1]))
	if len(parts) > 2 {
		w.Class = parts[2]
	}
	if len(parts) > 3 {
		w.Title = parts[3]
	}
	return w, nil
}

// Screenshot implements Source with screencapture -x (no sound) into a
// private temporary file.
func (s *darwinSource) Screenshot(ctx context.Context) (image.Image, error) {
	dir, err := os.MkdirTemp("", "vigil-screen-")
	if err != nil {
		return nil, err
	}
	defer os.RemoveAll(dir)
	file := filepath.Join(dir, "screen.png")
	var stderr bytes.Buffer
	cmd := exec.CommandContext(ctx, "screencapture", "-x", "-t", "png", file)
	cmd.Stderr = &stderr
	if err := cmd.Run(); err != nil {
		return nil, fmt.Errorf("screen: screencapture: %v: %s", err, strings.TrimSpace(stderr.String()))
	}
	data, err := os.ReadFile(file)
	if err != nil {
		return nil, fmt.Errorf("screen: screencapture: %w", err)
	}
	img, err := png.Decode(bytes.NewReader(data))
	if err != nil {
		return nil, fmt.Errorf("screen: screencapture output: %w", err)
	}
	return img, nil
}
