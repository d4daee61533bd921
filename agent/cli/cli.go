// Package cli is the vigil-agent command line.
package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"strings"
	"syscall"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/checks/all"
	"github.com/vigil-safeguarding/vigil/agent/checks/executables"
	"github.com/vigil-safeguarding/vigil/agent/control"
	"github.com/vigil-safeguarding/vigil/agent/daemon"
	"github.com/vigil-safeguarding/vigil/agent/engine"
	"github.com/vigil-safeguarding/vigil/agent/enroll"
	"github.com/vigil-safeguarding/vigil/agent/service"
	"github.com/vigil-safeguarding/vigil/agent/session"
	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/agent/upgrade"
	"github.com/vigil-safeguarding/vigil/agent/uplink"
	"github.com/vigil-safeguarding/vigil/internal/cliexit"
	"github.com/vigil-safeguarding/vigil/internal/findings"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	"github.com/vigil-safeguarding/vigil/internal/version"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
	"github.com/vigil-safeguarding/vigil/rules/match"
)

const usage = `vigil-agent: Vigil's device agent

  enroll        --collector ADDR --token TOKEN [--state DIR] [--stream-collectors A,B,C]  (stream to front-ends, failing over)
  enroll        [--state DIR] [--enroll-config F]  enroll now from a package's enrollment configuration
  enroll --later --collector ADDR --token TOKEN [--group NAME] [--enroll-config F]
                                                    only write the configuration; the service enrolls at start
  run           [--state DIR] [--rules DIR] [--enroll-config F] [--session-socket PATH]
                                                    run in the foreground (or under the service manager);
                                                    enrolls first from F when not enrolled yet
                [--upgrade-watchdog 3m]             how long an upgraded version has to be welcomed before rollback
  upgrade-watchdog --state DIR                      (started by an upgrade) restore the previous binary if the new one is not welcomed
  install       [--state DIR]                      install as an auto-started service
  uninstall | start | stop | status [--state DIR]
  goodbye       [--state DIR] --reason stop|uninstall   tell the collector the agent goes on purpose
                                                    (removal scripts, after the service stopped)
  trigger-test  [--state DIR] [--count N] [--rule ID]         emit N selftest findings end to end
  rules check   DIR                                 validate rule files (FILE:LINE:COL: message)
  check --once  --rules DIR [--group NAME] [--role ROLE] [--json]   run every enabled check once, no collector
  session       [--display :0] [--session-socket PATH]   per-user helper: report this session's screen to the service
  rules test    DIR                                 match stdin lines against DIR's keyword libraries (JSON per line)
  rules eval    [--json] [--min-recall R] [--max-fp-rate F] DIR FILE
                                                    precision and recall of DIR's libraries on a labelled set
  quarantine list    [--state DIR] [--json]         executables moved aside by a rule with action: quarantine
  quarantine restore [--state DIR] ID               put one back where it was
  version
`

// Main runs the command line and returns the exit code.
func Main(args []string, stdout, stderr io.Writer) int {
	if len(args) == 0 {
		fmt.Fprint(stderr, usage)
		return 2
	}
	cmd, rest := args[0], args[1:]
	if (cmd == "rules" || cmd == "quarantine") && len(rest) > 0 {
		cmd, rest = cmd+" "+rest[0], rest[1:]
	}
	var err error
	switch cmd {
	case "enroll":
		err = enrollCmd(rest, stdout)
	case "run":
		err = runCmd(rest, stderr)
	case "install", "uninstall", "start", "stop", "restart":
		err = serviceCmd(cmd, rest, stdout)
	case "status":
		err = statusCmd(rest, stdout)
	case "trigger-test":
		err = triggerCmd(rest, stdout)
	case "goodbye":
		err = goodbyeCmd(rest, stdout)
	case "rules check":
		return rulesCheck(rest, stdout, stderr)
	case "rules test":
		return rulesTest(rest, os.Stdin, stdout, stderr)
	case "rules eval":
		return rulesEval(rest, stdout, stderr)
	case "check":
		err = checkOnce(rest, stdout)
	case "session":
		err = sessionCmd(rest, stderr)
	case "upgrade-watchdog":
		err = upgradeWatchdog(rest, stderr)
	case "quarantine list":
		err = quarantineList(rest, stdout)
	case "quarantine restore":
		err = quarantineRestore(rest, stdout)
	case "version", "--version":
		fmt.Fprintln(stdout, version.Version)
	case "help", "-h", "--help":
		fmt.Fprint(stdout, usage)
	default:
		fmt.Fprintf(stderr, "unknown command %q\n\n%s", cmd, usage)
		return 2
	}
	return cliexit.Code(stderr, "vigil-agent", cmd, err)
}

