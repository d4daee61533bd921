package fleetcheck

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestCloseInterrupted: a check the collector was running when it stopped
// is closed at the next start, its unsettled devices recorded as not
// answered and the settled ones kept; completed checks are left alone.
func TestCloseInterrupted(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	now := time.Date(2026, 12, 3, 10, 0, 0, 0, time.UTC)
	done := store.FleetCheck{ID: "fc-done", RequestedAt: now.Add(-2 * time.Hour), CompletedAt: now.Add(-time.Hour),
		Devices: []store.FleetCheckDevice{{DeviceID: "a", Outcome: Working}}}
	running := store.FleetCheck{ID: "fc-running", RequestedAt: now.Add(-time.Minute),
		Devices: []store.FleetCheckDevice{{DeviceID: "a", Outcome: Working}, {DeviceID: "b", Outcome: Pending}}}
	for _, c := range []store.FleetCheck{done, running} {
		if err := st.PutFleetCheck(c); err != nil {
			t.Fatal(err)
		}
	}
	s := &Service{Store: st, Now: func() time.Time { return now }, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	if err := s.CloseInterrupted(); err != nil {
		t.Fatal(err)
	}
	got, err := st.GetFleetCheck("fc-running")
	if err != nil {
		t.Fatal(err)
	}
	if !got.CompletedAt.Equal(now) || got.Devices[0].Outcome != Working || got.Devices[1].Outcome != NoAnswer || got.Devices[1].Detail == "" {
		t.Errorf("interrupted check: %+v", got)
	}
	if d, _ := st.GetFleetCheck("fc-done"); !d.CompletedAt.Equal(done.CompletedAt) {
		t.Errorf("a completed check was rewritten: %+v", d)
	}
	latest, ok, err := s.Latest()
	if err != nil || !ok || latest.ID != "fc-running" {
		t.Errorf("latest completed check: %v %v %v", latest.ID, ok, err)
	}
}
