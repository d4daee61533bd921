// Package daemon wires the agent together for `run` (foreground or as a
// service): spool, rules engine, uplink and the local control socket.
package daemon

import (
	"context"
	"crypto/ed25519"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/shirou/gopsutil/v3/process"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/agent/checks/all"
	"github.com/vigil-safeguarding/vigil/agent/control"
	"github.com/vigil-safeguarding/vigil/agent/engine"
	"github.com/vigil-safeguarding/vigil/agent/enroll"
	"github.com/vigil-safeguarding/vigil/agent/inventory"
	"github.com/vigil-safeguarding/vigil/agent/runrecord"
	"github.com/vigil-safeguarding/vigil/agent/spool"
	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/agent/upgrade"
	"github.com/vigil-safeguarding/vigil/agent/uplink"
	"github.com/vigil-safeguarding/vigil/internal/findings"
	"github.com/vigil-safeguarding/vigil/internal/version"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Options for Run.
type Options struct {
	State state.Dir
	// RulesDir overrides the state dir's rules folder; pushed bundles are
	// then not applied.
	RulesDir string
	// SpoolMaxBytes overrides the configured spool bound when > 0.
	SpoolMaxBytes int64
	Logger        *slog.Logger
	// SessionSocket is where session helpers reach the service (default
	// session.DefaultSocket(): /run/vigil-agent/session.sock, a named pipe
	// on Windows).
	SessionSocket string
	// BackoffBase/BackoffMax/IdentityRetry tune reconnects (tests).
	BackoffBase, BackoffMax, IdentityRetry time.Duration
	// Enroll, when set, enrolls an unenrolled state dir from a package's
	// enrollment configuration before starting (waiting for the collector).
	Enroll *enroll.BootstrapOptions
	// Upgrades: the running binary and its arguments (to restart into an
	// upgrade), whether a service manager restarts it, and how long a new
	// version has to be welcomed before the watchdog rolls it back.
	Exe             string
	Args            []string
	Service         bool
	UpgradeWatchdog time.Duration
}

// maxProcs bounds the agent's Ps. Scheduled checks run one at a time
// (engine.pollSlot) and event checks have small pools, so more Ps buy
// nothing but per-P caches; and setting it stops the runtime from re-reading
// the cgroup CPU limit every second, which woke an idle agent for nothing.
const maxProcs = 2

// Run runs the agent until ctx ends.
func Run(ctx context.Context, o Options) error {
	log := o.Logger
	if version.FailBeforeDial != "" {
		// A test build (internal/version): stop before any connection.
		return fmt.Errorf("this build never connects (test knob FailBeforeDial): %s", version.FailBeforeDial)
	}
	runtime.GOMAXPROCS(max(1, min(runtime.GOMAXPROCS(0), maxProcs)))
	if err := o.State.Ensure(); err != nil {
		return err
	}
	if o.Enroll != nil {
		if err := enroll.EnsureEnrolled(ctx, o.State, *o.Enroll); err != nil {
			if ctx.Err() != nil {
				return nil
			}
			return err
		}
	}
	cfg, err := o.State.LoadConfig()
	if err != nil {
		return err
	}
	maxBytes := cfg.SpoolMaxBytes
	if o.SpoolMaxBytes > 0 {
		maxBytes = o.SpoolMaxBytes
	}
	sp, err := openSpool(ctx, log, o.State.SpoolPath(), spool.Options{
		MaxBytes: maxBytes, Logger: log, KeyPath: o.State.SpoolKeyPath(),
		DropReport: dropReport(cfg), WriteFailReport: writeFailReport(cfg), DamageReport: damageReport(cfg),
	})
	if err != nil {
		return fmt.Errorf("open spool: %w", err)
	}
	defer sp.Close()

	// Every check is constructed here with what it needs: quarantined
	// executables live in the state dir, owner-only; the screen and session
	// checks get the state the session server feeds.
	chk := all.New(all.Deps{StateDir: string(o.State), Logger: log})
	rulesDir, accept := o.State.RulesDir(), true
	if o.RulesDir != "" {
		rulesDir, accept = o.RulesDir, false
	}
	eng, err := engine.New(engine.Config{
		DeviceID: cfg.DeviceID, Group: cfg.Group, Role: cfg.Role,
		RulesDir: rulesDir, GoodDir: o.State.GoodRulesDir(), AcceptBundles: accept,
		Spool: sp, PosturePath: o.State.PosturePath(), Checks: chk.Registry, Logger: log,
	})
	if err != nil {
		return err
	}
	chk.Screen.SetRecipient(cfg.EvidenceRecipient)
	inv := auditor(eng, sp)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	var restart atomic.Bool
	var upg uplink.Upgrader // nil (no upgrades) without the binary's path
	if o.Exe != "" {
		u, err := newUpgrader(o, cfg, sp, log, func() { restart.Store(true); cancel() })
		if err != nil {
			return err
		}
		upg = u
	}
	// The run record tells the collector how the previous run ended; it is
	// closed below only on an orderly exit.
	lifecycle, err := runrecord.Begin(o.State.RunRecordPath(), time.Now())
	if err != nil {
		return err
	}
	if lifecycle.PreviousExit == vigilv1.ExitKind_EXIT_KIND_UNCLEAN {
		log.Warn("the previous run did not exit cleanly (crashed or killed)", "starts_last_hour", lifecycle.StartsInWindow,
			"unclean_starts_last_hour", lifecycle.UncleanStartsInWindow)
	}
	up := uplink.New(uplink.Config{Upgrader: upg,
		Audit: inv.Collect,
		State: o.State, Agent: cfg, Spool: sp, Engine: eng, Logger: log, Usage: selfUsage(), Lifecycle: lifecycle,
		BackoffBase: o.BackoffBase, BackoffMax: o.BackoffMax, IdentityRetry: o.IdentityRetry,
		LastLocalError: func() string {
			if f := eng.EmitFailures(); f.Total > 0 {
				return fmt.Sprintf("%d findings not recorded (%d failed writes), last for rule %s at %s: %s",
					f.Findings, f.Total, f.LastRule, f.Last.UTC().Format(time.RFC3339), f.LastError)
			}
			return ""
		},
		OnWelcome: func(w *vigilv1.Welcome) {
			if w.EvidenceRecipient == "" || w.EvidenceRecipient == cfg.EvidenceRecipient {
				return
			}
			cfg.EvidenceRecipient = w.EvidenceRecipient
			chk.Screen.SetRecipient(w.EvidenceRecipient)
			if err := o.State.SaveConfig(cfg); err != nil {
				log.Error("save evidence recipient", "err", err)
			}
		},
	})
	log.Info("agent running", "device", cfg.DeviceID, "group", cfg.Group, "collector", cfg.Collector,
		"rules", rulesDir, "rules_hash", eng.RulesHash(), "spool", sp.Stats(), "version", version.Version)

	var wg sync.WaitGroup
	errc := make(chan error, 4)
	run := func(name string, f func(context.Context) error) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := f(ctx); err != nil && ctx.Err() == nil {
				errc <- fmt.Errorf("%s: %w", name, err)
			}
		}()
	}
	run("rules engine", eng.Run)
	run("uplink", up.Run)
	run("session socket", func(ctx context.Context) error {
		return serveSessions(ctx, o.State, o.SessionSocket, chk, log)
	})
	run("control socket", func(ctx context.Context) error {
		return control.Serve(ctx, o.State.ControlSocket(), &backend{eng: eng, up: up, sp: sp, cfg: cfg})
	})
	run("memory trim", func(ctx context.Context) error { trimLoop(ctx, log); return nil })
	select {
	case <-ctx.Done():
		err = nil
	case err = <-errc:
	}
	cancel()
	wg.Wait()
	if rerr := runrecord.End(o.State.RunRecordPath()); rerr != nil {
		log.Error("close the run record (the next start will report an unclean exit)", "err", rerr)
	}
	log.Info("agent stopped", "spool", sp.Stats())
	if restart.Load() {
		return upgrade.ErrRestart
	}
	return err
}

