package daemon

import (
	"context"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/vigil-safeguarding/vigil/agent/checks/all"
	"github.com/vigil-safeguarding/vigil/agent/session"
	"github.com/vigil-safeguarding/vigil/agent/state"
)

// serveSessions runs the session endpoint helpers report to: at path
// (default session.DefaultSocket()), outside the owner-only state dir, and
// watched by the `session` check for sessions without a helper.
func serveSessions(ctx context.Context, st state.Dir, path string, chk *all.Checks, log *slog.Logger) error {
	if path == "" {
		path = session.DefaultSocket()
	}
	if runtime.GOOS != "windows" {
		abs, err := filepath.Abs(path)
		if err != nil {
			return err
		}
		path = abs
		// Listen makes the socket's directory traversable by everyone.
		if filepath.Clean(filepath.Dir(abs)) == filepath.Clean(string(st)) {
			return fmt.Errorf("session socket %s must not be in the state dir: users' helpers would need to traverse it", abs)
		}
	}
	srv := session.NewServer(chk.Screen, session.NewProbe(), log)
	chk.Sessions.Use(srv, log)
	chk.Screen.UseHelpers(srv)
	if runtime.GOOS != "windows" {
		// Root-run helpers started with the old `--state DIR` find the
		// socket through this link; users cannot (the state dir is 0700).
		legacy := st.SessionSocket()
		if err := os.Remove(legacy); err != nil && !errors.Is(err, fs.ErrNotExist) {
			log.Warn("remove old session socket in the state dir", "err", err)
		}
		if err := os.Symlink(path, legacy); err != nil {
			log.Warn("link the session socket into the state dir", "err", err)
		}
	}
	return srv.ListenAndServe(ctx, path)
}
