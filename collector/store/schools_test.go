package store

import (
	"errors"
	"testing"
)

func TestSchools(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	all, err := s.Schools()
	if err != nil || len(all) != 1 || all[0].ID != DefaultSchool {
		t.Fatalf("a new store is a trust of one (the default school): %+v %v", all, err)
	}
	oak, err := s.AddSchool(School{Name: "St Mary's C of E"})
	if err != nil || oak.ID != "st-mary-s-c-of-e" {
		t.Fatalf("add: %+v %v", oak, err)
	}
	for _, bad := range []School{{Name: "ST MARY'S c of e", ID: "other"}, {Name: "Another", ID: "st-mary-s-c-of-e"}, {Name: "Default", ID: DefaultSchool}} {
		if _, err := s.AddSchool(bad); !errors.Is(err, ErrExists) {
			t.Errorf("add %+v: %v, want ErrExists", bad, err)
		}
	}
	for _, bad := range []School{{Name: ""}, {Name: "x", ID: "Upper"}, {Name: "!!!"}} {
		if _, err := s.AddSchool(bad); !errors.Is(err, ErrBadSchool) {
			t.Errorf("add %+v: %v, want ErrBadSchool", bad, err)
		}
	}
	for _, q := range []string{"st-mary-s-c-of-e", "st mary's c of e"} {
		if sc, err := s.FindSchool(q); err != nil || sc.ID != oak.ID {
			t.Errorf("find %q: %+v %v", q, sc, err)
		}
	}
	if sc, err := s.FindSchool(""); err != nil || sc.ID != DefaultSchool {
		t.Errorf(`find "": %+v %v`, sc, err)
	}
	if _, err := s.FindSchool("nowhere"); !errors.Is(err, ErrNotFound) {
		t.Errorf("find nowhere: %v", err)
	}

	// Devices: one enrolled before schools (no school named), one into oak.
	if err := s.PutDevice(Device{DeviceID: "old"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutDevice(Device{DeviceID: "new", School: oak.ID}); err != nil {
		t.Fatal(err)
	}
	for id, want := range map[string]string{"old": DefaultSchool, "new": oak.ID} {
		if sc, ok := s.DeviceSchool(id); !ok || sc != want {
			t.Errorf("device %s: %q %v, want %q", id, sc, ok, want)
		}
	}
	if _, ok := s.DeviceSchool("unknown"); ok {
		t.Error("an unknown device has a school")
	}
	all, _ = s.Schools()
	if len(all) != 2 || all[0].ID != DefaultSchool || all[1].ID != oak.ID {
		t.Errorf("schools: %+v", all)
	}
}