func stateFlag(fs *flag.FlagSet) *string {
	return fs.String("state", service.DefaultStateDir(), "agent state directory")
}

func absState(s string) state.Dir {
	if a, err := filepath.Abs(s); err == nil {
		return state.Dir(a)
	}
	return state.Dir(s)
}

func enrollCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("enroll", flag.ContinueOnError)
	addr := fs.String("collector", "", "collector gRPC address host:port")
	token := fs.String("token", "", "enrollment token from `vigil-collector token create`")
	st := stateFlag(fs)
	bootPath := fs.String("enroll-config", enroll.DefaultBootstrapPath(), "enrollment configuration a package installed")
	later := fs.Bool("later", false, "write --collector/--token to --enroll-config for the service instead of enrolling now (MSI, scripted installs)")
	group := fs.String("group", "", "with --later: the group the token is for (informational)")
	streams := fs.String("stream-collectors", "", "comma-separated host:port of stream front-ends to hold the stream to instead of --collector (docs/scale.md)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *later {
		b := enroll.Bootstrap{Collector: *addr, Token: *token, Group: *group}
		if tok, err := identity.ParseToken(*token); err == nil {
			b.CAFingerprint = tok.CAFingerprint
		}
		if err := enroll.WriteBootstrap(*bootPath, b); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "enrollment configuration written to %s; the service enrolls at its next start\n", *bootPath)
		return nil
	}
	if *addr == "" && *token == "" {
		b, err := enroll.LoadBootstrap(*bootPath)
		if err != nil {
			return fmt.Errorf("%w (or give --collector and --token)", err)
		}
		*addr, *token = b.Collector, b.Token
	}
	if *addr == "" || *token == "" {
		return errors.New("--collector and --token are required")
	}
	res, err := enroll.Enroll(context.Background(), absState(*st), *addr, *token)
	if err != nil {
		return err
	}
	if *streams != "" {
		dir := absState(*st)
		cfg, err := dir.LoadConfig()
		if err != nil {
			return err
		}
		cfg.Collectors = nil
		for _, a := range strings.Split(*streams, ",") {
			if a = strings.TrimSpace(a); a != "" {
				cfg.Collectors = append(cfg.Collectors, a)
			}
		}
		if err := dir.SaveConfig(cfg); err != nil {
			return fmt.Errorf("write agent config: %w", err)
		}
	}
	fmt.Fprintf(stdout, "enrolled: device %s in group %s\n", res.DeviceID, res.Group)
	return nil
}

func runCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("run", flag.ContinueOnError)
	st := stateFlag(fs)
	rulesDir := fs.String("rules", "", "watch this rules folder instead of the one the collector fills")
	spoolMax := fs.Int64("spool-max-bytes", 0, "bound on the on-disk spool (default from config, else 64 MiB)")
	logLevel := fs.String("log-level", "info", "debug|info|warn|error")
	backoffMax := fs.Duration("backoff-max", 2*time.Minute, "cap on reconnect waits")
	bootPath := fs.String("enroll-config", enroll.DefaultBootstrapPath(), "enrollment configuration to enroll from at first start (ignored once enrolled)")
	sock := sessionSocketFlag(fs)
	watchdog := fs.Duration("upgrade-watchdog", upgrade.DefaultWatchdog, "how long an upgraded version has to be welcomed by the collector before the previous binary is restored")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	rd := *rulesDir
	if rd != "" {
		rd, _ = filepath.Abs(rd)
	}
	opts := daemon.Options{State: absState(*st), RulesDir: rd, SpoolMaxBytes: *spoolMax, Logger: log, BackoffMax: *backoffMax,
		Enroll:        &enroll.BootstrapOptions{Path: *bootPath, BackoffMax: *backoffMax, Logger: log},
		SessionSocket: session.ResolveSocket(*sock), UpgradeWatchdog: *watchdog, Service: !service.Interactive(),
		Args: append([]string{"run"}, args...)}
	if exe, err := os.Executable(); err == nil {
		opts.Exe = exe
	} else {
		log.Warn("cannot tell where this binary is; upgrades disabled", "err", err)
	}
	run := func(ctx context.Context) error {
		err := daemon.Run(ctx, opts)
		// After an upgrade swap the daemon has closed spool and sockets.
		// On Unix the process becomes the new binary itself (same pid, so
		// systemd, launchd and a SysV pid file all keep following it; SysV
		// would not restart an exited agent). Windows has no exec: a
		// service exits non-zero and the SCM's recovery restarts it.
		if errors.Is(err, upgrade.ErrRestart) && (runtime.GOOS != "windows" || !opts.Service) {
			log.Info("re-executing the upgraded binary", "exe", opts.Exe)
			return upgrade.Reexec(opts.Exe, opts.Args)
		}
		return err
	}
	if !service.Interactive() {
		s, err := service.New(string(opts.State), run, log)
		if err != nil {
			return err
		}
		return s.Run()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return run(ctx)
}

