package daemon

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync"
	"time"
)

// supervisor runs the collector's background loops so that none of their
// errors goes unseen: a fatal loop's error (a listener that stops serving)
// ends the collector; a retried loop's error (the rules folder watch, the
// e-mail notifier) is logged and the loop restarted after a pause; any other
// loop that returns an error, or returns at all before shutdown, is logged.
type supervisor struct {
	ctx    context.Context
	log    *slog.Logger
	wg     sync.WaitGroup
	fatalC chan error
}

func newSupervisor(ctx context.Context, log *slog.Logger) *supervisor {
	return &supervisor{ctx: ctx, log: log, fatalC: make(chan error, 1)}
}

// fatal runs f; its error (or its return before shutdown) stops the
// collector with the loop's name in the error.
func (s *supervisor) fatal(name string, f func(context.Context) error) {
	s.wg.Go(func() {
		err := f(s.ctx)
		if s.ctx.Err() != nil {
			return
		}
		if err == nil {
			err = errors.New("stopped unexpectedly")
		}
		err = fmt.Errorf("%s: %w", name, err)
		s.log.Error("collector part failed; stopping", "part", name, "err", err)
		select {
		case s.fatalC <- err:
		default: // the first failure is the one reported
		}
	})
}

// retried runs f until shutdown, restarting it after pause whenever it
// returns before then, and logging why.
func (s *supervisor) retried(name string, pause time.Duration, f func(context.Context) error) {
	s.wg.Go(func() {
		for {
			err := f(s.ctx)
			if s.ctx.Err() != nil {
				return
			}
			if err == nil {
				err = errors.New("stopped unexpectedly")
			}
			s.log.Error("collector loop failed; restarting", "loop", name, "retry_in", pause, "err", err)
			select {
			case <-s.ctx.Done():
				return
			case <-time.After(pause):
			}
		}
	})
}

// loop runs f once; an error or an early return is logged.
func (s *supervisor) loop(name string, f func(context.Context) error) {
	s.wg.Go(func() {
		err := f(s.ctx)
		if s.ctx.Err() != nil {
			return
		}
		if err == nil {
			s.log.Warn("collector loop ended before shutdown", "loop", name)
			return
		}
		s.log.Error("collector loop failed", "loop", name, "err", err)
	})
}

// wait returns nil when ctx ends, or the first fatal loop's error.
func (s *supervisor) wait() error {
	select {
	case <-s.ctx.Done():
		return nil
	case err := <-s.fatalC:
		return err
	}
}

// stop waits for every loop to return (their context must be over).
func (s *supervisor) stop() { s.wg.Wait() }
