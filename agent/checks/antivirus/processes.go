package antivirus

import (
	"context"
	"sort"
	"strings"

	"github.com/shirou/gopsutil/v3/process"
)

// knownDaemon maps a process name to the product it belongs to. A product
// recognised this way is "running" (its daemon is up); it reports neither
// real-time state nor signature age, so those count as unknown (see the
// allow_unknown_signature_age param).
type knownDaemon struct {
	Process string
	Product string
}

// linuxDaemons are the Linux antivirus daemons recognised by process name.
var linuxDaemons = []knownDaemon{
	{"wdavdaemon", "Microsoft Defender for Endpoint"},
	{"falcon-sensor", "CrowdStrike Falcon"},
	{"sophos_threat_detector", "Sophos Protection for Linux"},
	{"savd", "Sophos Anti-Virus"},
	{"esets_daemon", "ESET Endpoint Antivirus"},
	{"esets", "ESET Endpoint Antivirus"},
	{"bdsecd", "Bitdefender GravityZone"},
	{"sentinelone-agent", "SentinelOne"},
}

// darwinDaemons are the macOS antivirus daemons recognised by process name.
var darwinDaemons = []knownDaemon{
	{"wdavdaemon", "Microsoft Defender for Endpoint"},
	{"com.crowdstrike.falcon.Agent", "CrowdStrike Falcon"},
	{"SophosScanD", "Sophos Anti-Virus"},
	{"esets_daemon", "ESET Endpoint Antivirus"},
	{"RTProtectionDaemon", "Malwarebytes"},
	{"sentineld", "SentinelOne"},
}

// linuxCommLen: Linux truncates a process's comm name to 15 bytes.
const linuxCommLen = 15

// matchDaemons returns one Product per product whose daemon is among
// names, in the order of known. Names truncated to 15 bytes (Linux comm)
// match the longer known name.
func matchDaemons(names []string, known []knownDaemon) []Product {
	running := map[string]bool{}
	for _, n := range names {
		running[n] = true
	}
	var out []Product
	seen := map[string]bool{}
	for _, k := range known {
		proc := k.Process
		if !running[proc] && !(len(proc) > linuxCommLen && running[proc[:linuxCommLen]]) {
			continue
		}
		if seen[k.Product] {
			continue
		}
		seen[k.Product] = true
		out = append(out, Product{
			Name:    k.Product,
			Source:  "process",
			Running: true,
			State:   "process " + proc + " running",
			Extra:   map[string]any{"process": proc},
		})
	}
	return out
}

// processNames lists the names of running processes (gopsutil), sorted
// and without duplicates. Processes that vanish while being read are
// skipped.
func processNames(ctx context.Context) ([]string, error) {
	procs, err := process.ProcessesWithContext(ctx)
	if err != nil {
		return nil, err
	}
	set := map[string]bool{}
	for _, p := range procs {
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		n, err := p.NameWithContext(ctx)
		if err != nil || n == "" {
			continue
		}
		set[strings.TrimSpace(n)] = true
	}
	out := make([]string, 0, len(set))
	for n := range set {
		out = append(out, n)
	}
	sort.Strings(out)
	return out, nil
}