// upgradeWatchdog runs from the previous binary after an upgrade swap.
func upgradeWatchdog(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("upgrade-watchdog", flag.ContinueOnError)
	st := stateFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir := absState(*st)
	log := slog.New(slog.NewTextHandler(stderr, nil)).With("process", "upgrade-watchdog")
	return upgrade.Watch(context.Background(), upgrade.WatchConfig{State: dir, Logger: log,
		RestartService: func() error {
			s, err := service.New(string(dir), nil, log)
			if err != nil {
				return err
			}
			return service.Control(s, "restart")
		}})
}

func serviceCmd(action string, args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet(action, flag.ContinueOnError)
	st := stateFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	s, err := service.New(string(absState(*st)), nil, slog.Default())
	if err != nil {
		return err
	}
	if err := service.Control(s, action); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "%s: done\n", action)
	return nil
}

func statusCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("status", flag.ContinueOnError)
	st := stateFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	dir := absState(*st)
	if s, err := service.New(string(dir), nil, slog.Default()); err == nil {
		fmt.Fprintf(stdout, "service: %s\n", service.StatusString(s))
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	var out map[string]any
	if err := control.Call(ctx, dir.ControlSocket(), "GET", "/v1/status", nil, &out); err != nil {
		return err
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}

func triggerCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("trigger-test", flag.ContinueOnError)
	st := stateFlag(fs)
	count := fs.Int("count", 1, "how many selftest findings")
	rule := fs.String("rule", "", "selftest rule id (default: the first enabled selftest rule)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	var res control.TriggerResult
	if err := control.Call(ctx, absState(*st).ControlSocket(), "POST", "/v1/trigger-test", map[string]any{"count": *count, "rule": *rule}, &res); err != nil {
		return err
	}
	return json.NewEncoder(stdout).Encode(res)
}

// goodbyeCmd tells the collector this device goes on purpose, so that its
// silence is judged a stop or an uninstall and not a tamper. An unenrolled
// state dir has nobody to tell: that is not an error (a package removed
// before enrollment).
func goodbyeCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("goodbye", flag.ContinueOnError)
	st := stateFlag(fs)
	reasonName := fs.String("reason", "", "stop or uninstall")
	timeout := fs.Duration("timeout", 20*time.Second, "give up after this long (a removal must not hang on an unreachable collector)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	reasons := map[string]vigilv1.GoodbyeReason{"stop": vigilv1.GoodbyeReason_GOODBYE_REASON_STOP,
		"uninstall": vigilv1.GoodbyeReason_GOODBYE_REASON_UNINSTALL}
	reason, ok := reasons[*reasonName]
	if !ok {
		return fmt.Errorf("--reason %q: stop or uninstall", *reasonName)
	}
	dir := absState(*st)
	cfg, err := dir.LoadConfig()
	if errors.Is(err, os.ErrNotExist) {
		fmt.Fprintln(stdout, "not enrolled: nobody to say goodbye to")
		return nil
	}
	if err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(context.Background(), *timeout)
	defer cancel()
	up := uplink.New(uplink.Config{State: dir, Agent: cfg, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err := up.SayGoodbye(ctx, reason); err != nil {
		return fmt.Errorf("say goodbye to %s: %w", cfg.Collector, err)
	}
	fmt.Fprintf(stdout, "collector %s told: %s\n", cfg.Collector, *reasonName)
	return nil
}

// rulesCheck validates a rules folder: one FILE:LINE:COL line per error,
// exit 1 on any error.
func rulesCheck(args []string, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: vigil-agent rules check DIR")
		return 2
	}
	set, errs := rules.LoadDir(args[0], all.New(all.Deps{}).Registry)
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(stdout, e.Error())
		}
		fmt.Fprintf(stderr, "%d error(s)\n", len(errs))
		return 1
	}
	fmt.Fprintf(stdout, "ok: %d rules in %d files, bundle %s\n", len(set.Rules), len(set.Files), set.Hash)
	return 0
}

