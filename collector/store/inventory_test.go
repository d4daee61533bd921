package store

import (
	"errors"
	"testing"
	"time"
)

// TestDisposeRevokesAndKeeps: a disposal and its revocation are written
// together and survive a restart; the device stays listed.
func TestDisposeRevokesAndKeeps(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	if err := s.Dispose(Disposal{DeviceID: "nope", Method: "waste"}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown device: %v", err)
	}
	if err := s.PutDevice(Device{DeviceID: "dev-1", Hostname: "lab-1"}); err != nil {
		t.Fatal(err)
	}
	at := time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)
	if err := s.Dispose(Disposal{DeviceID: "dev-1", Date: at, AuthorisedBy: "head", Method: "recycler", RecordedBy: "tech", RecordedAt: at}); err != nil {
		t.Fatal(err)
	}
	if err := s.Dispose(Disposal{DeviceID: "dev-1", Method: "again"}); !errors.Is(err, ErrDisposed) {
		t.Fatalf("second disposal: %v", err)
	}
	s.Close()
	s = openTest(t, dir, nil)
	defer s.Close()
	if d, ok := s.GetDevice("dev-1"); !ok || !d.Revoked {
		t.Fatalf("device after disposal and restart: %+v %v", d, ok)
	}
	if r, ok, err := s.Revoked("dev-1"); err != nil || !ok || r.Who != "tech" {
		t.Fatalf("revocation %+v %v %v", r, ok, err)
	}
	ds, err := s.Disposals()
	if err != nil || len(ds) != 1 || ds[0].AuthorisedBy != "head" || !ds[0].Date.Equal(at) {
		t.Fatalf("disposals %+v %v", ds, err)
	}
	if _, err := s.Unrevoke("dev-1"); !errors.Is(err, ErrDisposed) {
		t.Fatalf("unrevoke of a disposed device: %v", err)
	}
}

func TestLicenceRegister(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	defer s.Close()
	if err := s.PutLicences([]Licence{{ID: "a", Product: "Office", Seats: 2}, {ID: "b", Product: "Reader", Seats: 1}}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteLicence("a"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteLicence("a"); !errors.Is(err, ErrNotFound) {
		t.Fatalf("second delete: %v", err)
	}
	if ls, err := s.Licences(); err != nil || len(ls) != 1 || ls[0].ID != "b" {
		t.Fatalf("licences %+v %v", ls, err)
	}
	if err := s.PutLicenceAlias(LicenceAlias{Title: "notepad++", Ignore: true}); err != nil {
		t.Fatal(err)
	}
	if as, _ := s.LicenceAliases(); len(as) != 1 || !as[0].Ignore {
		t.Fatalf("aliases %+v", as)
	}
	if err := s.DeleteLicenceAlias("notepad++"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteLicenceAlias("notepad++"); !errors.Is(err, ErrNotFound) {
		t.Fatal(err)
	}
}
