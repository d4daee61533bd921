package releases

import (
	"crypto/ed25519"
	"crypto/rand"
	"errors"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/internal/release"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

func setup(t *testing.T) (string, *Manager, string) {
	t.Helper()
	data := t.TempDir()
	m, err := Open(data, quiet())
	if err != nil {
		t.Fatal(err)
	}
	bin := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(bin, []byte("agent binary bytes"), 0o755); err != nil {
		t.Fatal(err)
	}
	return data, m, bin
}

func TestKeyOwnerOnlyAndStable(t *testing.T) {
	data, m, _ := setup(t)
	for _, p := range []string{PrivateKeyPath(data), PublicKeyPath(data)} {
		fi, err := os.Stat(p)
		if err != nil {
			t.Fatal(err)
		}
		if fi.Mode().Perm() != 0o600 {
			t.Errorf("%s mode %v, want 0600", p, fi.Mode().Perm())
		}
	}
	m2, err := Open(data, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if !m.PublicKey().Equal(m2.PublicKey()) {
		t.Fatal("reopening made a new release key")
	}
	// Kept offline: the private key gone, the public key stays and is used.
	os.Remove(PrivateKeyPath(data))
	m3, err := Open(data, quiet())
	if err != nil || !m3.PublicKey().Equal(m.PublicKey()) {
		t.Fatalf("open without the private key: %v", err)
	}
	if _, err := os.Stat(PrivateKeyPath(data)); err == nil {
		t.Fatal("a new private key was created next to the existing public key")
	}
}

func TestAddSignsWhatIsStored(t *testing.T) {
	data, m, bin := setup(t)
	key, err := LoadPrivateKey(PrivateKeyPath(data))
	if err != nil {
		t.Fatal(err)
	}
	man, err := Add(data, key, bin, "1.2.3", "linux", "amd64", time.Now())
	if err != nil {
		t.Fatal(err)
	}
	if err := release.Verify(m.PublicKey(), man.Signature, man.SHA256, "1.2.3", "linux", "amd64"); err != nil {
		t.Fatalf("stored signature: %v", err)
	}
	// The signature binds version and platform.
	if err := release.Verify(m.PublicKey(), man.Signature, man.SHA256, "1.2.4", "linux", "amd64"); err == nil {
		t.Fatal("signature verified for another version")
	}
	if err := release.Verify(m.PublicKey(), man.Signature, man.SHA256, "1.2.3", "windows", "amd64"); err == nil {
		t.Fatal("signature verified for another platform")
	}
	if _, err := Add(data, key, bin, "1.2.3", "linux", "amd64", time.Now()); err == nil {
		t.Fatal("the same release was added twice")
	}
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	if _, err := Add(data, other, bin, "1.2.5", "linux", "amd64", time.Now()); err == nil || !strings.Contains(err.Error(), "not the one") {
		t.Fatalf("signing with another key: %v", err)
	}
	for _, bad := range []string{"", "../x", "1 2"} {
		if _, err := Add(data, key, bin, bad, "linux", "amd64", time.Now()); err == nil {
			t.Errorf("version %q accepted", bad)
		}
	}
	list, err := List(data)
	if err != nil || len(list) != 1 {
		t.Fatalf("list: %v %v", list, err)
	}
}

func TestOfferRolloutFailuresRollback(t *testing.T) {
	data, m, bin := setup(t)
	key, _ := LoadPrivateKey(PrivateKeyPath(data))
	for _, v := range []string{"1.0.0", "2.0.0"} {
		if _, err := Add(data, key, bin, v, "linux", "amd64", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.StartRollout("pilot", "9.9.9", 100); err == nil {
		t.Fatal("rollout of a release never added")
	}
	if _, err := m.StartRollout("pilot", "1.0.0", 100); err != nil {
		t.Fatal(err)
	}
	if o := m.Offer("dev1", "pilot", "0.9", "linux", "amd64"); o == nil || o.Version != "1.0.0" {
		t.Fatalf("offer %v", o)
	}
	if o := m.Offer("dev1", "pilot", "1.0.0", "linux", "amd64"); o != nil {
		t.Fatal("offered the version the device runs")
	}
	if o := m.Offer("dev1", "other", "0.9", "linux", "amd64"); o != nil {
		t.Fatal("offered to another group")
	}
	if o := m.Offer("dev1", "pilot", "0.9", "windows", "amd64"); o != nil {
		t.Fatal("offered a platform with no build")
	}
	m.Record("dev1", &vigilv1.UpgradeReport{Version: "1.0.0", Outcome: vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_ROLLED_BACK, Reason: "no welcome"})
	m.Record("dev1", &vigilv1.UpgradeReport{Version: "1.0.0", Outcome: vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_REFUSED, Reason: "failed before"})
	if o := m.Offer("dev1", "pilot", "0.9", "linux", "amd64"); o != nil {
		t.Fatal("offered a version the device failed")
	}
	if f := m.Failures("dev1")["1.0.0"]; f.Outcome != "rolled_back" {
		t.Fatalf("failure %+v: the first report must stand", f)
	}
	if _, _, err := m.OpenOffered("dev1", "pilot", "0.9", &vigilv1.DownloadRequest{Version: "1.0.0", Os: "linux", Arch: "amd64"}); err == nil {
		t.Fatal("served a release not offered to the device")
	}
	if _, err := m.StartRollout("pilot", "2.0.0", 100); err != nil {
		t.Fatal(err)
	}
	f, size, err := m.OpenOffered("dev2", "pilot", "1.0.0", &vigilv1.DownloadRequest{Version: "2.0.0", Os: "linux", Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if size != int64(len("agent binary bytes")) {
		t.Fatalf("size %d", size)
	}
	// State survives a restart of the collector.
	m2, err := Open(data, quiet())
	if err != nil {
		t.Fatal(err)
	}
	if r, ok := m2.Rollout("pilot"); !ok || r.Version != "2.0.0" || r.Previous == nil || r.Previous.Version != "1.0.0" {
		t.Fatalf("rollout after reopen %+v", r)
	}
	if len(m2.Failures("dev1")) != 1 {
		t.Fatal("failures lost on reopen")
	}
	if r, err := m2.Rollback("pilot"); err != nil || r == nil || r.Version != "1.0.0" {
		t.Fatalf("rollback: %v %v", r, err)
	}
	if r, err := m2.Rollback("pilot"); err != nil || r != nil {
		t.Fatalf("second rollback: %v %v", r, err)
	}
	if _, err := m2.Rollback("pilot"); err == nil {
		t.Fatal("rollback without a rollout")
	}
}

func TestPercentIsStableAndPartial(t *testing.T) {
	in := 0
	for i := 0; i < 1000; i++ {
		d := "dev" + string(rune('a'+i%26)) + time.Duration(i).String()
		a := inPercent(d, "1.0.0", 30)
		if a != inPercent(d, "1.0.0", 30) {
			t.Fatal("not stable")
		}
		if a && !inPercent(d, "1.0.0", 60) {
			t.Fatal("raising the percentage dropped a device")
		}
		if a {
			in++
		}
	}
	if in < 200 || in > 400 {
		t.Fatalf("%d of 1000 in a 30%% rollout", in)
	}
}

func TestMinimumVersion(t *testing.T) {
	data, m, bin := setup(t)
	key, _ := LoadPrivateKey(PrivateKeyPath(data))
	for _, v := range []string{"1.2.0", "1.10.0-rc1", "dev"} {
		if _, err := Add(data, key, bin, v, "linux", "amd64", time.Now()); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := m.StartRollout("pupils", "1.2.0", 100); err != nil {
		t.Fatal(err)
	}
	if _, err := m.StartRollout("pupils", "1.10.0-rc1", 100); err != nil {
		t.Fatal(err)
	}
	if err := m.SetMinimum("1.3"); err == nil {
		t.Fatal("minimum without X.Y.Z accepted")
	}
	if err := m.SetMinimum("1.3.0"); err != nil {
		t.Fatal(err)
	}
	if _, err := m.StartRollout("pupils", "1.2.0", 100); err == nil || !strings.Contains(err.Error(), "below the minimum") {
		t.Fatalf("rollout below the minimum: %v", err)
	}
	if _, err := m.StartRollout("other", "dev", 100); err == nil {
		t.Fatal("an incomparable version was rolled out under a minimum")
	}
	// 1.10 > 1.3 numerically, not as strings.
	if o := m.Offer("d", "pupils", "1.2.0", "linux", "amd64"); o == nil || o.Version != "1.10.0-rc1" {
		t.Fatalf("offer %v", o)
	}
	if _, err := m.Rollback("pupils"); err == nil || !strings.Contains(err.Error(), "below the minimum") {
		t.Fatalf("rollback below the minimum: %v", err)
	}
	if r, ok := m.Rollout("pupils"); !ok || r.Version != "1.10.0-rc1" {
		t.Fatal("refused rollback changed the rollout")
	}
	m2, _ := Open(data, quiet())
	if m2.Minimum() != "1.3.0" {
		t.Fatal("minimum not kept")
	}
}

// TestPublishSignsLikeAdd: Publish (the console's upload) stores and signs
// what it read with the data dir's key, exactly as Add does; a second
// publish of one release, a bad platform and a key kept offline are refused.
func TestPublishSignsLikeAdd(t *testing.T) {
	data, m, _ := setup(t)
	if !m.HoldsSigningKey() {
		t.Fatal("a fresh data dir does not hold its signing key")
	}
	man, err := m.Publish(strings.NewReader("published bytes"), "2.0.0", "darwin", "arm64")
	if err != nil {
		t.Fatal(err)
	}
	if err := release.Verify(m.PublicKey(), man.Signature, man.SHA256, "2.0.0", "darwin", "arm64"); err != nil {
		t.Fatalf("published signature: %v", err)
	}
	got, err := os.ReadFile(filepath.Join(data, Dir, "2.0.0_darwin_arm64", binaryFile))
	if err != nil || string(got) != "published bytes" {
		t.Fatalf("stored binary: %q %v", got, err)
	}
	if list, err := m.List(); err != nil || len(list) != 1 || list[0].SHA256 != man.SHA256 {
		t.Fatalf("List after Publish: %+v %v", list, err)
	}
	if _, err := m.Publish(strings.NewReader("other bytes"), "2.0.0", "darwin", "arm64"); !errors.Is(err, ErrExists) {
		t.Errorf("publishing a release twice: %v, want ErrExists", err)
	}
	if _, err := m.Publish(strings.NewReader("x"), "2.0.1", "plan9", "amd64"); !errors.Is(err, ErrBadRelease) {
		t.Errorf("bad platform: %v, want ErrBadRelease", err)
	}
	if _, err := m.Publish(strings.NewReader(""), "2.0.1", "linux", "amd64"); !errors.Is(err, ErrBadRelease) {
		t.Errorf("empty binary: %v, want ErrBadRelease", err)
	}
	if _, err := m.StartRollout("pilot", "2.0.0", 40); err != nil {
		t.Fatal(err)
	}
	if r := m.Rollouts(); len(r) != 1 || r["pilot"].Version != "2.0.0" || r["pilot"].Percent != 40 {
		t.Errorf("Rollouts: %+v", r)
	}
	os.Remove(PrivateKeyPath(data))
	if m.HoldsSigningKey() {
		t.Error("HoldsSigningKey with the key removed")
	}
	if _, err := m.Publish(strings.NewReader("x"), "2.0.2", "linux", "amd64"); !errors.Is(err, ErrKeyOffline) {
		t.Errorf("publish with the key offline: %v, want ErrKeyOffline", err)
	}
}
