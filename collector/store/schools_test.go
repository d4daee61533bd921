package store

import (
	"errors"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
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

// TestOldExclusionsGetTheirSchool: exclusions proposed before they named
// their school are given, at open, the school of the device whose alert
// they came from; trust-wide ones, the default school's and ones without
// an alert stay as they were, and a field this build does not know
// survives the rewrite.
func TestOldExclusionsGetTheirSchool(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	if _, err := s.AddSchool(School{ID: "oak", Name: "Oak"}); err != nil {
		t.Fatal(err)
	}
	oakDev, defDev := devID(1), devID(2)
	for d, sc := range map[string]string{oakDev: "oak", defDev: ""} {
		if err := s.PutDevice(Device{DeviceID: d, School: sc}); err != nil {
			t.Fatal(err)
		}
	}
	old := map[string]string{
		"x-oak":   `{"id":"x-oak","alert_id":"` + AlertID(oakDev, 4) + `","term":"t","status":"pending","proposed_by":"dsl","from_a_later_build":7}`,
		"x-def":   `{"id":"x-def","alert_id":"` + AlertID(defDev, 4) + `","term":"t","status":"approved","proposed_by":"dsl"}`,
		"x-trust": `{"id":"x-trust","alert_id":"` + AlertID(oakDev, 5) + `","term":"t","status":"approved","proposed_by":"lead","trust_wide":true}`,
		"x-none":  `{"id":"x-none","term":"t","status":"approved","proposed_by":"dsl"}`,
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		for id, v := range old {
			if err := txn.Set([]byte(pfxExclusion+id), []byte(v)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	s.Close()
	s = openTest(t, dir, nil)
	want := map[string]string{"x-oak": "oak", "x-def": "", "x-trust": "", "x-none": ""}
	for id, school := range want {
		x, err := s.GetExclusion(id)
		if err != nil || x.School != school {
			t.Errorf("%s: school %q (%v), want %q", id, x.School, err, school)
		}
	}
	var raw map[string]any
	if err := getJSON(s.db, []byte(pfxExclusion+"x-oak"), &raw); err != nil || raw["from_a_later_build"] != float64(7) {
		t.Errorf("the rewrite lost a field: %v, %v", raw, err)
	}
	if x, _ := s.GetExclusion("x-oak"); !x.AppliesIn("oak") || x.AppliesIn(DefaultSchool) {
		t.Errorf("Oak's exclusion applies in the wrong school: %+v", x)
	}
	if n, err := s.assignExclusionSchools(); n != 0 || err != nil {
		t.Errorf("a second run changed %d (%v)", n, err)
	}
}
