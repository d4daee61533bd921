package metrics

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestFleetPerGroup: figures are summed per group, revoked devices are
// counted apart and excluded from the sums, and the not-seen windows count
// each device in every window it exceeds.
func TestFleetPerGroup(t *testing.T) {
	now := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	devs := []store.Device{
		{DeviceID: "d1", Group: "year-7", LastSeen: now.Add(-time.Minute), SpoolDepth: 5, DroppedTotal: 2, LastError: "disk full"},
		{DeviceID: "d2", Group: "year-7", LastSeen: now.Add(-30 * time.Hour), SpoolDepth: 9, RejectedTotal: 1},
		{DeviceID: "d3", Group: "year-7", LastSeen: now.Add(-30 * 24 * time.Hour), Revoked: true, SpoolDepth: 100},
		{DeviceID: "d4", Group: "staff", LastSeen: now.Add(-20 * time.Minute), SpoolWriteFailures: 4},
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister(NewFleetCollector(FleetSource{
		Devices: func() []store.Device { return devs }, Now: func() time.Time { return now },
		ConnectedByGroup: func() map[string]int { return map[string]int{"year-7": 1} },
	}))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]float64{}
	for _, f := range fams {
		for _, m := range f.Metric {
			var labels []string
			for _, l := range m.Label {
				labels = append(labels, l.GetName()+"="+l.GetValue())
			}
			v := m.GetGauge().GetValue() + m.GetCounter().GetValue()
			got[f.GetName()+"{"+strings.Join(labels, ",")+"}"] = v
		}
	}
	for k, want := range map[string]float64{
		"vigil_connected_agents{group=year-7}":                1,
		"vigil_connected_agents{group=staff}":                 0,
		"vigil_devices{group=year-7,state=active}":            2,
		"vigil_devices{group=year-7,state=revoked}":           1,
		"vigil_devices_not_seen{group=year-7,window=15m}":     1,
		"vigil_devices_not_seen{group=year-7,window=24h}":     1,
		"vigil_devices_not_seen{group=year-7,window=7d}":      0,
		"vigil_devices_not_seen{group=staff,window=15m}":      1,
		"vigil_agent_spool_findings{group=year-7}":            14,
		"vigil_agent_spool_findings_max{group=year-7}":        9,
		"vigil_agent_dropped_findings_total{group=year-7}":    2,
		"vigil_agent_rejected_findings_total{group=year-7}":   1,
		"vigil_agent_spool_write_failures_total{group=staff}": 4,
		"vigil_agents_with_error{group=year-7}":               1,
		"vigil_agents_with_error{group=staff}":                0,
	} {
		if v, ok := got[k]; !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", k, v, ok, want)
		}
	}
	for k := range got {
		if strings.Contains(k, "d1") || strings.Contains(k, "disk full") {
			t.Errorf("series names a device or its error: %s", k)
		}
	}
}