// newUpgrader wires agent/upgrade: refusals and rollbacks become findings
// in the spool, like any other.
func newUpgrader(o Options, cfg state.Config, sp *spool.Spool, log *slog.Logger, restart func()) (*upgrade.Upgrader, error) {
	u, err := upgrade.New(upgrade.Config{
		State: o.State, PublicKey: ed25519.PublicKey(cfg.ReleaseKey), Exe: o.Exe, Args: o.Args, Service: o.Service,
		Watchdog: o.UpgradeWatchdog, Logger: log, Restart: restart, DeviceID: cfg.DeviceID, Group: cfg.Group,
		Finding: func(f *vigilv1.Finding) {
			b, err := proto.Marshal(f)
			if err == nil {
				_, _, err = sp.Append([]spool.Item{{Severity: uint8(f.Severity), Payload: b}})
			}
			if err != nil {
				log.Error("spool upgrade finding", "rule", f.RuleId, "err", err)
			}
		},
	})
	if err != nil {
		return nil, err
	}
	u.Started()
	return u, nil
}

type backend struct {
	eng *engine.Engine
	up  *uplink.Uplink
	sp  *spool.Spool
	cfg state.Config
}

func (b *backend) TriggerTest(ctx context.Context, n int, source, ruleID string) (uint64, uint64, string, error) {
	return b.eng.TriggerTest(ctx, n, source, ruleID)
}

