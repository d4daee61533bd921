package metrics

import (
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// Scrape-time collectors: figures that already exist somewhere (the store,
// the device records, the listeners) are read when Prometheus asks rather
// than copied into gauges on every change.

type storeCollector struct {
	stats                                     func() (store.Stats, error)
	lsm, vlog, free, size, depth, cap, broken *prometheus.Desc
}

// NewStoreCollector reports the store's size, its filesystem's free space
// and the committer's queue.
func NewStoreCollector(stats func() (store.Stats, error)) prometheus.Collector {
	d := func(name, help string) *prometheus.Desc { return prometheus.NewDesc(name, help, nil, nil) }
	return &storeCollector{
		stats: stats,
		lsm:   d("vigil_store_lsm_bytes", "Size of Badger's LSM tree (keys and small values) on disk."),
		vlog:  d("vigil_store_vlog_bytes", "Size of Badger's value log on disk."),
		free:  d("vigil_store_disk_free_bytes", "Free bytes on the store's filesystem."),
		size:  d("vigil_store_disk_size_bytes", "Size of the store's filesystem."),
		depth: d("vigil_store_commit_queue_depth", "Finding batches waiting for the group committer."),
		cap:   d("vigil_store_commit_queue_capacity", "Batches the commit queue holds before ingest is refused with RESOURCE_EXHAUSTED."),
		broken: d("vigil_store_disk_stats_error",
			"1 when the store's filesystem could not be measured (free/size then read 0)."),
	}
}

func (c *storeCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.lsm, c.vlog, c.free, c.size, c.depth, c.cap, c.broken} {
		ch <- d
	}
}

func (c *storeCollector) Collect(ch chan<- prometheus.Metric) {
	st, err := c.stats()
	g := func(d *prometheus.Desc, v float64) { ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v) }
	g(c.lsm, float64(st.LSMBytes))
	g(c.vlog, float64(st.VlogBytes))
	g(c.free, float64(st.DiskFreeBytes))
	g(c.size, float64(st.DiskSizeBytes))
	g(c.depth, float64(st.QueueDepth))
	g(c.cap, float64(st.QueueCapacity))
	broken := 0.0
	if err != nil {
		broken = 1
	}
	g(c.broken, broken)
}

// FleetSource is what the fleet collector reads: every device record, and
// the live streams per group.
type FleetSource struct {
	Devices          func() []store.Device
	ConnectedByGroup func() map[string]int
	Now              func() time.Time
}

type fleetCollector struct {
	src                                  FleetSource
	connected, devices, notSeen          *prometheus.Desc
	spool, spoolMax, spoolBytes, withErr *prometheus.Desc
	dropped, rejected, writeFailures     *prometheus.Desc
	windows                              []window
}

// window is a "not seen for" threshold of vigil_devices_not_seen.
type window struct {
	label string
	d     time.Duration
}

// NewFleetCollector reports the fleet per device group: connections,
// devices not heard from, and the agent-side figures from heartbeats
// (spool, dropped, rejected, spool write failures, agents reporting an
// error), summed per group. Never per device or per person.
func NewFleetCollector(src FleetSource) prometheus.Collector {
	g := func(name, help string, extra ...string) *prometheus.Desc {
		return prometheus.NewDesc(name, help, append([]string{"group"}, extra...), nil)
	}
	return &fleetCollector{
		windows:    []window{{"15m", 15 * time.Minute}, {"24h", 24 * time.Hour}, {"7d", 7 * 24 * time.Hour}},
		src:        src,
		connected:  g("vigil_connected_agents", "Agents with a live stream, per group."),
		devices:    g("vigil_devices", "Enrolled devices per group, by state (active, revoked).", "state"),
		notSeen:    g("vigil_devices_not_seen", "Active devices whose last stream start or heartbeat is older than the window.", "window"),
		spool:      g("vigil_agent_spool_findings", "Findings waiting in agents' spools (sum over the group, from heartbeats)."),
		spoolMax:   g("vigil_agent_spool_findings_max", "The largest single agent spool in the group (from heartbeats)."),
		spoolBytes: g("vigil_agent_spool_bytes", "Bytes in agents' spools (sum over the group, from heartbeats)."),
		withErr:    g("vigil_agents_with_error", "Agents whose last heartbeat reported a local failure (last_error)."),
		dropped: g("vigil_agent_dropped_findings_total",
			"Findings agents lost before spooling (sum of heartbeat dropped_total over the group; drops when a device re-enrolls)."),
		rejected: g("vigil_agent_rejected_findings_total",
			"Findings the collector refused as invalid that agents set aside (sum of heartbeat rejected_total)."),
		writeFailures: g("vigil_agent_spool_write_failures_total",
			"Agents' spool write failures, e.g. disk full (sum of heartbeat spool_write_failures)."),
	}
}

