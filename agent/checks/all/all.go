// Package all constructs every check an agent links in, from the
// dependencies the daemon (or the CLI) owns, into one checks.Registry.
// Adding a check kind means adding it here: no check registers itself from
// init or keeps its state in a package global.
package all

import (
	"log/slog"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/checks/antivirus"
	"github.com/vigil-safeguarding/vigil/agent/checks/bluetooth"
	"github.com/vigil-safeguarding/vigil/agent/checks/executables"
	"github.com/vigil-safeguarding/vigil/agent/checks/removable"
	"github.com/vigil-safeguarding/vigil/agent/checks/screenwatch"
	"github.com/vigil-safeguarding/vigil/agent/checks/sessionwatch"
)

// Deps are what the checks need from the agent.
type Deps struct {
	// StateDir is the agent's state folder (quarantined executables live
	// under it). Empty: quarantine degrades to an alert saying so.
	StateDir string
	Logger   *slog.Logger
}

// Checks is the constructed set: the registry the engine evaluates, and
// the check state the daemon connects to the session server.
type Checks struct {
	Registry *checks.Registry
	// Screen receives window titles, OCR text and screenshots from session
	// helpers (session.Handler).
	Screen *screenwatch.Hub
	// Sessions watches which graphical sessions have a helper attached; the
	// daemon gives it the session server (Monitor.Use).
	Sessions *sessionwatch.Monitor
}

// New constructs every check.
func New(d Deps) *Checks {
	log := d.Logger
	if log == nil {
		log = slog.Default()
	}
	hub := screenwatch.NewHub(screenwatch.WithLogger(log))
	mon := sessionwatch.NewMonitor()
	reg := checks.MustRegistry(
		checks.SelfTest{},
		antivirus.Check{},
		bluetooth.New(log),
		executables.New(executables.Options{StateDir: d.StateDir, Logger: log}),
		removable.New(log),
		screenwatch.New(hub),
		sessionwatch.New(mon),
	)
	return &Checks{Registry: reg, Screen: hub, Sessions: mon}
}
