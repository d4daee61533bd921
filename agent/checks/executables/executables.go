// Package executables is the "executables" check: unapproved and denied
// executables in watched folders (fsnotify), running processes and
// installed software, matched against a rule's allow and deny lists by
// SHA-256, name, path and claimed signer, with optional quarantine of files
// and killing of denied processes. See docs/checks/executables.md.
package executables

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

// Kind is the rule kind ("check: executables").
const Kind = "executables"

// DefaultInterval of the process and installed-software scan.
const DefaultInterval = 10 * time.Minute

// Check implements checks.Runner.
type Check struct {
	// quarantine is where action: quarantine moves files; nil (a zero
	// Check, or no state folder) degrades quarantine to an alert that says
	// so.
	quarantine *Store
	log        *slog.Logger
}

// Options for New.
type Options struct {
	// StateDir is the agent's state folder; quarantined files go to
	// QuarantineDir(StateDir), owner-only. Empty: no quarantine.
	StateDir string
	Logger   *slog.Logger
}

// New returns the check with its quarantine store in o.StateDir.
func New(o Options) Check {
	c := Check{log: o.Logger}
	if o.StateDir != "" {
		c.quarantine = NewStore(QuarantineDir(o.StateDir))
	}
	return c
}

var _ checks.Runner = Check{}

// QuarantineDir is the quarantine folder under an agent state folder.
func QuarantineDir(stateDir string) string { return filepath.Join(stateDir, "quarantine") }

// Quarantine is the check's quarantine store, or nil.
func (c Check) Quarantine() *Store { return c.quarantine }

func (c Check) logger() *slog.Logger {
	if c.log == nil {
		return slog.Default()
	}
	return c.log
}

// Kind implements checks.Check.
func (Check) Kind() string { return Kind }

// ValidateParams implements checks.Check; errors carry line and column.
func (Check) ValidateParams(params *yaml.Node) error {
	_, err := parseConfig(params, currentOS)
	return err
}

// DefaultInterval implements checks.Poller.
func (Check) DefaultInterval() time.Duration { return DefaultInterval }

func (ch Check) compile(r *rules.Rule) (*config, error) {
	c, err := parseConfig(r.Params, currentOS)
	if err != nil {
		return nil, fmt.Errorf("rule %s: %w", r.ID, err)
	}
	c.rule, c.quarantine, c.log = r, ch.quarantine, ch.logger()
	return c, nil
}

// Poll scans once: running processes, installed software and the top level
// of the watched folders (at most MaxPollFiles files in all). Actions
// (quarantine, kill) apply as in Run.
func (ch Check) Poll(ctx context.Context, r *rules.Rule, emit checks.Emit) error {
	c, err := ch.compile(r)
	if err != nil {
		return err
	}
	var errs []error
	if c.processes {
		errs = append(errs, scanProcesses(ctx, c, emit))
	}
	if c.software {
		errs = append(errs, scanSoftware(ctx, c, emit))
	}
	if c.files {
		errs = append(errs, scanFolders(ctx, c, emit, MaxPollFiles))
	}
	return errors.Join(errs...)
}

// startDelay is how long Run waits before its first process and software
// scan (the engine restarts Run on every rules change; findings repeated
// by a restart are deduplicated by the engine on their Key).
var startDelay = 10 * time.Second

// Run watches the rules' folders with fsnotify and scans processes and
// installed software on each rule's interval (default 10m), until ctx ends.
func (ch Check) Run(ctx context.Context, rs []*rules.Rule, emit checks.Emit) error {
	var cfgs []*config
	for _, r := range rs {
		c, err := ch.compile(r)
		if err != nil {
			return err
		}
		cfgs = append(cfgs, c)
	}
	var wg sync.WaitGroup
	for _, c := range cfgs {
		if !c.processes && !c.software {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			periodicScan(ctx, c, emit)
		}()
	}
	var err error
	var watched []*config
	for _, c := range cfgs {
		if c.files {
			watched = append(watched, c)
		}
	}
	if len(watched) > 0 {
		err = newMonitor(watched, emit).run(ctx)
	}
	wg.Wait()
	if ctx.Err() != nil {
		return nil
	}
	return err
}

func periodicScan(ctx context.Context, c *config, emit checks.Emit) {
	interval := c.rule.Schedule.Interval
	if interval <= 0 {
		interval = DefaultInterval
	}
	t := time.NewTimer(startDelay)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		t.Reset(interval)
		if !c.rule.ActiveAt(time.Now()) {
			continue
		}
		sctx, cancel := context.WithTimeout(ctx, min(interval, 5*time.Minute))
		var err error
		if c.processes {
			err = scanProcesses(sctx, c, emit)
		}
		if c.software {
			err = errors.Join(err, scanSoftware(sctx, c, emit))
		}
		cancel()
		if err != nil && ctx.Err() == nil {
			c.log.Warn("executables scan", "rule", c.rule.ID, "err", err)
		}
	}
}
