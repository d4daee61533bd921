// Package antivirus is the `antivirus` check: an antivirus product is
// present, its protection is running and its signatures are younger than
// the rule's limit (school policy: "Virus protection ... must be installed
// and current").
//
// Like node_exporter's collectors, the OS is behind a small interface
// (probe) with one implementation per platform, chosen by file suffix:
// ClamAV (clamd and its database headers) and known daemons by process name
// on Linux, Windows Security Center and Microsoft Defender over WMI on
// Windows, XProtect and known daemons on macOS. Everything that parses what
// the OS answers is platform-independent and tested on recorded fixtures in
// testdata. See docs/checks/antivirus.md.
package antivirus

import (
	"context"
	"errors"
	"fmt"
	"path"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

// Check is the antivirus rule kind. It is a posture check: each poll emits
// exactly one observation per rule, Status "pass" or "fail", Key "" (the
// device as a whole), with every product seen in Details.
type Check struct{}

var _ checks.Poller = Check{}

// Kind implements checks.Check.
func (Check) Kind() string { return "antivirus" }

// DefaultInterval implements checks.Poller.
func (Check) DefaultInterval() time.Duration { return time.Hour }

// Defaults for params.
const (
	DefaultMaxSignatureAge = 3 * 24 * time.Hour
	DefaultClamdSocket     = "/var/run/clamav/clamd.ctl" // Debian/Ubuntu clamav-daemon
	DefaultClamAVDBDir     = "/var/lib/clamav"

	// probeTimeout bounds one reading of the OS, inside the poll's own
	// deadline.
	probeTimeout = 30 * time.Second
)

// Params is the rule's params mapping.
type Params struct {
	// MaxSignatureAge: signatures older than this fail (default 3d).
	MaxSignatureAge *checks.Duration `yaml:"max_signature_age"`
	// RequireRealtime: the product's protection must be running and, where
	// the product reports it, real-time protection on (default true).
	RequireRealtime *bool `yaml:"require_realtime"`
	// Products lists accepted products: a product is accepted when its name
	// contains an entry, ignoring case. Empty accepts any recognised one.
	Products []string `yaml:"products"`
	// AllowUnknownSignatureAge: a product that reports neither a signature
	// date nor an out-of-date flag (one recognised only by its process)
	// counts as current (default true).
	AllowUnknownSignatureAge *bool `yaml:"allow_unknown_signature_age"`
	// ClamdSocket (Linux): clamd's LocalSocket path, or tcp://host:port
	// for a TCPSocket.
	ClamdSocket string `yaml:"clamd_socket"`
	// ClamAVDBDir (Linux): clamd's DatabaseDirectory.
	ClamAVDBDir string `yaml:"clamav_db_dir"`
}

// settings are validated params with defaults applied.
type settings struct {
	maxAge          time.Duration
	requireRealtime bool
	products        []string
	allowUnknownAge bool
	clamdSocket     string
	clamDBDir       string
}

const maxProducts = 64

func parseParams(params *yaml.Node) (settings, error) {
	// checks.DecodeParams reports a bad duration at the params mapping
	// (yaml.v3 flattens an UnmarshalYAML error); check it here first so
	// the error points at the value.
	if n := valueNode(params, "max_signature_age"); n != params && n.Kind == yaml.ScalarNode {
		if _, err := checks.ParseDuration(n.Value); err != nil {
			return settings{}, checks.ParamError(n, "max_signature_age: %v", err)
		}
	}
	var p Params
	if err := checks.DecodeParams(params, &p); err != nil {
		return settings{}, err
	}
	s := settings{
		maxAge:          DefaultMaxSignatureAge,
		requireRealtime: true,
		allowUnknownAge: true,
		clamdSocket:     DefaultClamdSocket,
		clamDBDir:       DefaultClamAVDBDir,
	}
	if p.MaxSignatureAge != nil {
		d := time.Duration(*p.MaxSignatureAge)
		if d < time.Hour || d > 365*24*time.Hour {
			return settings{}, checks.ParamError(valueNode(params, "max_signature_age"), "max_signature_age %s out of range (1h .. 365d)", fmtLimit(d))
		}
		s.maxAge = d
	}
	if p.RequireRealtime != nil {
		s.requireRealtime = *p.RequireRealtime
	}
	if p.AllowUnknownSignatureAge != nil {
		s.allowUnknownAge = *p.AllowUnknownSignatureAge
	}
	if len(p.Products) > maxProducts {
		return settings{}, checks.ParamError(valueNode(params, "products"), "too many products (%d, at most %d)", len(p.Products), maxProducts)
	}
	for i, name := range p.Products {
		name = strings.TrimSpace(name)
		if name == "" || len(name) > 128 {
			n := valueNode(params, "products")
			if n != nil && i < len(n.Content) {
				n = n.Content[i]
			}
			return settings{}, checks.ParamError(n, "products: entry %d must be a product name of 1 to 128 characters", i+1)
		}
		s.products = append(s.products, name)
	}
	if p.ClamdSocket != "" {
		if !validSocket(p.ClamdSocket) {
			return settings{}, checks.ParamError(valueNode(params, "clamd_socket"), "clamd_socket %q must be an absolute socket path or tcp://host:port", p.ClamdSocket)
		}
		s.clamdSocket = p.ClamdSocket
	}
	if p.ClamAVDBDir != "" {
		if !path.IsAbs(p.ClamAVDBDir) {
			return settings{}, checks.ParamError(valueNode(params, "clamav_db_dir"), "clamav_db_dir %q must be an absolute path", p.ClamAVDBDir)
		}
		s.clamDBDir = p.ClamAVDBDir
	}
	return s, nil
}

func validSocket(s string) bool {
	if hostport, ok := strings.CutPrefix(s, "tcp://"); ok {
		host, port, found := strings.Cut(hostport, ":")
		return found && host != "" && port != "" && !strings.ContainsAny(port, ":/")
	}
	return path.IsAbs(s)
}

// valueNode is the value of key in the params mapping (the mapping itself
// when absent), for positioned errors.
func valueNode(params *yaml.Node, key string) *yaml.Node {
	if params == nil {
		return &yaml.Node{}
	}
	for i := 0; i+1 < len(params.Content); i += 2 {
		if params.Content[i].Value == key {
			return params.Content[i+1]
		}
	}
	return params
}

// ValidateParams implements checks.Check.
func (Check) ValidateParams(params *yaml.Node) error {
	_, err := parseParams(params)
	return err
}

// Poll implements checks.Poller: one observation per rule. A probe that
// fails, times out or panics gives a "fail" observation naming the error.
func (Check) Poll(ctx context.Context, rule *rules.Rule, emit checks.Emit) error {
	s, err := parseParams(rule.Params)
	if err != nil {
		return err
	}
	obs := observe(ctx, newProbe(s), s, time.Now)
	_, _, err = emit(ctx, rule, obs)
	return err
}

// observe runs the probe under a timeout and evaluates what it found.
func observe(ctx context.Context, pr probe, s settings, now func() time.Time) (obs checks.Observation) {
	pctx, cancel := context.WithTimeout(ctx, probeTimeout)
	defer cancel()
	type result struct {
		products []Product
		err      error
	}
	ch := make(chan result, 1) // buffered: a probe stuck in the OS may finish after we gave up
	go func() {
		defer func() {
			if r := recover(); r != nil {
				ch <- result{err: panicError{r}}
			}
		}()
		ps, err := pr.Products(pctx)
		ch <- result{ps, err}
	}()
	var r result
	select {
	case r = <-ch:
	case <-pctx.Done():
		r.err = fmt.Errorf("timed out reading antivirus status: %w", pctx.Err())
	}
	defer func() {
		if p := recover(); p != nil {
			obs = checks.Observation{Status: "fail", Message: fmt.Sprintf("antivirus status could not be evaluated: %v", p)}
		}
	}()
	return evaluate(r.products, r.err, s, now())
}

// evaluate decides the rule's status from the products found. The device
// passes when at least one accepted product has no problem.
func evaluate(products []Product, probeErr error, s settings, now time.Time) checks.Observation {
	details := map[string]any{
		"max_signature_age": fmtLimit(s.maxAge),
		"require_realtime":  s.requireRealtime,
	}
	all := make([]any, 0, len(products))
	for _, p := range products {
		all = append(all, p.detail(now))
	}
	details["products"] = all
	if len(s.products) > 0 {
		acc := make([]any, len(s.products))
		for i, n := range s.products {
			acc[i] = n
		}
		details["accepted_products"] = acc
	}
	if probeErr != nil {
		details["probe_error"] = probeErr.Error()
	}
	fail := func(msg string, problems []string) checks.Observation {
		if len(problems) > 0 {
			list := make([]any, len(problems))
			for i, p := range problems {
				list[i] = p
			}
			details["problems"] = list
		}
		return checks.Observation{Status: "fail", Message: msg, Details: details}
	}

	if len(products) == 0 {
		msg := "no antivirus product found"
		if probeErr != nil {
			msg = "antivirus status could not be read: " + probeErr.Error()
			if errors.Is(probeErr, errNotSupported) {
				msg = probeErr.Error()
			}
		}
		return fail(msg, nil)
	}
	var accepted []Product
	for _, p := range products {
		if acceptedName(p.Name, s.products) {
			accepted = append(accepted, p)
		}
	}
	if len(accepted) == 0 {
		names := make([]string, len(products))
		for i, p := range products {
			names[i] = p.Name
		}
		return fail(fmt.Sprintf("no accepted antivirus product found (found %s; accepted: %s)",
			strings.Join(names, ", "), strings.Join(s.products, ", ")), nil)
	}
	var problems []string
	for _, p := range accepted {
		ps := productProblems(p, s, now)
		if len(ps) == 0 {
			details["passing_product"] = p.Name
			return checks.Observation{Status: "pass", Message: passMessage(p, now), Details: details}
		}
		problems = append(problems, ps...)
	}
	return fail(strings.Join(problems, "; "), problems)
}

func acceptedName(name string, accepted []string) bool {
	if len(accepted) == 0 {
		return true
	}
	for _, a := range accepted {
		if strings.Contains(strings.ToLower(name), strings.ToLower(a)) {
			return true
		}
	}
	return false
}

// productProblems lists, in plain English, why p does not satisfy s.
func productProblems(p Product, s settings, now time.Time) []string {
	var out []string
	if s.requireRealtime {
		switch {
		case !p.Running && p.State != "":
			out = append(out, fmt.Sprintf("%s protection is not running (%s)", p.Name, p.State))
		case !p.Running:
			out = append(out, fmt.Sprintf("%s protection is not running", p.Name))
		case p.Realtime != nil && !*p.Realtime:
			out = append(out, fmt.Sprintf("real-time protection is off in %s", p.Name))
		}
	}
	switch {
	case !p.SignatureDate.IsZero():
		if age := now.Sub(p.SignatureDate); age > s.maxAge {
			out = append(out, fmt.Sprintf("%s signatures are %s old (limit %s)", p.Name, humanAge(age), fmtLimit(s.maxAge)))
		}
	case p.OutOfDate == nil && !s.allowUnknownAge:
		out = append(out, fmt.Sprintf("%s does not report the age of its signatures", p.Name))
	}
	if p.OutOfDate != nil && *p.OutOfDate {
		out = append(out, fmt.Sprintf("%s reports its signatures are out of date", p.Name))
	}
	return out
}

func passMessage(p Product, now time.Time) string {
	name := p.Name
	if p.Version != "" {
		name += " " + p.Version
	}
	var b strings.Builder
	b.WriteString(name)
	if p.Running {
		b.WriteString(" is running")
	} else {
		b.WriteString(" is installed")
	}
	switch {
	case !p.SignatureDate.IsZero():
		age := max(now.Sub(p.SignatureDate), 0)
		fmt.Fprintf(&b, ", signatures %s old", humanAge(age))
		if p.SignatureVersion != "" {
			fmt.Fprintf(&b, " (version %s)", p.SignatureVersion)
		}
	case p.OutOfDate != nil:
		b.WriteString(", signatures up to date by its own report")
	default:
		b.WriteString(" (signature age not reported)")
	}
	return b.String()
}

// humanAge renders an age the way a coordinator reads it: "10 days",
// "47 hours", "12 minutes" (whole units, rounded down).
func humanAge(d time.Duration) string {
	plural := func(n int64, unit string) string {
		if n == 1 {
			return "1 " + unit
		}
		return fmt.Sprintf("%d %ss", n, unit)
	}
	switch {
	case d >= 48*time.Hour:
		return plural(int64(d/(24*time.Hour)), "day")
	case d >= time.Hour:
		return plural(int64(d/time.Hour), "hour")
	default:
		return plural(int64(d/time.Minute), "minute")
	}
}

// fmtLimit renders a limit as written in rules: "3d", "12h", "90m".
func fmtLimit(d time.Duration) string {
	if d > 0 && d%(24*time.Hour) == 0 {
		return fmt.Sprintf("%dd", d/(24*time.Hour))
	}
	s := d.String()
	if strings.HasSuffix(s, "m0s") {
		s = strings.TrimSuffix(s, "0s")
	}
	if strings.HasSuffix(s, "h0m") {
		s = strings.TrimSuffix(s, "0m")
	}
	return s
}

// panicError is a recovered panic from the OS layer.
type panicError struct{ v any }

func (e panicError) Error() string { return fmt.Sprintf("probe panicked: %v", e.v) }

// errNotSupported is returned by the probe on operating systems the check
// does not cover.
var errNotSupported = errors.New("the antivirus check is not supported on this operating system")
