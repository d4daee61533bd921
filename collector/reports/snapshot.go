package reports

import (
	"context"
	"fmt"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// DeviceStatus is a device as the reports see it: the store's record, and
// what the console judged of it when the snapshot was taken.
type DeviceStatus struct {
	Device    store.Device
	Connected bool
	// Compliance is each posture check's "pass", "fail" or "unknown".
	Compliance map[string]string
}

// Snapshot is everything a report is built from, read at one time.
type Snapshot struct {
	Now        time.Time
	Alerts     []store.Alert
	Exclusions []store.Exclusion
	Devices    []DeviceStatus
	// Reviews are the DfE annual reviews, for the monitoring report's
	// reminder when one is due.
	Reviews []store.DFEReview
}

// Judge says whether a device is connected and how it stands on each
// posture check; the console owns that judgement (its fleet list shows the
// same), the reports only print it.
type Judge func(store.Device) (DeviceStatus, error)

// Store is what a snapshot reads (*store.Store is one).
type Store interface {
	ListAlerts(ctx context.Context, q store.AlertScan, fn func(*store.Alert) bool) ([]byte, error)
	Exclusions() ([]store.Exclusion, error)
	DFEReviews() ([]store.DFEReview, error)
	Devices() []store.Device
}

// Load reads a snapshot for reports over alerts observed from `from`: the
// alerts (with their review state), every exclusion and every device.
func Load(ctx context.Context, st Store, now, from time.Time, judge Judge) (Snapshot, error) {
	s := Snapshot{Now: now}
	_, err := st.ListAlerts(ctx, store.AlertScan{From: from}, func(a *store.Alert) bool {
		s.Alerts = append(s.Alerts, store.Alert{Finding: a.Finding, State: a.State})
		return ctx.Err() == nil
	})
	if err == nil {
		err = ctx.Err()
	}
	if err != nil {
		return Snapshot{}, fmt.Errorf("reports: read alerts: %w", err)
	}
	if s.Exclusions, err = st.Exclusions(); err != nil {
		return Snapshot{}, fmt.Errorf("reports: read exclusions: %w", err)
	}
	if s.Reviews, err = st.DFEReviews(); err != nil {
		return Snapshot{}, fmt.Errorf("reports: read reviews: %w", err)
	}
	for _, d := range st.Devices() {
		ds, err := judge(d)
		if err != nil {
			return Snapshot{}, fmt.Errorf("reports: judge device %s: %w", d.DeviceID, err)
		}
		s.Devices = append(s.Devices, ds)
	}
	return s, nil
}