func (b *backend) Status() any {
	return map[string]any{
		"device_id": b.cfg.DeviceID, "group": b.cfg.Group, "collector": b.cfg.Collector,
		"rules_hash": b.eng.RulesHash(), "spool": b.sp.Stats(), "uplink": b.up.Status(),
		"emit_failures": b.eng.EmitFailures(),
	}
}

// auditor answers the collector's audit requests from the engine's posture
// state and the spool's health.
func auditor(eng *engine.Engine, sp *spool.Spool) *inventory.Collector {
	return &inventory.Collector{
		Compliance: eng.Compliance,
		Health: func() *vigilv1.AgentHealth {
			st := sp.Stats()
			h := &vigilv1.AgentHealth{Version: version.Version, RulesHash: eng.RulesHash(), SpoolDepth: int64(st.Count), SpoolBytes: st.Bytes}
			if t := eng.LastSelftest(); !t.IsZero() {
				h.LastSelftest = timestamppb.New(t)
			}
			return h
		},
	}
}

// dropReport builds the finding the spool appends when it had to evict:
// high severity so that it outlives what it reports on.
func dropReport(cfg state.Config) func(map[uint8]uint64) spool.Item {
	return func(dropped map[uint8]uint64) spool.Item {
		var total uint64
		by := map[string]any{}
		for sev, n := range dropped {
			total += n
			by[findings.SeverityName(vigilv1.Severity(sev))] = n
		}
		details, _ := structpb.NewStruct(map[string]any{"dropped": total, "by_severity": by})
		f := &vigilv1.Finding{
			DeviceId: cfg.DeviceID, Group: cfg.Group, ObservedAt: timestamppb.Now(),
			Check: "agent", RuleId: "agent-spool-dropped", RuleVersion: 1, Severity: vigilv1.Severity_SEVERITY_HIGH,
			Category: "agent", Message: fmt.Sprintf("spool full: dropped %d lower-severity findings while offline", total),
			Details: details,
		}
		b, _ := proto.Marshal(f)
		return spool.Item{Severity: uint8(vigilv1.Severity_SEVERITY_HIGH), Payload: b}
	}
}

// trimLoop gives memory left over from start-up and from bursts back to the
// OS (trimMemory): soon after start, once the first polls are done, then
// every 10 minutes. Never on a finding's path.
func trimLoop(ctx context.Context, log *slog.Logger) {
	for _, d := range []time.Duration{10 * time.Second, 50 * time.Second} {
		select {
		case <-ctx.Done():
			return
		case <-time.After(d):
			trimMemory(log)
		}
	}
	t := time.NewTicker(10 * time.Minute)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
			trimMemory(log)
		}
	}
}

