package packaging

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/tokens"
)

// ErrNoAgentBinary: the vigil-agent for the target platform is not where
// the collector looks for it.
var ErrNoAgentBinary = errors.New("no vigil-agent found")

// ErrBadSpec: the request itself is wrong (format, arch, group, address).
var ErrBadSpec = errors.New("bad package request")

// kindError keeps an error's own message and classifies it for errors.Is.
type kindError struct{ err, kind error }

func (e kindError) Error() string   { return e.err.Error() }
func (e kindError) Unwrap() []error { return []error{e.err, e.kind} }

// Token policy for package tokens: a package is deployed to a whole group
// over months (re-imaged laptops enroll again), so its token lives long
// and allows many uses; revoking it retires exactly that package.
const (
	DefaultTokenTTL  = 365 * 24 * time.Hour
	DefaultTokenUses = 2000
)

// Tokens mints and revokes group enrollment tokens: the collector's
// tokens.Service in the daemon, the admin socket from the CLI.
type Tokens interface {
	// CreateIn mints a token for a group of a school ("" is the default).
	CreateIn(ctx context.Context, school, group string, ttl time.Duration, uses int) (tokens.Issued, error)
	Revoke(ctx context.Context, id, who, reason string) (tokens.Info, error)
}

// Request is one package for one group, as the CLI or the console asks.
type Request struct {
	Spec Spec
	// School the package's devices land in (by ID or name; "" is the
	// default school): its token carries it.
	School string
	// TTL and Uses of the package's token (defaults above).
	TTL  time.Duration
	Uses int
	// AgentDir, if set, is where agent binaries are found
	// (AgentDir/OS-ARCH/vigil-agent[.exe]); otherwise they are looked for
	// next to the running collector (FindAgentBinary).
	AgentDir string
	// Who asked (recorded if the token has to be revoked again).
	Who string
}

// AgentBinaryFor finds the agent binary for a spec's platform.
func AgentBinaryFor(s Spec, agentDir string) (string, error) {
	goos := s.Format.GOOS()
	if agentDir != "" {
		name := "vigil-agent"
		if goos == "windows" {
			name += ".exe"
		}
		p := filepath.Join(agentDir, goos+"-"+s.Arch, name)
		if st, err := os.Stat(p); err == nil && st.Mode().IsRegular() {
			return p, nil
		}
		return "", fmt.Errorf("%w for %s/%s: %s is missing; build it with `make cross` and copy dist/%s-%s/ there",
			ErrNoAgentBinary, goos, s.Arch, p, goos, s.Arch)
	}
	exe, err := os.Executable()
	if err != nil {
		return "", fmt.Errorf("find the collector's own path: %w", err)
	}
	return FindAgentBinary(exe, goos, s.Arch, runtime.GOOS, runtime.GOARCH)
}

// Make builds a package for a group the one way both the CLI and the
// console do: check everything that can be checked, then mint a new group
// token (so revoking it retires exactly this package), build, and revoke
// the token again if the build fails. The caller revokes it too if it then
// fails to deliver what was written to w.
func Make(ctx context.Context, req Request, toks Tokens, w io.Writer) (Made, error) {
	s := req.Spec
	if err := s.checkRequest(); err != nil {
		return Made{}, kindError{err, ErrBadSpec}
	}
	if s.AgentBinary == "" {
		bin, err := AgentBinaryFor(s, req.AgentDir)
		if err != nil {
			return Made{}, err
		}
		s.AgentBinary = bin
	}
	if err := s.Check(); err != nil {
		return Made{}, kindError{err, ErrBadSpec}
	}
	if err := CheckBinary(s); err != nil {
		return Made{}, kindError{err, ErrNoAgentBinary}
	}
	if req.TTL <= 0 {
		req.TTL = DefaultTokenTTL
	}
	if req.Uses <= 0 {
		req.Uses = DefaultTokenUses
	}
	tok, err := toks.CreateIn(ctx, req.School, s.Group, req.TTL, req.Uses)
	if err != nil {
		return Made{}, fmt.Errorf("mint the package's token: %w", err)
	}
	s.Token = tok.Token
	if err := Build(ctx, s, w); err != nil {
		if _, rerr := toks.Revoke(context.WithoutCancel(ctx), tok.ID, req.Who, "package build failed"); rerr != nil {
			err = fmt.Errorf("%w (and revoking its unused token %s failed: %v)", err, tok.ID, rerr)
		}
		return Made{}, err
	}
	return Made{Token: tok, FileName: s.FileName(), AgentBinary: s.AgentBinary}, nil
}

// Made says what Make built.
type Made struct {
	Token tokens.Issued
	// FileName is the conventional name (Spec.FileName).
	FileName    string
	AgentBinary string
}
