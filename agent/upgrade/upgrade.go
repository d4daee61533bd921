// Package upgrade replaces the agent's own binary with a release the
// collector offers: download over the agent's mTLS connection (bounded),
// verify the release signature with the key pinned at enrollment and the
// hash, stage the new binary next to the running one, keep the previous
// one, swap atomically and restart. A watchdog process started from the
// previous binary puts it back if the new version has not been welcomed by
// the collector in time. The state dir (device identity, spool) is never
// touched by an upgrade.
package upgrade

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"runtime"
	"sync"
	"time"

	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/internal/backoff"
	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	"github.com/vigil-safeguarding/vigil/internal/release"
	"github.com/vigil-safeguarding/vigil/internal/version"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// ErrRestart is returned by the daemon when it stopped so that the new
// binary can start: the caller re-executes (or exits for the service
// manager to restart it).
var ErrRestart = errors.New("restarting into the upgraded agent binary")

// DefaultWatchdog is how long a new version has to be welcomed by the
// collector before the previous binary is put back.
const DefaultWatchdog = 3 * time.Minute

// Downloader is the collector RPC the release bytes come from.
type Downloader interface {
	DownloadRelease(ctx context.Context, req *vigilv1.DownloadRequest) (ReleaseStream, error)
}

// ReleaseStream yields the chunks of one download.
type ReleaseStream interface {
	Recv() (*vigilv1.ReleaseChunk, error)
}

// Config for New.
type Config struct {
	State state.Dir
	// PublicKey is the pinned release key; without one every offer is
	// refused.
	PublicKey ed25519.PublicKey
	// Exe is the running binary's path; Args what it was started with
	// (without argv[0]), to restart with.
	Exe  string
	Args []string
	// Service says a service manager restarts the agent when it exits.
	Service bool
	// Watchdog bounds how long a new version may take to be welcomed.
	Watchdog time.Duration
	Logger   *slog.Logger
	// Finding spools a finding about an upgrade (refused, rolled back).
	Finding func(*vigilv1.Finding)
	// Restart stops the daemon so the new binary can start.
	Restart func()
	// StartWatchdog starts the watchdog process from the previous binary
	// (default: StartWatchdogProcess).
	StartWatchdog func(prevExe string, dir state.Dir) error
	// Identity for findings.
	DeviceID, Group string
}

// record is upgrade.json: versions this device will not take again, and
// reports to deliver at the next welcome.
type record struct {
	Failed map[string]string `json:"failed"`
	// Queued rollbacks (rolledBack) the watchdog recorded for the
	// restored agent to report.
	Queued []rolledBack `json:"queued,omitempty"`
}

// Pending is upgrade-pending.json: a swap whose new version has not been
// welcomed yet. Its presence arms the watchdog.
type Pending struct {
	From     string    `json:"from"`
	To       string    `json:"to"`
	Exe      string    `json:"exe"`
	Prev     string    `json:"prev"`
	Args     []string  `json:"args"`
	Service  bool      `json:"service"`
	PID      int       `json:"pid"`
	Deadline time.Time `json:"deadline"`
}

// Upgrader handles offers for one running agent.
type Upgrader struct {
	cfg Config
	log *slog.Logger

	mu     sync.Mutex
	busy   bool
	failed map[string]string
	queue  []*vigilv1.UpgradeReport
}