// checkOnce runs every enabled check once and prints one finding per line.
func checkOnce(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("check", flag.ContinueOnError)
	once := fs.Bool("once", false, "run every enabled check once and exit (required)")
	rulesDir := fs.String("rules", "", "rules folder (default: the embedded default pack)")
	group := fs.String("group", "", "device group the rules' scope is evaluated for")
	role := fs.String("role", "", "user role the rules' scope is evaluated for")
	asJSON := fs.Bool("json", false, "one JSON object per finding per line")
	st := fs.String("state", "", "state dir whose quarantine a rule with action: quarantine may use (default: none, alert only)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if !*once {
		return errors.New("only --once is supported: the running agent evaluates rules continuously")
	}
	deps := all.Deps{Logger: slog.New(slog.NewTextHandler(os.Stderr, nil))}
	if *st != "" {
		deps.StateDir = string(absState(*st))
	}
	kinds := all.New(deps).Registry
	var set *rules.Set
	var errs rules.Errors
	if *rulesDir != "" {
		set, errs = rules.LoadDir(*rulesDir, kinds)
	} else {
		set, errs = rules.LoadFiles(rules.Defaults(), kinds)
	}
	if len(errs) > 0 {
		return fmt.Errorf("rules do not validate:\n%s", errs.Error())
	}
	enc := json.NewEncoder(stdout)
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	engine.Once(ctx, kinds, set, *group, *role, func(f *vigilv1.Finding) {
		j := findings.ToJSON(f)
		if *asJSON {
			enc.Encode(j)
			return
		}
		status := j.Status
		if status == "" {
			status = "event"
		}
		fmt.Fprintf(stdout, "%-5s %-8s %-24s %s\n", status, j.Severity, j.RuleID, j.Message)
	})
	return nil
}

func quarantineList(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("quarantine list", flag.ContinueOnError)
	st := stateFlag(fs)
	asJSON := fs.Bool("json", false, "one JSON object per entry per line")
	if err := fs.Parse(args); err != nil {
		return err
	}
	entries, err := executables.NewStore(executables.QuarantineDir(string(absState(*st)))).List()
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, e := range entries {
			enc.Encode(e)
		}
		return nil
	}
	for _, e := range entries {
		fmt.Fprintf(stdout, "%s  %s  %s  %s  rule %s\n", e.ID, e.Meta.QuarantinedAt.Format(time.RFC3339), e.Meta.SHA256[:min(12, len(e.Meta.SHA256))], e.Meta.OriginalPath, e.Meta.RuleID)
	}
	return nil
}

func quarantineRestore(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("quarantine restore", flag.ContinueOnError)
	st := stateFlag(fs)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return errors.New("usage: vigil-agent quarantine restore [--state DIR] ID")
	}
	path, err := executables.NewStore(executables.QuarantineDir(string(absState(*st)))).Restore(fs.Arg(0))
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "restored %s\n", path)
	return nil
}

func sessionSocketFlag(fs *flag.FlagSet) *string {
	return fs.String("session-socket", "", "where session helpers reach the service (default $"+session.SocketEnv+", else "+session.DefaultSocket()+")")
}

// sessionCmd is the per-user session helper, started at each login as the
// logged-in user: it needs nothing from the (owner-only) state dir.
func sessionCmd(args []string, stderr io.Writer) error {
	fs := flag.NewFlagSet("session", flag.ContinueOnError)
	st := fs.String("state", "", "legacy: a state dir other than the default makes the helper use DIR/session.sock (root only)")
	display := fs.String("display", "", "X display (default $DISPLAY)")
	sock := sessionSocketFlag(fs)
	logLevel := fs.String("log-level", "info", "debug|info|warn|error")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var lvl slog.Level
	if err := lvl.UnmarshalText([]byte(*logLevel)); err != nil {
		return fmt.Errorf("--log-level: %w", err)
	}
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: lvl}))
	path := session.ResolveSocket(*sock)
	// Before the runtime directory existed, autostart entries said
	// `--state /var/lib/vigil-agent`: that (the default) means the default
	// endpoint; another dir is a root-run test setup, where the service
	// links the socket into the state dir.
	if *sock == "" && os.Getenv(session.SocketEnv) == "" && *st != "" && absState(*st) != absState(service.DefaultStateDir()) {
		path = absState(*st).SessionSocket()
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	return session.RunHelper(ctx, path, *display, log)
}

