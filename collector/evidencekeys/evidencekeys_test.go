package evidencekeys

import (
	"bytes"
	"io"
	"os"
	"path/filepath"
	"testing"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

func seal(t *testing.T, recipient, text string) []byte {
	t.Helper()
	r, err := age.ParseX25519Recipient(recipient)
	if err != nil {
		t.Fatal(err)
	}
	var ct bytes.Buffer
	w, err := age.Encrypt(&ct, r)
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, text)
	w.Close()
	return ct.Bytes()
}

func open(ct []byte, ids []age.Identity) (string, error) {
	r, err := age.Decrypt(bytes.NewReader(ct), ids...)
	if err != nil {
		return "", err
	}
	b, err := io.ReadAll(r)
	return string(b), err
}

func TestSchoolKeys(t *testing.T) {
	dir := t.TempDir()
	base, _ := age.GenerateX25519Identity()
	k, err := Open(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	if r, _ := k.Recipient(""); r != base.Recipient().String() {
		t.Errorf("default school's recipient %s, want the installation's", r)
	}
	if r, _ := k.Recipient(store.DefaultSchool); r != base.Recipient().String() {
		t.Errorf("default school's recipient %s, want the installation's", r)
	}
	oakR, err := k.Recipient("oak")
	if err != nil {
		t.Fatal(err)
	}
	elmR, _ := k.Recipient("elm")
	if oakR == base.Recipient().String() || oakR == elmR {
		t.Fatalf("school recipients not their own: oak %s elm %s base %s", oakR, elmR, base.Recipient())
	}
	if again, _ := k.Recipient("oak"); again != oakR {
		t.Errorf("oak's recipient changed: %s then %s", oakR, again)
	}
	if fi, err := os.Stat(filepath.Join(dir, Dir, "oak.key")); err != nil || fi.Mode().Perm() != 0o600 {
		t.Errorf("oak's key file: %v %v", fi, err)
	}
	for _, bad := range []string{"../oak", "Oak", "a/b", "-x"} {
		if _, err := k.Recipient(bad); err == nil {
			t.Errorf("school id %q accepted", bad)
		}
	}

	oakCT := seal(t, oakR, "oak screenshot")
	elmCT := seal(t, elmR, "elm screenshot")
	oldCT := seal(t, base.Recipient().String(), "sealed before oak had a key")

	// Read back from disk, as a restarted collector does.
	k, err = Open(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	if got, err := open(oakCT, k.Identities("oak")); err != nil || got != "oak screenshot" {
		t.Errorf("oak's evidence: %q %v", got, err)
	}
	if got, err := open(oldCT, k.Identities("oak")); err != nil || got != "sealed before oak had a key" {
		t.Errorf("oak's evidence under the installation key: %q %v", got, err)
	}
	if _, err := open(oakCT, k.Identities("elm")); err == nil {
		t.Error("elm's keys open oak's evidence")
	}
	if _, err := open(oakCT, k.Identities("")); err == nil {
		t.Error("the default school's key opens oak's evidence")
	}
	elmFile, _ := os.ReadFile(filepath.Join(dir, Dir, "elm.key"))

	// Oak leaves: its key goes, and with it every copy of its evidence.
	if had, err := k.Destroy("oak"); err != nil || !had {
		t.Fatalf("destroy oak: %v %v", had, err)
	}
	if _, err := os.Stat(filepath.Join(dir, Dir, "oak.key")); !os.IsNotExist(err) {
		t.Errorf("oak's key file still there: %v", err)
	}
	if k.Has("oak") {
		t.Error("oak's key still held")
	}
	for _, kr := range []*Keyring{k, mustOpen(t, dir, base)} {
		for _, school := range []string{"oak", "elm", ""} {
			if _, err := open(oakCT, kr.Identities(school)); err == nil {
				t.Errorf("oak's evidence opened after its key was destroyed, with %s's keys", school)
			}
		}
		if got, err := open(elmCT, kr.Identities("elm")); err != nil || got != "elm screenshot" {
			t.Errorf("elm's evidence after oak left: %q %v", got, err)
		}
	}
	if after, _ := os.ReadFile(filepath.Join(dir, Dir, "elm.key")); !bytes.Equal(after, elmFile) {
		t.Error("elm's key file changed when oak's was destroyed")
	}
	if had, err := k.Destroy("oak"); err != nil || had {
		t.Errorf("destroy oak again: %v %v", had, err)
	}
	if _, err := k.Destroy(""); err == nil {
		t.Error("the installation's key was destroyed")
	}
}

func mustOpen(t *testing.T, dir string, base *age.X25519Identity) *Keyring {
	t.Helper()
	k, err := Open(dir, base)
	if err != nil {
		t.Fatal(err)
	}
	return k
}
