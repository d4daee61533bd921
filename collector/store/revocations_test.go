package store

import (
	"errors"
	"testing"
	"time"
)

// TestRevocationSurvivesReenrollAndRestart: enrollment rewrites the device
// record (PutDevice), which used to undo a revocation; the revocation record
// outlives it and a restart, until Unrevoke.
func TestRevocationSurvivesReenrollAndRestart(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	dev := Device{DeviceID: "abcdefghijklmnopqrstuvwxyz", Group: "year-7"}
	if err := s.PutDevice(dev); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	if err := s.Revoke(Revocation{DeviceID: dev.DeviceID, RevokedAt: at, Who: "os:tech", Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	if d, _ := s.GetDevice(dev.DeviceID); !d.Revoked {
		t.Fatal("device record not marked revoked")
	}
	if err := s.PutDevice(dev); err != nil { // what enrollment does
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	s = openTest(t, dir, nil)
	defer s.Close()
	r, ok, err := s.Revoked(dev.DeviceID)
	if err != nil || !ok || r.Who != "os:tech" || r.Reason != "stolen" || !r.RevokedAt.Equal(at) {
		t.Fatalf("after re-put and restart: %+v %v %v", r, ok, err)
	}
	if list, err := s.Revocations(); err != nil || len(list) != 1 {
		t.Fatalf("Revocations: %v %v", list, err)
	}
	if _, err := s.Unrevoke(dev.DeviceID); err != nil {
		t.Fatal(err)
	}
	if _, ok, _ := s.Revoked(dev.DeviceID); ok {
		t.Fatal("still revoked after Unrevoke")
	}
	if d, _ := s.GetDevice(dev.DeviceID); d.Revoked {
		t.Fatal("device record still revoked after Unrevoke")
	}
	if _, err := s.Unrevoke(dev.DeviceID); !errors.Is(err, ErrNotRevoked) {
		t.Fatalf("second Unrevoke: %v", err)
	}
}

func TestStats(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	s.PutDevice(Device{DeviceID: "abcdefghijklmnopqrstuvwxyz"})
	st, err := s.Stats()
	if err != nil {
		t.Fatal(err)
	}
	if st.QueueCapacity != 1024 || st.QueueDepth != 0 || st.Devices != 1 || st.DiskFreeBytes == 0 || st.DiskSizeBytes < st.DiskFreeBytes {
		t.Errorf("stats %+v", st)
	}
}