func (c *fleetCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.connected, c.devices, c.notSeen, c.spool, c.spoolMax, c.spoolBytes,
		c.withErr, c.dropped, c.rejected, c.writeFailures} {
		ch <- d
	}
}

type groupFigures struct {
	active, revoked                int
	notSeen                        []int
	spool, spoolMax, spoolBytes    int64
	withErr                        int
	dropped, rejected, writeFailed uint64
}

func (c *fleetCollector) Collect(ch chan<- prometheus.Metric) {
	now := c.src.Now()
	groups := map[string]*groupFigures{}
	for _, d := range c.src.Devices() {
		g := groups[d.Group]
		if g == nil {
			g = &groupFigures{notSeen: make([]int, len(c.windows))}
			groups[d.Group] = g
		}
		if d.Revoked {
			g.revoked++
			continue
		}
		g.active++
		for i, w := range c.windows {
			if now.Sub(d.LastSeen) > w.d {
				g.notSeen[i]++
			}
		}
		g.spool += d.SpoolDepth
		g.spoolMax = max(g.spoolMax, d.SpoolDepth)
		g.spoolBytes += d.SpoolBytes
		if d.LastError != "" {
			g.withErr++
		}
		g.dropped += d.DroppedTotal
		g.rejected += d.RejectedTotal
		g.writeFailed += d.SpoolWriteFailures
	}
	connected := c.src.ConnectedByGroup()
	for grp := range connected {
		if groups[grp] == nil {
			groups[grp] = &groupFigures{notSeen: make([]int, len(c.windows))}
		}
	}
	gauge := func(d *prometheus.Desc, v float64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, labels...)
	}
	counter := func(d *prometheus.Desc, v uint64, grp string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), grp)
	}
	for grp, g := range groups {
		gauge(c.connected, float64(connected[grp]), grp)
		gauge(c.devices, float64(g.active), grp, "active")
		gauge(c.devices, float64(g.revoked), grp, "revoked")
		for i, w := range c.windows {
			gauge(c.notSeen, float64(g.notSeen[i]), grp, w.label)
		}
		gauge(c.spool, float64(g.spool), grp)
		gauge(c.spoolMax, float64(g.spoolMax), grp)
		gauge(c.spoolBytes, float64(g.spoolBytes), grp)
		gauge(c.withErr, float64(g.withErr), grp)
		counter(c.dropped, g.dropped, grp)
		counter(c.rejected, g.rejected, grp)
		counter(c.writeFailures, g.writeFailed, grp)
	}
}

// ConnSource is one listener's connection figures.
type ConnSource struct {
	Name  string // grpc, http
	Stats func() (open, unauthenticated int)
	Limit func() int
	// OldestUnauthenticated, if set, is the age of the oldest connection
	// not yet authenticated.
	OldestUnauthenticated func() time.Duration
}

type connCollector struct {
	srcs                []ConnSource
	open, limit, oldest *prometheus.Desc
}

// NewConnCollector reports the connections each listener holds and its cap.
func NewConnCollector(srcs ...ConnSource) prometheus.Collector {
	return &connCollector{
		srcs: srcs,
		open: prometheus.NewDesc("vigil_open_connections", "Connections held by a listener, by state (authenticated, unauthenticated).",
			[]string{"listener", "state"}, nil),
		limit: prometheus.NewDesc("vigil_connection_limit", "A listener's total connection cap (from the file descriptor limit minus the store's reserve).",
			[]string{"listener"}, nil),
		oldest: prometheus.NewDesc("vigil_oldest_unauthenticated_connection_seconds",
			"Age of the oldest connection held without a verified client certificate; stays below the unauthenticated lifetime (60 s).",
			[]string{"listener"}, nil),
	}
}

func (c *connCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.open
	ch <- c.limit
	ch <- c.oldest
}

func (c *connCollector) Collect(ch chan<- prometheus.Metric) {
	for _, s := range c.srcs {
		open, unauth := s.Stats()
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(open-unauth), s.Name, "authenticated")
		ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(unauth), s.Name, "unauthenticated")
		ch <- prometheus.MustNewConstMetric(c.limit, prometheus.GaugeValue, float64(s.Limit()), s.Name)
		if s.OldestUnauthenticated != nil {
			ch <- prometheus.MustNewConstMetric(c.oldest, prometheus.GaugeValue, s.OldestUnauthenticated().Seconds(), s.Name)
		}
	}
}
