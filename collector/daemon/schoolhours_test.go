package daemon

import (
	"io"
	"log/slog"
	"path/filepath"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestSchoolHoursFollowTheStore: the hours a device is judged by are its
// school's own once set, and the installation's (nil) once cleared, without
// a restart.
func TestSchoolHoursFollowTheStore(t *testing.T) {
	log := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.AddSchool(store.School{ID: "oak", Name: "Oak"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []store.Device{{DeviceID: "d-oak", School: "oak"}, {DeviceID: "d-default"}} {
		if err := st.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	h := newSchoolHours(st, log)
	h.refresh = 0 // read the store on every call
	if h.ofDevice("d-oak") != nil || h.forCoverage("oak") != nil {
		t.Fatal("hours before any were set")
	}
	if _, err := st.SetSchoolHours("oak", "mon-fri 08:30-15:00", "Europe/London"); err != nil {
		t.Fatal(err)
	}
	s := h.ofDevice("d-oak")
	wed := time.Date(2026, 12, 2, 15, 30, 0, 0, time.UTC)
	if s == nil || s.Working(wed) || !s.Working(wed.Add(-time.Hour)) {
		t.Fatalf("oak's hours: %v", s)
	}
	if h.ofDevice("d-default") != nil || h.ofDevice("unknown") != nil {
		t.Error("hours for a device of a school without its own")
	}
	if _, err := st.SetSchoolHours("oak", "", ""); err != nil {
		t.Fatal(err)
	}
	if h.ofDevice("d-oak") != nil {
		t.Error("oak's hours kept after they were cleared")
	}

	// On-call users likewise.
	if h.onCallOf("d-oak") != nil {
		t.Fatal("on-call users before any were set")
	}
	if _, err := st.SetSchoolOnCall("oak", []string{"oakdsl"}); err != nil {
		t.Fatal(err)
	}
	if got := h.onCallOf("d-oak"); len(got) != 1 || got[0] != "oakdsl" {
		t.Errorf("oak's on call: %v", got)
	}
	if h.onCallOf("d-default") != nil || h.onCallOf("unknown") != nil {
		t.Error("on-call users for a device of a school without its own")
	}
	if _, err := st.SetSchoolOnCall("oak", nil); err != nil {
		t.Fatal(err)
	}
	if h.onCallOf("d-oak") != nil {
		t.Error("oak's on-call users kept after they were cleared")
	}
}
