package store

import (
	"context"
	"errors"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestSchoolRetention: a school's own retention decides the expiry of its
// devices' findings (a category it names, else its default), another
// school's devices keep the installation's; it survives a restart, and a
// school cleared goes back to the installation's.
func TestSchoolRetention(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil) // installation: selftest 1h, the rest forever
	if _, err := s.AddSchool(School{ID: "north", Name: "North Academy"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []Device{{DeviceID: "dev-n", School: "north"}, {DeviceID: "dev-d"}} {
		if err := s.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.SetSchoolRetention(DefaultSchool, Retention{"selftest": time.Hour}); !errors.Is(err, ErrBadSchool) {
		t.Fatalf("the default school's retention set: %v", err)
	}
	if _, err := s.SetSchoolRetention("nowhere", Retention{"selftest": time.Hour}); !errors.Is(err, ErrNotFound) {
		t.Fatalf("an unknown school's retention set: %v", err)
	}
	if _, err := s.SetSchoolRetention("north", Retention{"selftest": -time.Hour}); !errors.Is(err, ErrBadSchool) {
		t.Fatalf("a negative retention set: %v", err)
	}
	sc, err := s.SetSchoolRetention("north", Retention{RetentionDefault: 10 * 24 * time.Hour, "selftest": 0})
	if err != nil || sc.Retention.String() != "default=10d,selftest=0d" {
		t.Fatalf("set north's retention: %+v %v", sc, err)
	}
	now := time.Now()
	seq := uint64(0)
	commit := func(dev, cat string) uint64 {
		t.Helper()
		seq++
		if _, _, err := s.CommitFindings(context.Background(), []*vigilv1.Finding{testFinding(dev, seq, cat, now)}); err != nil {
			t.Fatal(err)
		}
		return seq
	}
	// expiry is the finding's time to live from now (0: none).
	expiry := func(st *Store, dev string, seq uint64) time.Duration {
		t.Helper()
		var at uint64
		if err := st.db.View(func(txn *badger.Txn) error {
			it, err := txn.Get(findingKey(dev, seq))
			if err == nil {
				at = it.ExpiresAt()
			}
			return err
		}); err != nil {
			t.Fatal(err)
		}
		if at == 0 {
			return 0
		}
		return time.Until(time.Unix(int64(at), 0)).Round(time.Hour)
	}
	for _, c := range []struct {
		dev, cat string
		want     time.Duration
	}{
		{"dev-n", "bullying", 240 * time.Hour}, // north's default
		{"dev-n", "selftest", 0},               // north keeps its selftests
		{"dev-d", "selftest", time.Hour},       // the installation's
		{"dev-d", "bullying", 0},
	} {
		if got := expiry(s, c.dev, commit(c.dev, c.cat)); got != c.want {
			t.Errorf("%s %s: expires in %s, want %s", c.dev, c.cat, got, c.want)
		}
	}
	s.Close()
	s = openTest(t, dir, nil)
	if got := expiry(s, "dev-n", commit("dev-n", "bullying")); got != 240*time.Hour {
		t.Errorf("after a restart north's finding expires in %s", got)
	}
	if sc, err := s.FindSchool("north"); err != nil || sc.Retention.String() != "default=10d,selftest=0d" {
		t.Errorf("north after a restart: %+v %v", sc, err)
	}
	if _, err := s.SetSchoolRetention("north", nil); err != nil {
		t.Fatal(err)
	}
	if got := expiry(s, "dev-n", commit("dev-n", "selftest")); got != time.Hour {
		t.Errorf("north cleared: its selftest expires in %s, want the installation's 1h", got)
	}
}
