package store

import (
	"bytes"
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func openSealed(t *testing.T, dir, keysDir string) *Store {
	t.Helper()
	keys, err := OpenDataKeys(keysDir)
	if err != nil {
		t.Fatal(err)
	}
	s, err := Open(dir, Options{DataKeys: keys, Retention: map[string]time.Duration{"selftest": time.Hour}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

// TestDeletedSchoolUnreadableInBackup: a school's findings and review
// records are sealed under its own data key; a backup of the store taken
// before the school was deleted, restored afterwards, still holds its
// records but none of them can be read, while every other school's read
// back exactly as before.
func TestDeletedSchoolUnreadableInBackup(t *testing.T) {
	keysDir := filepath.Join(t.TempDir(), "keys")
	s := openSealed(t, t.TempDir(), keysDir)
	for _, id := range []string{"oak", "elm"} {
		if _, err := s.AddSchool(School{ID: id, Name: strings.ToUpper(id)}); err != nil {
			t.Fatal(err)
		}
	}
	schoolFixture(t, s, "ash", "")
	schoolFixture(t, s, "oak", "oak")
	schoolFixture(t, s, "elm", "elm")
	dev := func(prefix string, i int) string {
		return prefix + strings.Repeat("0", 25-len(prefix)) + string(rune('0'+i))
	}

	// On disk (inside Badger's at-rest encryption): sealed to the owner,
	// nothing of the content in the clear; the default school's plain.
	sealed := map[string]int{}
	for k, v := range dumpAll(t, s) {
		if !strings.HasPrefix(k, pfxFindingByDevice) && !strings.HasPrefix(k, pfxAlertState) {
			continue
		}
		school := SealedSchool(v)
		sealed[school]++
		owner := strings.TrimPrefix(strings.TrimPrefix(k, pfxFindingByDevice), pfxAlertState)[:3]
		switch {
		case owner == "ash" && school != "":
			t.Errorf("%q of the default school sealed to %q", k, school)
		case owner != "ash" && school != owner:
			t.Errorf("%q sealed to %q, want %q", k, school, owner)
		case owner != "ash" && (bytes.Contains(v, []byte(owner+"term")) || bytes.Contains(v, []byte(owner+"dsl"))):
			t.Errorf("%q holds its content in the clear", k)
		}
	}
	if sealed["oak"] != 9 || sealed["elm"] != 9 || sealed[""] != 9 {
		t.Errorf("sealed records by school: %v (want 8 findings and 1 review record each)", sealed)
	}
	if _, err := os.Stat(filepath.Join(keysDir, "oak.key")); err != nil {
		t.Fatalf("Oak's data key: %v", err)
	}
	a, err := s.GetAlert(dev("oak", 1), 4)
	if err != nil || a.State.Status != "false_positive" || a.Finding.GetScreenMatch().GetTerm() != "oakterm" {
		t.Fatalf("Oak's alert read back: %+v, %v", a, err)
	}

	var backup bytes.Buffer
	if _, err := s.db.Backup(&backup, 0); err != nil {
		t.Fatal(err)
	}
	readable := func(s *Store) map[string]string {
		out := map[string]string{}
		if err := s.ListFindings(context.Background(), Query{}, func(f *vigilv1.Finding) bool {
			out[AlertID(f.DeviceId, f.Seq)] = f.String()
			return true
		}); err != nil {
			t.Fatal(err)
		}
		if err := s.AlertStates(func(d string, seq uint64, st AlertState) error {
			out["state "+AlertID(d, seq)] = string(st.Status)
			return nil
		}); err != nil {
			t.Fatal(err)
		}
		return out
	}
	want := readable(s)
	for id := range want {
		if strings.Contains(id, "oak") {
			delete(want, id)
		}
	}

	rep, err := s.DeleteSchool("oak", time.Now(), nil)
	if err != nil || !rep.DataKeyDestroyed {
		t.Fatalf("delete Oak: %+v, %v", rep, err)
	}
	if _, err := os.Stat(filepath.Join(keysDir, "oak.key")); !errors.Is(err, os.ErrNotExist) {
		t.Errorf("Oak's key file after the deletion: %v", err)
	}
	if !s.opts.DataKeys.Has("elm") {
		t.Error("Elm's key went with Oak's")
	}
	s.Close()

	// The old backup restored beside the installation's keys as they are now.
	r := openSealed(t, t.TempDir(), keysDir)
	if err := r.db.Load(&backup, 16); err != nil {
		t.Fatal(err)
	}
	oakRaw := 0
	for k, v := range dumpAll(t, r) {
		if SealedSchool(v) != "oak" {
			continue
		}
		oakRaw++
		if _, err := r.unseal([]byte(k), v); !errors.Is(err, ErrDataKeyDestroyed) {
			t.Errorf("Oak's %q opened after its key was destroyed: %v", k, err)
		}
	}
	if oakRaw != 9 {
		t.Errorf("the backup holds %d sealed records of Oak, want 9 (the test must look at them)", oakRaw)
	}
	got := readable(r)
	for id := range got {
		if strings.Contains(id, "oak") {
			t.Errorf("Oak's %s read from the backup", id)
		}
	}
	for id, v := range want {
		if got[id] != v {
			t.Errorf("%s from the backup: %q, want %q", id, got[id], v)
		}
	}
	if _, err := r.GetAlert(dev("oak", 1), 4); !errors.Is(err, ErrNotFound) {
		t.Errorf("Oak's alert from the backup: %v", err)
	}
	if a, err := r.GetAlert(dev("elm", 1), 4); err != nil || a.State.Status != "false_positive" {
		t.Errorf("Elm's alert from the backup: %+v, %v", a, err)
	}
}

// TestSealedValueBoundToItsKey: a sealed record copied under another
// record's key does not open (the key is the additional data), and a
// store opened without the school keys refuses sealed records instead of
// misreading them.
func TestSealedValueBoundToItsKey(t *testing.T) {
	keysDir := filepath.Join(t.TempDir(), "keys")
	s := openSealed(t, t.TempDir(), keysDir)
	if _, err := s.AddSchool(School{ID: "oak", Name: "Oak"}); err != nil {
		t.Fatal(err)
	}
	d := devID(1)
	if err := s.PutDevice(Device{DeviceID: d, School: "oak"}); err != nil {
		t.Fatal(err)
	}
	v, err := s.sealFor(d, findingKey(d, 1), []byte("plain"))
	if err != nil || SealedSchool(v) != "oak" {
		t.Fatalf("seal: %q, %v", v, err)
	}
	if p, err := s.unseal(findingKey(d, 1), v); err != nil || string(p) != "plain" {
		t.Fatalf("unseal: %q, %v", p, err)
	}
	if _, err := s.unseal(findingKey(d, 2), v); err == nil || errors.Is(err, ErrDataKeyDestroyed) {
		t.Errorf("a record moved under another key opened or looked destroyed: %v", err)
	}
	v[len(v)-1] ^= 1
	if _, err := s.unseal(findingKey(d, 1), v); err == nil {
		t.Error("a damaged sealed record opened")
	}
	bare := &Store{}
	if _, err := bare.unseal(findingKey(d, 1), v); !errors.Is(err, ErrDataKeyDestroyed) {
		t.Errorf("without keys: %v", err)
	}
	if p, err := bare.unseal(nil, []byte(`{"status":"new"}`)); err != nil || string(p) != `{"status":"new"}` {
		t.Errorf("a value stored before sealing: %q, %v", p, err)
	}
}
