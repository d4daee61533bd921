// Package removable is the removable-media check (rule kind "removable").
//
// School policy (seed 002, Appendix 2, the KS2 acceptable use agreement):
// "I will always ask for permission from a teacher before using a personal
// memory stick or digital storage device that I have brought from home".
// The check reports removable storage being mounted (and optionally
// removed) so staff can follow up; school-issued sticks can be
// allow-listed by serial, vendor or model.
//
// Sources: /proc/self/mountinfo and sysfs on Linux, drive letters on
// Windows, /Volumes and diskutil on macOS. See docs/checks/removable.md.
package removable

import (
	"context"
	"fmt"
	"log/slog"
	"path"
	"slices"
	"strings"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

// Check implements checks.Runner for the "removable" kind.
type Check struct {
	log *slog.Logger
}

// New returns the check; log receives what cannot be recorded as a finding
// (a failed Emit, retried).
func New(log *slog.Logger) Check { return Check{log: log} }

func (c Check) logger() *slog.Logger {
	if c.log == nil {
		return slog.Default()
	}
	return c.log
}

var _ checks.Runner = Check{}

// Kind implements checks.Check.
func (Check) Kind() string { return "removable" }

// DefaultInterval implements checks.Poller: how often a scheduled Poll
// lists the mounted media. In run mode mounts are watched continuously
// (about once a second, or on the kernel's mount-change event on Linux).
func (Check) DefaultInterval() time.Duration { return 15 * time.Minute }

// AllowEntry allow-lists school-issued media. Every field given must
// match (shell globs, case-insensitive); reason is required.
type AllowEntry struct {
	Serial string `yaml:"serial"`
	Vendor string `yaml:"vendor"`
	Model  string `yaml:"model"`
	Reason string `yaml:"reason"`
}

// Params are the rule's params.
type Params struct {
	Allow         []AllowEntry `yaml:"allow"`
	ReportRemoval bool         `yaml:"report_removal"`
}

// ValidateParams implements checks.Check.
func (Check) ValidateParams(params *yaml.Node) error {
	_, err := parseParams(params)
	return err
}

func parseParams(n *yaml.Node) (Params, error) {
	var p Params
	if n == nil {
		return p, nil
	}
	var allowNode *yaml.Node
	if n.Kind == yaml.MappingNode {
		for i := 0; i+1 < len(n.Content); i += 2 {
			k, v := n.Content[i], n.Content[i+1]
			switch k.Value {
			case "report_removal":
				if v.Kind != yaml.ScalarNode || v.ShortTag() != "!!bool" {
					return p, checks.ParamError(v, "report_removal must be true or false")
				}
			case "allow":
				if v.Kind != yaml.SequenceNode && !(v.Kind == yaml.ScalarNode && v.ShortTag() == "!!null") {
					return p, checks.ParamError(v, "allow must be a list of {serial, vendor, model, reason}")
				}
				allowNode = v
				for _, item := range v.Content {
					if item.Kind != yaml.MappingNode {
						return p, checks.ParamError(item, "allow entries must be mappings with serial, vendor, model and reason")
					}
					for j := 0; j+1 < len(item.Content); j += 2 {
						if iv := item.Content[j+1]; iv.Kind != yaml.ScalarNode || iv.ShortTag() == "!!null" {
							return p, checks.ParamError(iv, "%s must be a string", item.Content[j].Value)
						}
					}
				}
			}
		}
	}
	if err := checks.DecodeParams(n, &p); err != nil {
		return p, err
	}
	for i, e := range p.Allow {
		item := allowNode.Content[i]
		if e.Serial == "" && e.Vendor == "" && e.Model == "" {
			return p, checks.ParamError(item, "allow entry needs at least one of serial, vendor, model")
		}
		if strings.TrimSpace(e.Reason) == "" {
			return p, checks.ParamError(item, "allow entry needs a reason (why this media is permitted, e.g. \"school-issued exam stick\")")
		}
		for j := 0; j+1 < len(item.Content); j += 2 {
			k, v := item.Content[j], item.Content[j+1]
			if k.Value == "reason" {
				continue
			}
			if _, err := path.Match(strings.ToLower(v.Value), ""); err != nil {
				return p, checks.ParamError(v, "bad glob %q for %s: %v", v.Value, k.Value, err)
			}
		}
	}
	return p, nil
}

// Medium is one mounted removable filesystem.
type Medium struct {
	Device     string // sdb1, disk4s1, E:
	Vendor     string // SCSI/USB vendor ("SanDisk")
	Model      string // model or product ("Ultra")
	Serial     string // hardware serial (USB iSerial, SD CID serial); may be empty
	Label      string
	SizeBytes  uint64
	FSType     string
	MountPoint string
	Bus        string // usb, mmc, ata, firewire, ...
	HWID       string // e.g. USB vendor:product "0781:5581"
	Part       string // partition number, "" for a whole-disk filesystem
	// AltVendor/AltModel are a second spelling (USB manufacturer/product
	// strings next to the SCSI inquiry ones) for allow-list matching.
	AltVendor, AltModel string
	VolumeID            string // filesystem UUID / volume serial, for the key when there is no serial
}

// mountID identifies a mount for insert/remove diffing.
func (m Medium) mountID() string { return m.Device + "\x00" + m.MountPoint }

// Key is the event deduplication key: stable across device renames
// (sdb1 today, sdc1 tomorrow) when the hardware has a serial.
func (m Medium) Key() string {
	var parts []string
	if m.Bus != "" || m.HWID != "" {
		parts = append(parts, strings.Trim(m.Bus+":"+m.HWID, ":"))
	}
	switch {
	case m.Serial != "":
		parts = append(parts, m.Serial)
	case m.VolumeID != "":
		parts = append(parts, "volume="+m.VolumeID)
	case m.Label != "":
		parts = append(parts, "label="+m.Label)
	default:
		parts = append(parts, m.Device)
	}
	if m.Part != "" {
		parts = append(parts, m.Part)
	}
	return strings.Join(parts, "/")
}

// describe is "SanDisk Ultra 32 GB (sdb1, label KEYS)".
func (m Medium) describe() string {
	var name []string
	if m.Vendor != "" {
		name = append(name, m.Vendor)
	}
	if m.Model != "" && !strings.EqualFold(m.Model, m.Vendor) {
		name = append(name, m.Model)
	}
	if m.SizeBytes > 0 {
		name = append(name, humanSize(m.SizeBytes))
	}
	if len(name) == 0 {
		name = append(name, "unknown device")
	}
	paren := m.Device
	if m.Label != "" {
		paren += ", label " + m.Label
	}
	return strings.Join(name, " ") + " (" + paren + ")"
}

// humanSize uses decimal units, as storage is sold.
func humanSize(b uint64) string {
	units := []string{"B", "kB", "MB", "GB", "TB", "PB"}
	f := float64(b)
	i := 0
	for f >= 1000 && i < len(units)-1 {
		f /= 1000
		i++
	}
	if f >= 10 || i == 0 {
		return fmt.Sprintf("%.0f %s", f, units[i])
	}
	return fmt.Sprintf("%.1f %s", f, units[i])
}

func (m Medium) details(event string) map[string]any {
	d := map[string]any{
		"event":       event,
		"device":      m.Device,
		"vendor":      m.Vendor,
		"model":       m.Model,
		"serial":      m.Serial,
		"label":       m.Label,
		"size_bytes":  float64(m.SizeBytes), // structpb numbers are float64
		"fs_type":     m.FSType,
		"mount_point": m.MountPoint,
		"bus":         m.Bus,
	}
	if m.HWID != "" {
		d["hardware_id"] = m.HWID
	}
	return d
}

// allowed returns the matching allow entry's reason.
func allowed(p Params, m Medium) (string, bool) {
	for _, e := range p.Allow {
		if globMatch(e.Serial, m.Serial) && globMatch(e.Vendor, m.Vendor, m.AltVendor) && globMatch(e.Model, m.Model, m.AltModel) {
			return e.Reason, true
		}
	}
	return "", false
}

// globMatch: an empty pattern matches anything; otherwise any non-empty
// value must match (case-insensitive, surrounding spaces ignored).
func globMatch(pattern string, values ...string) bool {
	if pattern == "" {
		return true
	}
	pattern = strings.ToLower(strings.TrimSpace(pattern))
	for _, v := range values {
		v = strings.ToLower(strings.TrimSpace(v))
		if v == "" {
			continue
		}
		if ok, _ := path.Match(pattern, v); ok {
			return true
		}
	}
	return false
}

func observe(m Medium, event string) checks.Observation {
	o := checks.Observation{Key: m.Key(), Details: m.details(event)}
	switch event {
	case "inserted":
		o.Message = fmt.Sprintf("removable storage inserted: %s mounted at %s", m.describe(), m.MountPoint)
	case "present":
		o.Message = fmt.Sprintf("removable storage mounted: %s at %s", m.describe(), m.MountPoint)
	case "removed":
		o.Key += "#removed" // not deduplicated against the insertion
		o.Message = fmt.Sprintf("removable storage removed: %s from %s", m.describe(), m.MountPoint)
	}
	return o
}

// source lists mounted removable media for one platform.
type source interface {
	// List returns the mounted removable media.
	List(ctx context.Context) ([]Medium, error)
	// Wait returns when the mounts may have changed (a kernel event, or
	// the poll interval passing) or ctx ends.
	Wait(ctx context.Context)
	// Close releases what the source holds.
	Close()
}

// Poll implements checks.Poller: one observation per mounted removable
// medium that no allow entry covers.
func (Check) Poll(ctx context.Context, rule *rules.Rule, emit checks.Emit) error {
	p, err := parseParams(rule.Params)
	if err != nil {
		return err
	}
	src, err := newSource()
	if err != nil {
		return err
	}
	defer src.Close()
	return poll(ctx, rule, p, src, emit)
}

func poll(ctx context.Context, rule *rules.Rule, p Params, src source, emit checks.Emit) error {
	media, err := src.List(ctx)
	if err != nil {
		return err
	}
	var obs []checks.Observation
	for _, m := range media {
		if _, ok := allowed(p, m); !ok {
			obs = append(obs, observe(m, "present"))
		}
	}
	if len(obs) == 0 {
		return nil
	}
	_, _, err = emit(ctx, rule, obs...)
	return err
}

// Run implements checks.Runner. Media already mounted when Run starts are
// reported as present (the engine's dedupe window absorbs restarts: keys
// are stable); later mounts as inserted; unmounts as removed when a rule
// asks for it.
func (c Check) Run(ctx context.Context, rs []*rules.Rule, emit checks.Emit) error {
	src, err := newSource()
	if err != nil {
		return err
	}
	defer src.Close()
	return run(ctx, rs, emit, src, c.logger())
}

// emitRetry is how soon Run tries again to record observations whose Emit
// failed (the spool's disk was full), when no mount change comes first.
var emitRetry = 30 * time.Second

// maxUnsent bounds the observations a rule keeps for a retry; an insertion
// storm during a long spool outage keeps the newest.
const maxUnsent = 256

func run(ctx context.Context, rs []*rules.Rule, emit checks.Emit, src source, log *slog.Logger) error {
	type ruleState struct {
		rule   *rules.Rule
		params Params
		errMsg string
		// unsent: observations an Emit failed to record, tried again with
		// the next round's (an insertion seen once is never seen again).
		unsent []checks.Observation
	}
	var states []*ruleState
	for _, r := range rs {
		p, err := parseParams(r.Params)
		if err != nil {
			if _, _, eerr := emit(ctx, r, checks.Observation{Status: "error", Message: fmt.Sprintf("check removable: %v", err)}); eerr != nil && ctx.Err() == nil {
				log.Error("removable: record that a rule's params are unusable", "rule", r.ID, "params_err", err, "err", eerr)
			}
			continue
		}
		states = append(states, &ruleState{rule: r, params: p})
	}
	if len(states) == 0 {
		<-ctx.Done()
		return nil
	}
	var prev map[string]Medium // nil until the first successful list
	for ctx.Err() == nil {
		media, err := src.List(ctx)
		if ctx.Err() != nil {
			return nil
		}
		now := time.Now()
		if err != nil {
			msg := fmt.Sprintf("check removable failed: %v", err)
			for _, st := range states {
				if st.errMsg != msg && st.rule.ActiveAt(now) {
					if _, _, eerr := emit(ctx, st.rule, checks.Observation{Status: "error", Message: msg}); eerr != nil {
						// errMsg unchanged: the next round reports it again.
						log.Error("removable: record a listing failure", "rule", st.rule.ID, "list_err", err, "err", eerr)
						continue
					}
					st.errMsg = msg
				}
			}
		} else {
			cur := make(map[string]Medium, len(media))
			for _, m := range media {
				cur[m.mountID()] = m
			}
			for _, st := range states {
				st.errMsg = ""
				if !st.rule.ActiveAt(now) {
					continue
				}
				var obs []checks.Observation
				for _, m := range media {
					if _, seen := prev[m.mountID()]; seen {
						continue
					}
					if _, ok := allowed(st.params, m); ok {
						continue
					}
					ev := "inserted"
					if prev == nil {
						ev = "present"
					}
					obs = append(obs, observe(m, ev))
				}
				if st.params.ReportRemoval {
					for id, m := range prev {
						if _, still := cur[id]; still {
							continue
						}
						if _, ok := allowed(st.params, m); ok {
							continue
						}
						obs = append(obs, observe(m, "removed"))
					}
				}
				if len(st.unsent) > 0 {
					obs = append(st.unsent, obs...)
					st.unsent = nil
				}
				if len(obs) > 0 {
					if _, _, eerr := emit(ctx, st.rule, obs...); eerr != nil && ctx.Err() == nil {
						log.Error("removable: record media findings; retrying", "rule", st.rule.ID, "findings", len(obs), "retry_in", emitRetry, "err", eerr)
						st.unsent = obs[max(0, len(obs)-maxUnsent):]
					}
				}
			}
			prev = cur
		}
		wait(ctx, src, slices.ContainsFunc(states, func(st *ruleState) bool { return len(st.unsent) > 0 }))
	}
	return nil
}

// wait waits for the next mount change, or at most emitRetry when findings
// wait for a retry.
func wait(ctx context.Context, src source, retry bool) {
	if !retry {
		src.Wait(ctx)
		return
	}
	wctx, cancel := context.WithTimeout(ctx, emitRetry)
	defer cancel()
	src.Wait(wctx)
}
