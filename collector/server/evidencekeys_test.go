package server

import (
	"path/filepath"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/collector/evidencekeys"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
	"github.com/vigil-safeguarding/vigil/internal/identity"
)

// A device is told its own school's evidence recipient at enrollment and
// in every Welcome (a device enrolled before its school had a key is moved
// to it at its next stream); the default school's is the installation's.
func TestEvidenceRecipientBySchool(t *testing.T) {
	base, _ := age.GenerateX25519Identity()
	keys, err := evidencekeys.Open(filepath.Join(t.TempDir(), "pki"), base)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Config{Evidence: keys}, store.Options{})
	for _, name := range []string{"Oak", "Elm"} {
		if _, err := e.st.AddSchool(store.School{Name: name}); err != nil {
			t.Fatal(err)
		}
	}
	toks := &tokens.Service{Store: e.st, CAFingerprint: e.ca.Fingerprint()}
	conn := e.enrollConn(t)
	seen := map[string]string{}
	for _, school := range []string{"oak", "elm", ""} {
		want, err := keys.Recipient(school)
		if err != nil {
			t.Fatal(err)
		}
		iss, err := toks.CreateIn(t.Context(), school, "pupils", time.Hour, 1)
		if err != nil {
			t.Fatal(err)
		}
		key, req := enrollReq(t, iss.Token, "fp-keys-"+store.SchoolOf(school))
		d, resp, err := e.callEnroll(conn, key, req)
		if err != nil {
			t.Fatal(err)
		}
		if resp.EvidenceRecipient != want {
			t.Errorf("%s: enrolled with recipient %s, want %s", store.SchoolOf(school), resp.EvidenceRecipient, want)
		}
		_, w, err := openStream(t, d.conn(t), d.hello("i1"))
		if err != nil {
			t.Fatal(err)
		}
		if w.EvidenceRecipient != want {
			t.Errorf("%s: welcomed with recipient %s, want %s", store.SchoolOf(school), w.EvidenceRecipient, want)
		}
		if other, ok := seen[want]; ok {
			t.Errorf("%s has the recipient of %s", store.SchoolOf(school), other)
		}
		seen[want] = store.SchoolOf(school)
		id, _ := identity.DeviceID(&key.PublicKey)
		if id != d.id {
			t.Fatalf("device id %s, want %s", d.id, id)
		}
	}
	if seen[base.Recipient().String()] != store.DefaultSchool {
		t.Errorf("the default school's recipient is not the installation's: %v", seen)
	}
}
