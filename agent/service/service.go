// Package service installs and runs the agent as an OS service through
// kardianos/service (systemd, SysV, launchd, Windows SCM). The service runs
// `vigil-agent run --state DIR`: the same code as the foreground command.
package service

import (
	"context"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	ksvc "github.com/kardianos/service"
)

// Name is the service name on every OS.
const Name = "vigil-agent"

// DefaultStateDir is where installers put the agent's state.
func DefaultStateDir() string {
	switch runtime.GOOS {
	case "windows":
		return `C:\ProgramData\Vigil\agent`
	case "darwin":
		return "/Library/Application Support/Vigil/agent"
	default:
		return "/var/lib/vigil-agent"
	}
}

// Config returns the service definition: started at boot, restarted on
// failure on every platform that supports it.
func Config(stateDir string) *ksvc.Config {
	return &ksvc.Config{
		Name:        Name,
		DisplayName: "Vigil agent",
		Description: "Vigil safeguarding and device-compliance monitor (reports to the school's collector).",
		Arguments:   []string{"run", "--state", stateDir},
		Option: ksvc.KeyValue{
			"Restart":                "always",  // systemd
			"OnFailure":              "restart", // Windows SCM recovery
			"OnFailureDelayDuration": "5s",
			"OnFailureResetPeriod":   86400,
			"StartType":              "automatic",
			"KeepAlive":              true, // launchd
			"RunAtLoad":              true,
			"LogOutput":              true,
		},
	}
}

// program adapts a run function to kardianos' Start/Stop.
type program struct {
	run    func(context.Context) error
	log    *slog.Logger
	cancel context.CancelFunc
	wg     sync.WaitGroup
}

func (p *program) Start(ksvc.Service) error {
	ctx, cancel := context.WithCancel(context.Background())
	p.cancel = cancel
	p.wg.Add(1)
	go func() {
		defer p.wg.Done()
		if err := p.run(ctx); err != nil {
			p.log.Error("agent exited", "err", err)
			// Exit non-zero so the service manager restarts us.
			os.Exit(1)
		}
	}()
	return nil
}

func (p *program) Stop(ksvc.Service) error {
	p.cancel()
	done := make(chan struct{})
	go func() { p.wg.Wait(); close(done) }()
	select {
	case <-done:
	case <-time.After(20 * time.Second):
		p.log.Warn("agent did not stop within 20s")
	}
	return nil
}

// New returns the service for stateDir, wired to run.
func New(stateDir string, run func(context.Context) error, log *slog.Logger) (ksvc.Service, error) {
	return ksvc.New(&program{run: run, log: log}, Config(stateDir))
}

// Interactive reports whether we run from a terminal rather than under a
// service manager.
func Interactive() bool { return ksvc.Interactive() }

// Control runs install, uninstall, start, stop or restart.
func Control(s ksvc.Service, action string) error {
	return ksvc.Control(s, action)
}

// StatusString describes the service's state.
func StatusString(s ksvc.Service) string {
	st, err := s.Status()
	if err != nil {
		return "unknown (" + err.Error() + ")"
	}
	switch st {
	case ksvc.StatusRunning:
		return "running"
	case ksvc.StatusStopped:
		return "stopped"
	default:
		return "unknown"
	}
}
