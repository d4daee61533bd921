// Package runrecord keeps the agent's record of its own runs (run.json in
// the state dir): a run is opened at start and closed at an orderly exit, so
// a record still open at the next start means the previous run crashed or
// was killed. Recent start times show a restart loop. The collector judges
// both from Hello.lifecycle.
package runrecord

import (
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Window is how far back starts are counted.
const Window = time.Hour

// maxStarts bounds the record however fast the agent is restarted.
const maxStarts = 64

type record struct {
	// Running is true from Begin until End: still true at the next Begin
	// means that run never reached its orderly exit.
	Running bool    `json:"running"`
	Starts  []start `json:"starts"`
}

type start struct {
	At      time.Time `json:"at"`
	Unclean bool      `json:"unclean,omitempty"` // it followed an unclean exit
}

// Begin opens a run at now and returns the lifecycle to report in Hello.
// A missing record is a first start; an unreadable one is reported as an
// unclean exit (something broke the previous run's state) and replaced.
func Begin(path string, now time.Time) (*vigilv1.Lifecycle, error) {
	var rec record
	prev := vigilv1.ExitKind_EXIT_KIND_FIRST_START
	data, err := os.ReadFile(path)
	switch {
	case errors.Is(err, os.ErrNotExist):
	case err != nil:
		return nil, fmt.Errorf("read run record: %w", err)
	case json.Unmarshal(data, &rec) != nil:
		rec, prev = record{}, vigilv1.ExitKind_EXIT_KIND_UNCLEAN
	case rec.Running:
		prev = vigilv1.ExitKind_EXIT_KIND_UNCLEAN
	default:
		prev = vigilv1.ExitKind_EXIT_KIND_CLEAN
	}
	kept := rec.Starts[:0]
	for _, s := range rec.Starts {
		if now.Sub(s.At) < Window && !s.At.After(now) {
			kept = append(kept, s)
		}
	}
	kept = append(kept, start{At: now, Unclean: prev == vigilv1.ExitKind_EXIT_KIND_UNCLEAN})
	if len(kept) > maxStarts {
		kept = kept[len(kept)-maxStarts:]
	}
	rec = record{Running: true, Starts: kept}
	if err := write(path, rec); err != nil {
		return nil, err
	}
	lc := &vigilv1.Lifecycle{PreviousExit: prev, StartedAt: timestamppb.New(now), StartsInWindow: int32(len(kept)),
		WindowSeconds: int32(Window / time.Second)}
	for _, s := range kept {
		if s.Unclean {
			lc.UncleanStartsInWindow++
		}
	}
	return lc, nil
}

// End closes the run: the next Begin reports a clean exit.
func End(path string) error {
	data, err := os.ReadFile(path)
	if err != nil {
		return fmt.Errorf("read run record: %w", err)
	}
	var rec record
	if err := json.Unmarshal(data, &rec); err != nil {
		return fmt.Errorf("read run record: %w", err)
	}
	rec.Running = false
	return write(path, rec)
}

func write(path string, rec record) error {
	data, _ := json.Marshal(rec)
	if err := fsutil.WriteFileAtomic(path, data, 0o600); err != nil {
		return fmt.Errorf("write run record: %w", err)
	}
	return nil
}
