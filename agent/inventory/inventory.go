// Package inventory gathers what a headteacher's audit asks of a device:
// hardware, operating system, local accounts, installed software, the
// compliance state of every check and the agent's own health. Sources are
// gopsutil plus the OS's own records (platform files by suffix); the
// parsers are platform-independent (parse.go).
//
// Collection is bounded: one audit at a time, at low CPU priority where the
// OS allows, with capped lists and field lengths (what was left out is
// counted). A source that fails becomes a CollectionError in the answer;
// an audit never fails as a whole.
package inventory

import (
	"context"
	"fmt"
	"os"
	"runtime"
	"sort"
	"strings"
	"time"

	"github.com/shirou/gopsutil/v3/cpu"
	"github.com/shirou/gopsutil/v3/disk"
	"github.com/shirou/gopsutil/v3/host"
	"github.com/shirou/gopsutil/v3/mem"
	psnet "github.com/shirou/gopsutil/v3/net"
	"github.com/shirou/gopsutil/v3/process"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Limits bound one answer. Zero fields take the defaults.
type Limits struct {
	MaxSoftware int // default 3000 items
	MaxField    int // default 256 bytes per string
	MaxAccounts int // default 500
	MaxBytes    int // whole Inventory, encoded; default 1 MiB
}

func (l Limits) withDefaults() Limits {
	if l.MaxSoftware <= 0 {
		l.MaxSoftware = 3000
	}
	if l.MaxField <= 0 {
		l.MaxField = 256
	}
	if l.MaxAccounts <= 0 {
		l.MaxAccounts = 500
	}
	if l.MaxBytes <= 0 {
		l.MaxBytes = 1 << 20
	}
	return l
}

// Collector gathers inventories. The zero value works (with no compliance
// or health); the agent wires Compliance and Health from its engine and spool.
type Collector struct {
	Limits Limits
	// Compliance returns the current posture state of every check.
	Compliance func() []*vigilv1.ComplianceState
	// Health returns the agent's own health.
	Health func() *vigilv1.AgentHealth
	// Platform overrides the OS sources (tests); nil uses this OS's.
	Platform Platform

	slot chan struct{}
}

// Platform is the OS-specific part of a collection.
type Platform interface {
	// Hardware fills what gopsutil cannot tell (manufacturer, model, serial).
	Hardware(ctx context.Context, hw *vigilv1.Hardware) error
	Accounts(ctx context.Context) ([]*vigilv1.LocalAccount, error)
	// Software lists installed software; each failing source is one error.
	Software(ctx context.Context) ([]*vigilv1.SoftwareItem, []*vigilv1.CollectionError)
	// OSBuild names the OS build when gopsutil does not.
	OSBuild(ctx context.Context) string
}

// Collect gathers one inventory. Audits run one at a time: a second waits
// for the first (or for ctx).
func (c *Collector) Collect(ctx context.Context) (*vigilv1.Inventory, error) {
	if c.slot == nil {
		// Set up lazily so the zero value works; the agent builds one
		// Collector at start, before any request can arrive.
		c.slot = make(chan struct{}, 1)
	}
	select {
	case c.slot <- struct{}{}:
	case <-ctx.Done():
		return nil, fmt.Errorf("waiting for the audit already running: %w", ctx.Err())
	}
	defer func() { <-c.slot }()
	done := make(chan *vigilv1.Inventory, 1)
	// On its own OS thread at low priority (lowPriority), which ends with
	// the goroutine so the agent's other work keeps its priority.
	go func() {
		runtime.LockOSThread()
		lowErr := lowPriority()
		inv := c.collect(ctx)
		if lowErr != nil {
			inv.Errors = append(inv.Errors, &vigilv1.CollectionError{Part: "priority", Error: lowErr.Error()})
		}
		done <- inv
		// No UnlockOSThread: the thread keeps its lowered priority and
		// exits with this goroutine.
	}()
	select {
	case inv := <-done:
		return inv, nil
	case <-ctx.Done():
		return nil, ctx.Err()
	}
}

func (c *Collector) collect(ctx context.Context) *vigilv1.Inventory {
	lim := c.Limits.withDefaults()
	start := time.Now()
	cpu0 := cpuTime()
	plat := c.Platform
	if plat == nil {
		plat = osPlatform{}
	}
	inv := &vigilv1.Inventory{CollectedAt: timestamppb.Now(), Hardware: &vigilv1.Hardware{}, Os: &vigilv1.OperatingSystem{}}
	fail := func(part string, err error) {
		if err != nil {
			inv.Errors = append(inv.Errors, &vigilv1.CollectionError{Part: part, Error: truncate(err.Error(), 1024)})
		}
	}
	c.hardware(ctx, plat, inv.Hardware, fail)
	c.os(ctx, plat, inv.Os, fail)

	accts, err := plat.Accounts(ctx)
	fail("accounts", err)
	if len(accts) > lim.MaxAccounts {
		fail("accounts", fmt.Errorf("%d accounts, only the first %d kept", len(accts), lim.MaxAccounts))
		accts = accts[:lim.MaxAccounts]
	}
	inv.Accounts = accts

	sw, errs := plat.Software(ctx)
	inv.Errors = append(inv.Errors, errs...)
	sort.Slice(sw, func(i, j int) bool {
		if sw[i].Name != sw[j].Name {
			return sw[i].Name < sw[j].Name
		}
		return sw[i].Version < sw[j].Version
	})
	if len(sw) > lim.MaxSoftware {
		inv.SoftwareOmitted = int32(len(sw) - lim.MaxSoftware)
		sw = sw[:lim.MaxSoftware]
	}
	inv.Software = sw

	if c.Compliance != nil {
		inv.Compliance = c.Compliance()
	}
	if c.Health != nil {
		inv.Agent = c.Health()
	}
	bound(inv, lim)
	inv.WallMicros = time.Since(start).Microseconds()
	inv.CpuMicros = (cpuTime() - cpu0).Microseconds()
	return inv
}

func (c *Collector) hardware(ctx context.Context, plat Platform, hw *vigilv1.Hardware, fail func(string, error)) {
	fail("hardware", plat.Hardware(ctx, hw))
	if infos, err := cpu.InfoWithContext(ctx); err != nil {
		fail("cpu", err)
	} else if len(infos) > 0 && hw.CpuModel == "" {
		hw.CpuModel = strings.TrimSpace(infos[0].ModelName)
	}
	if n, err := cpu.CountsWithContext(ctx, true); err != nil {
		fail("cpu", err)
	} else {
		hw.CpuCores = int32(n)
	}
	if vm, err := mem.VirtualMemoryWithContext(ctx); err != nil {
		fail("memory", err)
	} else {
		hw.MemoryBytes = vm.Total
	}
	parts, err := disk.PartitionsWithContext(ctx, false)
	fail("disks", err)
	seen := map[string]bool{}
	for _, p := range parts {
		if seen[p.Device] || len(hw.Disks) >= 64 {
			continue
		}
		u, err := disk.UsageWithContext(ctx, p.Mountpoint)
		if err != nil || u.Total == 0 {
			continue
		}
		seen[p.Device] = true
		hw.Disks = append(hw.Disks, &vigilv1.Disk{Mountpoint: p.Mountpoint, Device: p.Device, Fstype: p.Fstype, TotalBytes: u.Total, FreeBytes: u.Free})
	}
	ifs, err := psnet.InterfacesWithContext(ctx)
	fail("network", err)
	for _, i := range ifs {
		if len(hw.Interfaces) >= 64 {
			break
		}
		ni := &vigilv1.NetworkInterface{Name: i.Name, Mac: i.HardwareAddr}
		for _, a := range i.Addrs {
			if len(ni.Addresses) < 16 {
				ni.Addresses = append(ni.Addresses, a.Addr)
			}
		}
		hw.Interfaces = append(hw.Interfaces, ni)
	}
}

func (c *Collector) os(ctx context.Context, plat Platform, o *vigilv1.OperatingSystem, fail func(string, error)) {
	hi, err := host.InfoWithContext(ctx)
	if err != nil {
		fail("os", err)
	}
	if hi != nil {
		o.Name, o.Version, o.Kernel, o.Arch, o.Hostname = hi.Platform, hi.PlatformVersion, hi.KernelVersion, hi.KernelArch, hi.Hostname
		if hi.BootTime > 0 {
			o.LastBoot = timestamppb.New(time.Unix(int64(hi.BootTime), 0))
		}
	}
	if o.Arch == "" {
		o.Arch = runtime.GOARCH
	}
	if o.Hostname == "" {
		o.Hostname, _ = os.Hostname()
	}
	o.Build = plat.OSBuild(ctx)
}

// bound truncates every string to MaxField and, if the whole answer is
// still over MaxBytes, drops software from the end (counted as omitted).
func bound(inv *vigilv1.Inventory, lim Limits) {
	t := func(s *string) {
		if len(*s) > lim.MaxField {
			*s = truncate(*s, lim.MaxField)
		}
		*s = strings.ToValidUTF8(*s, "\uFFFD")
	}
	for _, s := range inv.Software {
		t(&s.Name)
		t(&s.Version)
		t(&s.Publisher)
		t(&s.InstallDate)
	}
	for _, a := range inv.Accounts {
		t(&a.Name)
		t(&a.Uid)
	}
	for _, e := range inv.Errors {
		t(&e.Error)
	}
	hw, o := inv.Hardware, inv.Os
	for _, p := range []*string{&hw.Manufacturer, &hw.Model, &hw.Serial, &hw.CpuModel, &o.Name, &o.Version, &o.Build, &o.Kernel, &o.Hostname} {
		t(p)
	}
	for _, d := range hw.Disks {
		t(&d.Mountpoint)
		t(&d.Device)
		t(&d.Fstype)
	}
	for _, n := range hw.Interfaces {
		t(&n.Name)
		t(&n.Mac)
		for i := range n.Addresses {
			t(&n.Addresses[i])
		}
	}
	for _, c := range inv.Compliance {
		t(&c.RuleId)
		t(&c.Check)
		t(&c.Key)
	}
	if a := inv.Agent; a != nil {
		t(&a.Version)
		t(&a.RulesHash)
	}
	for proto.Size(inv) > lim.MaxBytes && len(inv.Software) > 0 {
		drop := max(1, len(inv.Software)/10)
		inv.Software = inv.Software[:len(inv.Software)-drop]
		inv.SoftwareOmitted += int32(drop)
	}
	if inv.SoftwareOmitted > 0 {
		inv.Errors = append(inv.Errors, &vigilv1.CollectionError{Part: "software",
			Error: fmt.Sprintf("list truncated: %d more items not sent (limits: %d items, %d bytes)", inv.SoftwareOmitted, lim.MaxSoftware, lim.MaxBytes)})
	}
}

// cpuTime is this process's user+system CPU so far (children included
// where the OS reports them through gopsutil).
func cpuTime() time.Duration {
	p, err := process.NewProcess(int32(os.Getpid()))
	if err != nil {
		return 0
	}
	t, err := p.Times()
	if err != nil {
		return 0
	}
	return time.Duration((t.User + t.System) * float64(time.Second))
}