// rulesTest matches each stdin line against the keyword libraries under DIR
// with the agent's own engine, printing exactly one JSON object per line.
// rulesEval scores DIR's keyword libraries on a labelled evaluation set
// (rules/keywords/eval/titles.tsv). With thresholds it exits 1 when they
// are not met, so a school can gate its own libraries the way make test
// gates the defaults.
func rulesEval(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("rules eval", flag.ContinueOnError)
	fs.SetOutput(stderr)
	asJSON := fs.Bool("json", false, "print the report as one JSON object")
	minRecall := fs.Float64("min-recall", 0, "exit 1 when overall recall is below this")
	maxFP := fs.Float64("max-fp-rate", 1, "exit 1 when the share of benign lines with a match is above this")
	if err := fs.Parse(args); err != nil {
		return 2
	}
	if fs.NArg() != 2 {
		fmt.Fprintln(stderr, "usage: vigil-agent rules eval [--json] [--min-recall R] [--max-fp-rate F] DIR FILE")
		return 2
	}
	dir, file := fs.Arg(0), fs.Arg(1)
	libs, _, errs := match.LoadDir(dir)
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(stderr, e.Error())
		}
		return 1
	}
	if len(libs) == 0 {
		fmt.Fprintf(stderr, "no keyword libraries (*.txt) under %s\n", dir)
		return 1
	}
	m, err := match.Compile(libs...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	data, err := os.ReadFile(file)
	if err != nil {
		fmt.Fprintf(stderr, "reading evaluation set: %v\n", err)
		return 1
	}
	lines, errs := match.ParseEvalSet(file, data)
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(stderr, e.Error())
		}
		return 1
	}
	if len(lines) == 0 {
		fmt.Fprintf(stderr, "%s: no labelled lines\n", file)
		return 1
	}
	r := match.Evaluate(m, lines)
	if *asJSON {
		enc := json.NewEncoder(stdout)
		enc.SetIndent("", "  ")
		err = enc.Encode(r)
	} else {
		err = r.WriteText(stdout)
	}
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	rc := 0
	if r.Overall.Recall < *minRecall {
		fmt.Fprintf(stderr, "overall recall %.3f is below %.3f\n", r.Overall.Recall, *minRecall)
		rc = 1
	}
	if r.Overall.FPRate > *maxFP {
		fmt.Fprintf(stderr, "false-positive rate %.3f is above %.3f\n", r.Overall.FPRate, *maxFP)
		rc = 1
	}
	return rc
}

func rulesTest(args []string, stdin io.Reader, stdout, stderr io.Writer) int {
	if len(args) != 1 {
		fmt.Fprintln(stderr, "usage: vigil-agent rules test DIR < lines")
		return 2
	}
	libs, _, errs := match.LoadDir(args[0])
	if len(errs) > 0 {
		for _, e := range errs {
			fmt.Fprintln(stderr, e.Error())
		}
		return 1
	}
	if len(libs) == 0 {
		fmt.Fprintf(stderr, "no keyword libraries (*.txt) under %s\n", args[0])
		return 1
	}
	m, err := match.Compile(libs...)
	if err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	type jm struct {
		RuleID   string `json:"rule_id"`
		Category string `json:"category"`
		Severity string `json:"severity"`
		Term     string `json:"term"`
		Start    int    `json:"start"`
		End      int    `json:"end"`
	}
	bw := bufio.NewWriter(stdout)
	defer bw.Flush()
	enc := json.NewEncoder(bw)
	sc := bufio.NewScanner(stdin)
	sc.Buffer(make([]byte, 64<<10), 16<<20)
	var buf []match.Match
	for sc.Scan() {
		text := sc.Text()
		buf = m.FindAppend(buf[:0], text)
		out := make([]jm, 0, len(buf))
		for _, x := range buf {
			out = append(out, jm{x.RuleID, x.Category, x.Severity.String(), x.Term, x.Start, x.End})
		}
		enc.Encode(struct {
			Text    string `json:"text"`
			Matches []jm   `json:"matches"`
		}{text, out})
	}
	if err := sc.Err(); err != nil {
		fmt.Fprintln(stderr, err)
		return 1
	}
	return 0
}
