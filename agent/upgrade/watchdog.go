package upgrade

import (
	"context"
	"errors"
	"fmt"
	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	"log/slog"
	"os"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/state"
)

// WatchConfig for Watch.
type WatchConfig struct {
	State  state.Dir
	Logger *slog.Logger
	// RestartService restarts the agent through the service manager (used
	// when the pending swap was made under one).
	RestartService func() error
	// Poll is how often the pending file is checked (default 500ms).
	Poll time.Duration
}

// Watch is the watchdog: it runs from the previous binary, apart from the
// agent, until the pending swap is confirmed (the new version removed the
// pending file after its welcome) or its deadline passes. Then it claims
// the pending file, puts the previous binary back, records the version as
// failed (the restored agent reports it to the collector) and restarts
// the agent.
func Watch(ctx context.Context, cfg WatchConfig) error {
	log := cfg.Logger
	if cfg.Poll <= 0 {
		cfg.Poll = 500 * time.Millisecond
	}
	for {
		p, ok, err := LoadPending(cfg.State)
		if err != nil {
			return err
		}
		if !ok {
			log.Info("upgrade watchdog: the new version was welcomed by the collector; nothing to do")
			return nil
		}
		if time.Now().After(p.Deadline) {
			return rollBack(cfg, p)
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(cfg.Poll):
		}
	}
}

func rollBack(cfg WatchConfig, p Pending) error {
	log := cfg.Logger
	claim := cfg.State.PendingUpgradePath() + ".rollback"
	// The rename is the claim: the new version confirms by removing the
	// same file, so exactly one of the two wins.
	if err := os.Rename(cfg.State.PendingUpgradePath(), claim); err != nil {
		if errors.Is(err, os.ErrNotExist) {
			log.Info("upgrade watchdog: confirmed at the deadline; nothing to do")
			return nil
		}
		return fmt.Errorf("claim the pending upgrade: %w", err)
	}
	reason := fmt.Sprintf("version %s was not welcomed by the collector within the watchdog's bound (deadline %s); restored %s",
		p.To, p.Deadline.UTC().Format(time.RFC3339), p.From)
	log.Warn("upgrade watchdog: rolling back", "from", p.To, "to", p.From, "exe", p.Exe)
	// Under a service manager the restart below replaces the new version;
	// otherwise stop it here (it may hang without connecting) before the
	// restored binary starts, so two agents never share the state dir.
	if !p.Service {
		if err := stopProcess(p.PID, p.Exe); err != nil {
			log.Warn("upgrade watchdog: could not stop the new version", "pid", p.PID, "err", err)
		}
	}
	if err := restore(p.Prev, p.Exe); err != nil {
		return fmt.Errorf("restore the previous binary %s: %w", p.Prev, err)
	}
	rec, _ := loadRecord(cfg.State)
	rec.Failed[p.To] = reason
	rec.Queued = append(rec.Queued, rolledBack{Version: p.To, Reason: reason})
	if err := saveRecord(cfg.State, rec); err != nil {
		log.Error("upgrade watchdog: record the rollback", "err", err)
	}
	os.Remove(claim)
	if p.Service {
		if cfg.RestartService == nil {
			return errors.New("restored the previous binary but cannot restart the service")
		}
		return cfg.RestartService()
	}
	if err := startDetached(p.Exe, p.Args); err != nil {
		return fmt.Errorf("start the restored agent: %w", err)
	}
	log.Info("upgrade watchdog: previous version restored and started", "version", p.From)
	return nil
}

// copyFile copies src to dst via a temporary file and rename, keeping mode.
func copyFile(src, dst string, mode os.FileMode) error {
	tmp := dst + ".tmp"
	err := fsutil.CopySynced(src, tmp, os.O_TRUNC, mode)
	if err == nil {
		err = os.Chmod(tmp, mode)
	}
	if err == nil {
		err = os.Rename(tmp, dst)
	}
	if err != nil {
		os.Remove(tmp)
	}
	return err
}