// New loads the upgrade record. A rollback the watchdog recorded is queued
// for the collector and reported as a finding.
func New(cfg Config) (*Upgrader, error) {
	if cfg.Watchdog <= 0 {
		cfg.Watchdog = DefaultWatchdog
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.StartWatchdog == nil {
		cfg.StartWatchdog = StartWatchdogProcess
	}
	u := &Upgrader{cfg: cfg, log: cfg.Logger, failed: map[string]string{}}
	rec, err := loadRecord(cfg.State)
	if err != nil {
		return nil, err
	}
	u.failed = rec.Failed
	for _, r := range rec.Queued {
		if r.Version != "" {
			u.log.Warn("the upgrade was rolled back: the new version was not welcomed by the collector in time",
				"version", r.Version, "reason", r.Reason)
			u.queue = append(u.queue, &vigilv1.UpgradeReport{Version: r.Version, Outcome: vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_ROLLED_BACK,
				Reason: r.Reason, RunningVersion: version.Version})
			u.finding("agent-upgrade-rolled-back", vigilv1.Severity_SEVERITY_MEDIUM, "agent",
				fmt.Sprintf("agent upgrade to %s rolled back to %s: %s", r.Version, version.Version, r.Reason),
				map[string]any{"version": r.Version, "running_version": version.Version, "reason": r.Reason})
		}
	}
	if len(rec.Queued) > 0 {
		rec.Queued = nil
		if err := saveRecord(cfg.State, rec); err != nil {
			return nil, err
		}
	}
	return u, nil
}

type rolledBack struct {
	Version string `json:"version"`
	Reason  string `json:"reason"`
}

func loadRecord(dir state.Dir) (record, error) {
	rec := record{Failed: map[string]string{}}
	b, err := os.ReadFile(dir.UpgradePath())
	if errors.Is(err, os.ErrNotExist) {
		return rec, nil
	}
	if err != nil {
		return rec, fmt.Errorf("read upgrade record: %w", err)
	}
	if err := json.Unmarshal(b, &rec); err != nil {
		// A damaged record must not stop the agent: it only costs the
		// memory of failed versions, which the collector also keeps.
		return record{Failed: map[string]string{}}, nil
	}
	if rec.Failed == nil {
		rec.Failed = map[string]string{}
	}
	return rec, nil
}

func saveRecord(dir state.Dir, rec record) error {
	b, _ := json.MarshalIndent(rec, "", "  ")
	if err := fsutil.WriteFileAtomic(dir.UpgradePath(), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save upgrade record: %w", err)
	}
	return nil
}

// LoadPending reads the pending swap, if any.
func LoadPending(dir state.Dir) (Pending, bool, error) {
	var p Pending
	b, err := os.ReadFile(dir.PendingUpgradePath())
	if errors.Is(err, os.ErrNotExist) {
		return p, false, nil
	}
	if err != nil {
		return p, false, fmt.Errorf("read pending upgrade: %w", err)
	}
	if err := json.Unmarshal(b, &p); err != nil {
		return p, false, fmt.Errorf("parse %s: %w", dir.PendingUpgradePath(), err)
	}
	return p, true, nil
}

func savePending(dir state.Dir, p Pending) error {
	b, _ := json.MarshalIndent(p, "", "  ")
	return fsutil.WriteFileAtomic(dir.PendingUpgradePath(), append(b, '\n'), 0o600)
}

// Started tells a pending swap which process now runs the new version, so
// the watchdog stops the right one.
func (u *Upgrader) Started() {
	p, ok, err := LoadPending(u.cfg.State)
	if err != nil || !ok || p.To != version.Version {
		return
	}
	p.PID = os.Getpid()
	if err := savePending(u.cfg.State, p); err != nil {
		u.log.Warn("record the upgraded agent's pid for the watchdog", "err", err)
	}
}

// Welcomed is called when the collector welcomed this process. It confirms
// a pending swap to this version (the watchdog then stands down) and
// returns the reports to send.
func (u *Upgrader) Welcomed() []*vigilv1.UpgradeReport {
	u.mu.Lock()
	out := u.queue
	u.queue = nil
	u.mu.Unlock()
	p, ok, err := LoadPending(u.cfg.State)
	if err != nil {
		u.log.Warn("pending upgrade", "err", err)
	}
	if ok && p.To == version.Version {
		// Removing the file is the confirmation; if the watchdog already
		// claimed it (renamed it), it is rolling back and this process is
		// about to be replaced.
		if err := os.Remove(u.cfg.State.PendingUpgradePath()); err == nil {
			u.log.Info("agent upgrade confirmed: the collector welcomed the new version", "from", p.From, "to", p.To)
			out = append(out, &vigilv1.UpgradeReport{Version: p.To, Outcome: vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_SUCCEEDED,
				RunningVersion: version.Version})
		}
	}
	return out
}

// Offer handles an UpgradeOffer. It returns the report to send when the
// offer is refused; on success it has asked the daemon to restart and
// returns nil. Offers for the running version, or while another is being
// handled, are ignored.
func (u *Upgrader) Offer(ctx context.Context, o *vigilv1.UpgradeOffer, dl Downloader) *vigilv1.UpgradeReport {
	if o.GetVersion() == version.Version {
		return nil
	}
	u.mu.Lock()
	if u.busy {
		u.mu.Unlock()
		return nil
	}
	if why, failed := u.failed[o.GetVersion()]; failed {
		u.mu.Unlock()
		return u.report(o, vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_REFUSED, "this device failed this version before: "+why)
	}
	u.busy = true
	u.mu.Unlock()
	defer func() { u.mu.Lock(); u.busy = false; u.mu.Unlock() }()

	u.log.Info("upgrade offered", "version", o.GetVersion(), "sha256", o.GetSha256(), "bytes", o.GetSize())
	staged, err := u.fetch(ctx, o, dl)
	if err != nil {
		if ctx.Err() != nil {
			// Shutting down or the stream ended: not a verdict on the release.
			os.Remove(staged)
			return nil
		}
		var v *verifyError
		if errors.As(err, &v) {
			return u.refuse(o, err.Error(), v.got)
		}
		u.log.Warn("upgrade download failed; will take the next offer", "version", o.GetVersion(), "err", err)
		return nil
	}
	if err := u.swap(o, staged); err != nil {
		os.Remove(staged)
		return u.refuse(o, "install: "+err.Error(), o.GetSha256())
	}
	u.log.Info("upgrade staged and swapped; restarting into the new version", "from", version.Version, "to", o.GetVersion(),
		"watchdog", u.cfg.Watchdog)
	u.cfg.Restart()
	return nil
}

// verifyError is a refusal on the merits: the release is not the one signed.
type verifyError struct {
	msg string
	got string
}

func (e *verifyError) Error() string { return e.msg }

func refused(got, format string, a ...any) error {
	return &verifyError{msg: fmt.Sprintf(format, a...), got: got}
}

// fetch checks the offer, downloads it next to the running binary and
// checks what arrived. It returns the staged file's path.
func (u *Upgrader) fetch(ctx context.Context, o *vigilv1.UpgradeOffer, dl Downloader) (string, error) {
	if err := release.ValidVersion(o.GetVersion()); err != nil {
		return "", refused("", "offer: %v", err)
	}
	if o.GetOs() != runtime.GOOS || o.GetArch() != runtime.GOARCH {
		return "", refused("", "offer is for %s/%s, this agent runs on %s/%s", o.GetOs(), o.GetArch(), runtime.GOOS, runtime.GOARCH)
	}
	if o.GetSize() <= 0 || o.GetSize() > release.MaxBinary {
		return "", refused("", "offered size %d is outside 1..%d bytes", o.GetSize(), int64(release.MaxBinary))
	}
	// The signature covers hash, version and platform: check it before
	// spending the bandwidth.
	if err := release.Verify(u.cfg.PublicKey, o.GetSignature(), o.GetSha256(), o.GetVersion(), o.GetOs(), o.GetArch()); err != nil {
		return "", refused("", "%v", err)
	}
	staged := u.cfg.Exe + ".new"
	f, err := os.OpenFile(staged, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o700)
	if err != nil {
		return "", fmt.Errorf("stage next to %s: %w", u.cfg.Exe, err)
	}
	h := sha256.New()
	var got int64
	// A broken stream is resumed from where it stopped, a few times; a
	// collector at its download limit is waited for (its delay plus
	// jitter), for a bounded number of turns.
	bo := backoff.New(time.Second, 2*time.Minute)
	for attempt, busy := 0, 0; got < o.GetSize() && attempt < 4 && busy < 30; {
		var n int64
		n, err = u.download(ctx, dl, o, got, io.MultiWriter(f, h))
		got += n
		if err == nil || ctx.Err() != nil {
			break
		}
		var v *verifyError
		if errors.As(err, &v) {
			break
		}
		if status.Code(err) == codes.ResourceExhausted {
			busy++
			floor, _ := backoff.RetryDelay(err)
			wait := bo.Next(floor)
			u.log.Info("collector busy serving upgrades; waiting", "version", o.GetVersion(), "wait", wait.Round(time.Millisecond))
			select {
			case <-ctx.Done():
			case <-time.After(wait):
			}
			continue
		}
		attempt++
		u.log.Warn("upgrade download interrupted; resuming", "version", o.GetVersion(), "at", got, "err", err)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		os.Remove(staged)
		return staged, err
	}
	sum := hex.EncodeToString(h.Sum(nil))
	if got != o.GetSize() {
		os.Remove(staged)
		return staged, refused(sum, "received %d bytes, the signed release has %d", got, o.GetSize())
	}
	if sum != o.GetSha256() {
		os.Remove(staged)
		return staged, refused(sum, "sha256 of the received binary is %s, the signed release's is %s: tampered or corrupted", sum, o.GetSha256())
	}
	return staged, nil
}

func (u *Upgrader) download(ctx context.Context, dl Downloader, o *vigilv1.UpgradeOffer, from int64, w io.Writer) (int64, error) {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	st, err := dl.DownloadRelease(ctx, &vigilv1.DownloadRequest{Version: o.GetVersion(), Os: o.GetOs(), Arch: o.GetArch(), Offset: from})
	if err != nil {
		return 0, err
	}
	var n int64
	for {
		c, err := st.Recv()
		if errors.Is(err, io.EOF) {
			return n, nil
		}
		if err != nil {
			return n, err
		}
		if c.GetOffset() != from+n {
			return n, fmt.Errorf("chunk at offset %d, expected %d", c.GetOffset(), from+n)
		}
		if from+n+int64(len(c.GetData())) > o.GetSize() {
			return n, refused("", "the collector sent more than the signed release's %d bytes", o.GetSize())
		}
		if _, err := w.Write(c.GetData()); err != nil {
			return n, fmt.Errorf("write staged binary: %w", err)
		}
		n += int64(len(c.GetData()))
	}
}

// swap keeps the running binary as .prev, arms the watchdog and moves the
// staged binary into place.
func (u *Upgrader) swap(o *vigilv1.UpgradeOffer, staged string) error {
	prev := u.cfg.Exe + ".prev"
	if err := keepPrevious(u.cfg.Exe, prev); err != nil {
		return fmt.Errorf("keep the previous binary: %w", err)
	}
	p := Pending{From: version.Version, To: o.GetVersion(), Exe: u.cfg.Exe, Prev: prev, Args: u.cfg.Args,
		Service: u.cfg.Service, PID: os.Getpid(), Deadline: time.Now().Add(u.cfg.Watchdog)}
	if err := savePending(u.cfg.State, p); err != nil {
		return fmt.Errorf("record the pending upgrade: %w", err)
	}
	if err := u.cfg.StartWatchdog(prev, u.cfg.State); err != nil {
		os.Remove(u.cfg.State.PendingUpgradePath())
		return fmt.Errorf("start the upgrade watchdog: %w", err)
	}
	if err := replace(staged, u.cfg.Exe); err != nil {
		// The watchdog sees the pending file gone and stands down.
		os.Remove(u.cfg.State.PendingUpgradePath())
		return fmt.Errorf("swap in the new binary: %w", err)
	}
	return nil
}

// refuse records a refused offer locally, raises a finding and returns the
// report for the collector.
func (u *Upgrader) refuse(o *vigilv1.UpgradeOffer, reason, gotSHA string) *vigilv1.UpgradeReport {
	u.log.Error("upgrade refused; staying on the running version", "version", o.GetVersion(), "running", version.Version, "reason", reason)
	u.mu.Lock()
	u.failed[o.GetVersion()] = reason
	rec, _ := loadRecord(u.cfg.State)
	rec.Failed[o.GetVersion()] = reason
	u.mu.Unlock()
	if err := saveRecord(u.cfg.State, rec); err != nil {
		u.log.Error("record refused upgrade", "err", err)
	}
	u.finding("agent-upgrade-refused", vigilv1.Severity_SEVERITY_HIGH, "tamper",
		fmt.Sprintf("agent upgrade to %s refused: %s", o.GetVersion(), reason),
		map[string]any{"version": o.GetVersion(), "running_version": version.Version, "reason": reason,
			"offered_sha256": o.GetSha256(), "received_sha256": gotSHA})
	return u.report(o, vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_REFUSED, reason)
}

func (u *Upgrader) report(o *vigilv1.UpgradeOffer, out vigilv1.UpgradeOutcome, reason string) *vigilv1.UpgradeReport {
	if len(reason) > 500 {
		reason = reason[:500]
	}
	return &vigilv1.UpgradeReport{Version: o.GetVersion(), Outcome: out, Reason: reason, RunningVersion: version.Version}
}

func (u *Upgrader) finding(rule string, sev vigilv1.Severity, category, msg string, details map[string]any) {
	if u.cfg.Finding == nil {
		return
	}
	d, _ := structpb.NewStruct(details)
	u.cfg.Finding(&vigilv1.Finding{
		DeviceId: u.cfg.DeviceID, Group: u.cfg.Group, ObservedAt: timestamppb.Now(),
		Check: "agent", RuleId: rule, RuleVersion: 1, Severity: sev, Category: category, Message: msg, Details: d,
	})
}
