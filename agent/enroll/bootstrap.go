package enroll

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/internal/backoff"
	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	"github.com/vigil-safeguarding/vigil/internal/identity"
)

// Bootstrap is the enrollment configuration a package bakes in (or an MSI
// writes from its properties), read by the service at first start so that
// nobody types a token on the device.
type Bootstrap struct {
	Collector string `json:"collector"`
	Token     string `json:"token"`
	// Group is informational (the token decides the group); kept so a
	// technician looking at the file sees which package was installed.
	Group string `json:"group,omitempty"`
	// CAFingerprint, when present, must match the one inside the token; it
	// is written out so the pin is visible without decoding the token.
	CAFingerprint string `json:"ca_fingerprint,omitempty"`
	// ReleaseKey, when present, is the collector's ed25519 release public
	// key the package was built with: enrollment then requires the
	// collector to send the same key, so a device pins it from two sources.
	// Standard base64 of the 32 key bytes.
	ReleaseKey string `json:"release_key,omitempty"`
}

// DefaultBootstrapPath is where packages put the enrollment configuration.
// It lives outside the state dir so that a package never writes into the
// agent's own state, and purge of the state dir stays a separate step.
func DefaultBootstrapPath() string {
	switch runtime.GOOS {
	case "windows":
		return `C:\ProgramData\Vigil\enroll.json`
	case "darwin":
		return "/Library/Application Support/Vigil/enroll.json"
	default:
		return "/etc/vigil-agent/enroll.conf"
	}
}

// ErrNoBootstrap means no enrollment configuration file exists.
var ErrNoBootstrap = errors.New("no enrollment configuration")

// LoadBootstrap reads and checks an enrollment configuration file.
func LoadBootstrap(path string) (Bootstrap, error) {
	var b Bootstrap
	raw, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		return b, fmt.Errorf("%w at %s", ErrNoBootstrap, path)
	}
	if err != nil {
		return b, fmt.Errorf("read enrollment configuration: %w", err)
	}
	if err := json.Unmarshal(raw, &b); err != nil {
		return b, fmt.Errorf("parse enrollment configuration %s: %w", path, err)
	}
	return b, b.check(path)
}

func (b Bootstrap) check(path string) error {
	if strings.TrimSpace(b.Collector) == "" {
		return fmt.Errorf("enrollment configuration %s names no collector", path)
	}
	tok, err := identity.ParseToken(b.Token)
	if err != nil {
		return fmt.Errorf("enrollment configuration %s: %w", path, err)
	}
	if b.CAFingerprint != "" && !strings.EqualFold(b.CAFingerprint, tok.CAFingerprint) {
		return fmt.Errorf("enrollment configuration %s: ca_fingerprint does not match the token's", path)
	}
	return nil
}

// WriteBootstrap writes an enrollment configuration owner-only: the token
// is a credential (use-limited, but a pupil who copied it could enroll a
// device of their own into the group).
func WriteBootstrap(path string, b Bootstrap) error {
	if err := b.check(path); err != nil {
		return err
	}
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return fmt.Errorf("create %s: %w", filepath.Dir(path), err)
	}
	raw, _ := json.MarshalIndent(b, "", "  ")
	if err := fsutil.WriteFileAtomic(path, append(raw, '\n'), 0o600); err != nil {
		return fmt.Errorf("write enrollment configuration: %w", err)
	}
	return restrictFile(path)
}

// Enrolled reports whether dir already holds a device identity. Once it
// does, nothing (reinstall, upgrade, a new bootstrap file) enrolls again:
// re-enrolling would give the device a new ID and orphan its history.
func Enrolled(dir state.Dir) bool {
	cfg, err := dir.LoadConfig()
	if err != nil || cfg.DeviceID == "" {
		return false
	}
	_, err = os.Stat(dir.KeyPath())
	return err == nil
}

// BootstrapOptions tune EnsureEnrolled.
type BootstrapOptions struct {
	// Path of the enrollment configuration (DefaultBootstrapPath if empty).
	Path string
	// BackoffBase/BackoffMax bound the waits between attempts (defaults
	// 2 s and 5 min).
	BackoffBase, BackoffMax time.Duration
	Logger                  *slog.Logger
}

// EnsureEnrolled enrolls dir from the enrollment configuration unless it is
// enrolled already. It returns nil when dir is enrolled (now or before),
// and nil without enrolling when there is no configuration file (the
// caller then reports "not enrolled" as before). Every failure is retried
// with backoff until ctx ends: a collector that is unreachable at first
// boot (laptop imaged off-site, Wi-Fi not up yet) is normal, and a refused
// token is logged for the technician and retried with the file re-read, so
// a corrected package or file takes effect without a restart.
func EnsureEnrolled(ctx context.Context, dir state.Dir, o BootstrapOptions) error {
	if Enrolled(dir) {
		return nil
	}
	if o.Path == "" {
		o.Path = DefaultBootstrapPath()
	}
	if o.BackoffBase <= 0 {
		o.BackoffBase = 2 * time.Second
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 5 * time.Minute
	}
	log := o.Logger
	if log == nil {
		log = slog.Default()
	}
	bo := backoff.New(o.BackoffBase, o.BackoffMax)
	for {
		b, err := LoadBootstrap(o.Path)
		if errors.Is(err, ErrNoBootstrap) && bo.Attempt() == 0 {
			return nil
		}
		if err == nil {
			var res Result
			var pin []byte
			if pin, err = base64.StdEncoding.DecodeString(b.ReleaseKey); err != nil {
				err = fmt.Errorf("enrollment configuration %s: release_key is not base64: %w", o.Path, err)
			} else {
				res, err = EnrollPinned(ctx, dir, b.Collector, b.Token, pin)
			}
			if err == nil {
				log.Info("enrolled from enrollment configuration", "device", res.DeviceID, "group", res.Group,
					"collector", b.Collector, "config", o.Path)
				return nil
			}
		}
		if ctx.Err() != nil {
			return ctx.Err()
		}
		wait := bo.Next(0)
		if errors.Is(err, ErrUnreachable) {
			log.Warn("collector not reachable yet; will enroll when it is", "err", err, "retry_in", wait.Round(time.Millisecond))
		} else {
			log.Error("enrollment failed; retrying", "err", err, "config", o.Path, "retry_in", wait.Round(time.Millisecond))
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(wait):
		}
	}
}