// openSpool opens the spool, retrying while the disk refuses (a new spool
// on a full disk cannot be created): exiting would have the service
// manager restart the agent in a loop for as long as the disk is full.
// A spool held by another agent process is an error at once.
func openSpool(ctx context.Context, log *slog.Logger, path string, opts spool.Options) (*spool.Spool, error) {
	for delay := time.Second; ; delay = min(2*delay, time.Minute) {
		sp, err := spool.Open(path, opts)
		if err == nil || errors.Is(err, spool.ErrLocked) {
			return sp, err
		}
		log.Error("cannot open the spool; retrying", "err", err, "retry_in", delay)
		select {
		case <-ctx.Done():
			return nil, err
		case <-time.After(delay):
		}
	}
}

// writeFailReport builds the finding stored once the spool can write again
// after Appends failed (disk full, I/O error): the loss is never silent.
func writeFailReport(cfg state.Config) func(spool.WriteLoss) spool.Item {
	return func(l spool.WriteLoss) spool.Item {
		by := map[string]any{}
		for sev, n := range l.BySeverity {
			by[findings.SeverityName(vigilv1.Severity(sev))] = n
		}
		details, _ := structpb.NewStruct(map[string]any{
			"lost": l.Lost, "by_severity": by, "first_failure": l.First.UTC().Format(time.RFC3339Nano),
			"last_failure": l.Last.UTC().Format(time.RFC3339Nano), "error": l.Err, "write_failures_total": l.Total,
		})
		f := &vigilv1.Finding{
			DeviceId: cfg.DeviceID, Group: cfg.Group, ObservedAt: timestamppb.Now(),
			Check: "agent", RuleId: "agent-spool-write-failed", RuleVersion: 1, Severity: vigilv1.Severity_SEVERITY_HIGH,
			Category: "agent", Message: fmt.Sprintf("spool could not be written: %d findings lost between %s and %s (%s)",
				l.Lost, l.First.UTC().Format(time.RFC3339), l.Last.UTC().Format(time.RFC3339), truncate(l.Err, 300)),
			Details: details,
		}
		b, _ := proto.Marshal(f)
		return spool.Item{Severity: uint8(vigilv1.Severity_SEVERITY_HIGH), Payload: b}
	}
}

// damageReport builds the finding a fresh spool starts with after the old
// one was found damaged and moved aside.
func damageReport(cfg state.Config) func(spool.Damage) spool.Item {
	return func(d spool.Damage) spool.Item {
		lost := "an unknown number"
		var lostV any = "unknown"
		if d.Lost >= 0 {
			lost, lostV = fmt.Sprint(d.Lost), d.Lost
		}
		details, _ := structpb.NewStruct(map[string]any{
			"quarantined_file": d.Quarantine, "reason": truncate(d.Reason, 1000), "salvaged": d.Salvaged, "lost": lostV,
			"key_replaced": d.KeyReplaced,
		})
		f := &vigilv1.Finding{
			DeviceId: cfg.DeviceID, Group: cfg.Group, ObservedAt: timestamppb.Now(),
			Check: "agent", RuleId: "agent-spool-damaged", RuleVersion: 1, Severity: vigilv1.Severity_SEVERITY_HIGH,
			Category: "agent", Message: fmt.Sprintf("spool was damaged and replaced: %d findings salvaged, %s lost; damaged file kept as %s",
				d.Salvaged, lost, d.Quarantine),
			Details: details,
		}
		b, _ := proto.Marshal(f)
		return spool.Item{Severity: uint8(vigilv1.Severity_SEVERITY_HIGH), Payload: b}
	}
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return strings.ToValidUTF8(s[:n], "") + "…"
}

// selfUsage reports the agent's own CPU (average since start) and RSS.
func selfUsage() func() (float64, int64) {
	p, err := process.NewProcess(int32(os.Getpid()))
	if err != nil {
		return nil
	}
	return func() (float64, int64) {
		cpu, _ := p.CPUPercent()
		var rss int64
		if mi, err := p.MemoryInfo(); err == nil {
			rss = int64(mi.RSS)
		}
		return cpu, rss
	}
}
