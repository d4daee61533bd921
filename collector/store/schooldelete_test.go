package store

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"path/filepath"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// schoolFixture gives school prefix (its ID, "" for the default) two
// devices with findings, an alert under review with an exclusion proposed
// from it, evidence, an audit, a disposal and a revocation, a token and two
// accounts with a session: one of every kind of record a school owns. It
// returns the strings that mark the school's data.
func schoolFixture(t *testing.T, s *Store, prefix, school string) []string {
	t.Helper()
	now := time.Now()
	dev := func(i int) string { return fmt.Sprintf("%s%0*d", prefix, 26-len(prefix), i) }
	markers := []string{dev(1), dev(2), prefix + "dsl", prefix + "tech", prefix + "tok", "au-" + prefix, prefix + "-lap"}
	for i := 1; i <= 2; i++ {
		if err := s.PutDevice(Device{DeviceID: dev(i), School: school, Group: "pupils", Hostname: fmt.Sprintf("%s-lap-%d", prefix, i), LastSeen: now}); err != nil {
			t.Fatal(err)
		}
		var fs []*vigilv1.Finding
		for seq := uint64(1); seq <= 3; seq++ {
			fs = append(fs, testFinding(dev(i), seq, "selftest", now.Add(time.Duration(seq)*time.Second)))
		}
		ev := screenFinding(dev(i), 4, fmt.Sprintf("ev%s%d", prefix, i), []byte(prefix+" screenshot"))
		ev.ScreenMatch = &vigilv1.ScreenMatch{Term: prefix + "term", Library: "self_harm", Category: "self_harm"}
		fs = append(fs, ev)
		if _, _, err := s.CommitFindings(context.Background(), fs); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := s.ReviewAlert(dev(1), 4, func(st *AlertState) (*Exclusion, error) {
		st.Status = "false_positive"
		st.History = append(st.History, HistoryEntry{Time: now, By: prefix + "dsl", Action: "false_positive"})
		return &Exclusion{ID: "x-" + prefix, AlertID: AlertID(dev(1), 4), Term: prefix + "term", Status: "pending", ProposedBy: prefix + "dsl"}, nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutToken(Token{ID: prefix + "tok", School: school, Group: "pupils", CreatedAt: now, ExpiresAt: now.Add(time.Hour), MaxUses: 5}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"dsl", "tech"} {
		if err := s.CreateUser(User{Username: prefix + u, Role: u, School: school, PasswordHash: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.PutSession("sess"+prefix, Session{Username: prefix + "dsl", Created: now, Touched: now}, time.Hour); err != nil {
		t.Fatal(err)
	}
	aid := "au-" + prefix + "-1"
	header, _ := json.Marshal(map[string]any{"id": aid, "school": school, "devices": []map[string]string{{"device_id": dev(1)}, {"device_id": dev(2)}}})
	if _, err := s.CreateAudit(aid, now, header, []AuditQueued{{DeviceID: dev(1), ExpiresAt: now.Add(time.Hour)}, {DeviceID: dev(2), ExpiresAt: now.Add(time.Hour)}}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.AppendAuditEntry(aid, AuditAnswerEntry, dev(1), now, []byte(`{"hostname":"`+prefix+`-lap-1"}`)); err != nil {
		t.Fatal(err)
	}
	if err := s.Dispose(Disposal{DeviceID: dev(2), Date: now, AuthorisedBy: prefix + "tech"}); err != nil {
		t.Fatal(err)
	}
	if err := s.Revoke(Revocation{DeviceID: dev(2), RevokedAt: now, Who: prefix + "tech"}); err != nil {
		t.Fatal(err)
	}
	// Its own keyword term, its suppression of the trust's term (which
	// stays: it is every school's), and an exclusion that names the school
	// but no alert of its devices.
	if err := s.AddSchoolTerm(SchoolTerm{ID: "trust1", Term: "trust nick", TrustWide: true, AddedBy: "lead", AddedAt: now}, "r"); err != nil && !errors.Is(err, ErrExists) {
		t.Fatal(err)
	}
	if err := s.AddSchoolTerm(SchoolTerm{ID: "t-" + prefix, Term: prefix + "nick", School: school, AddedBy: prefix + "dsl", AddedAt: now}, "r"); err != nil {
		t.Fatal(err)
	}
	if err := s.SuppressTerm(TermSuppression{School: school, TermID: "trust1", By: prefix + "dsl", At: now, Reason: "r"}); err != nil {
		t.Fatal(err)
	}
	if err := s.PutExclusion(Exclusion{ID: "xs-" + prefix, Term: "phrase", Status: "approved", ProposedBy: prefix + "dsl", School: school}); err != nil {
		t.Fatal(err)
	}
	return markers
}

// dumpAll is every key and value in the store (the test's own raw read).
func dumpAll(t *testing.T, s *Store) map[string][]byte {
	t.Helper()
	out := map[string][]byte{}
	if err := s.db.View(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.DefaultIteratorOptions)
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			v, err := it.Item().ValueCopy(nil)
			if err != nil {
				return err
			}
			out[string(it.Item().Key())] = v
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return out
}

// The installation's own records, which a school's deletion keeps.
var installationPrefixes = []string{pfxAccessLog, pfxRulesChange, "dfe/", "lic/", pfxReportMail}

// TestDeleteSchoolLeavesOthersByteIdentical: deleting Oak removes every
// record that carries anything of Oak and changes no byte of any other
// record, except the one grant of Oak held by another school's account.
func TestDeleteSchoolLeavesOthersByteIdentical(t *testing.T) {
	// As deployed: each school's records sealed under its own data key
	// (TestDeletedSchoolUnreadableInBackup checks the sealing itself).
	s := openSealed(t, t.TempDir(), filepath.Join(t.TempDir(), "keys"))
	for _, id := range []string{"oak", "elm"} {
		if _, err := s.AddSchool(School{ID: id, Name: strings.ToUpper(id)}); err != nil {
			t.Fatal(err)
		}
	}
	schoolFixture(t, s, "ash", "")
	oak := schoolFixture(t, s, "oak", "oak")
	schoolFixture(t, s, "elm", "elm")
	// An Elm DSL who is a trust safeguarding lead granted Oak.
	if err := s.CreateUser(User{Username: "elmlead", Role: "dsl", School: "elm", Granted: []string{"oak", "ash"}, PasswordHash: []byte("x")}); err != nil {
		t.Fatal(err)
	}
	if _, err := s.DeleteSchool(DefaultSchool, time.Now(), nil); !errors.Is(err, ErrBadSchool) {
		t.Fatalf("deleting the default school: %v", err)
	}
	before := dumpAll(t, s)
	var dropped []string
	rep, err := s.DeleteSchool("oak", time.Now(), func(d string) {
		if _, ok := s.GetDevice(d); ok {
			t.Errorf("device %s disconnected while it could still stream", d)
		}
		dropped = append(dropped, d)
	})
	if err != nil {
		t.Fatal(err)
	}
	if len(dropped) != 2 {
		t.Errorf("disconnected %v", dropped)
	}
	after := dumpAll(t, s)
	t.Logf("deleted: %+v", rep)
	if rep.Devices != 2 || rep.Grants != 1 {
		t.Errorf("report %+v: want 2 devices, 1 grant", rep)
	}
	carriesOak := func(k string, v []byte) bool {
		for _, m := range oak {
			if strings.Contains(k, m) || bytes.Contains(v, []byte(m)) {
				return true
			}
		}
		return k == pfxSchool+"oak"
	}
	for k, v := range after {
		was, ok := before[k]
		switch {
		case !ok:
			t.Errorf("key %q appeared", k)
		case k == pfxUser+"elmlead":
			var u User
			if json.Unmarshal(v, &u) != nil || strings.Join(u.Granted, ",") != "ash" {
				t.Errorf("the trust lead's grants: %s", v)
			}
		case !bytes.Equal(was, v):
			t.Errorf("key %q of another school changed:\n%q\n%q", k, was, v)
		}
		installation := false
		for _, p := range installationPrefixes {
			installation = installation || strings.HasPrefix(k, p)
		}
		if !installation && carriesOak(k, v) {
			t.Errorf("key %q still carries Oak's data: %.200q", k, v)
		}
	}
	removed := 0
	for k, v := range before {
		if _, ok := after[k]; !ok {
			removed++
			if !carriesOak(k, v) {
				t.Errorf("key %q removed, but it is not Oak's: %.200q", k, v)
			}
		}
	}
	total := 0
	for _, n := range rep.Keys {
		total += n
	}
	if _, err := s.GetSchoolTerm("trust1"); err != nil {
		t.Errorf("the trust-wide term went with Oak: %v", err)
	}
	if removed != total || removed < 33 {
		t.Errorf("%d keys removed, report says %d (%v)", removed, total, rep.Keys)
	}
	// The cache forgets its devices; lookups no longer offer the school.
	for _, d := range s.Devices() {
		if d.School == "oak" {
			t.Errorf("device %s still cached", d.DeviceID)
		}
	}
	if _, err := s.FindSchool("oak"); !errors.Is(err, ErrNotFound) {
		t.Errorf("FindSchool after deletion: %v", err)
	}
	if _, err := s.DeleteSchool("oak", time.Now(), nil); !errors.Is(err, ErrNotFound) {
		t.Errorf("deleting it again: %v", err)
	}
}

// TestDeleteSchoolResumes: a deletion cut short (here: only marked) is
// finished by running it again, and a school being deleted is no longer
// listed or found.
func TestDeleteSchoolResumes(t *testing.T) {
	s := openTest(t, t.TempDir(), nil)
	if _, err := s.AddSchool(School{ID: "oak", Name: "Oak"}); err != nil {
		t.Fatal(err)
	}
	schoolFixture(t, s, "oak", "oak")
	v, _ := json.Marshal(School{ID: "oak", Name: "Oak", DeletingAt: time.Now()})
	if err := s.update(func(txn *badger.Txn) error { return txn.Set([]byte(pfxSchool+"oak"), v) }); err != nil {
		t.Fatal(err)
	}
	if all, _ := s.Schools(); len(all) != 1 {
		t.Errorf("schools while deleting: %+v", all)
	}
	if _, err := s.FindSchool("Oak"); !errors.Is(err, ErrNotFound) {
		t.Errorf("found while deleting: %v", err)
	}
	rep, err := s.DeleteSchool("oak", time.Now(), nil)
	if err != nil || rep.Devices != 2 {
		t.Fatalf("resumed deletion: %+v %v", rep, err)
	}
	for k := range dumpAll(t, s) {
		if strings.Contains(k, "oak") {
			t.Errorf("left %q", k)
		}
	}
}
