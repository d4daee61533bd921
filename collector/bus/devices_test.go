package bus

import (
	"context"
	"errors"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/collector/evidencekeys"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestFrontStoreSeesStoreDevices: a store-owning collector connected to a
// standalone node (StartNode, as `nats-node` runs it) mirrors its devices;
// a front-end connected by URL finds an enrolled device at once, is told of
// its revocation, refuses enrollment, and its findings reach the store.
func TestFrontStoreSeesStoreDevices(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	storerBus, frontBus := storerAndFront(t, ctx)

	st := openStore(t, t.TempDir())
	skv, err := storerBus.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	base, _ := age.GenerateX25519Identity()
	keys, err := evidencekeys.Open(t.TempDir(), base)
	if err != nil {
		t.Fatal(err)
	}
	m := &Mirror{KV: skv, Source: st, Recipients: keys, Interval: 50 * time.Millisecond, Logger: testLogger()}
	fkv, err := frontBus.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fs := &FrontStore{KV: fkv}
	fs.Pub = &Publisher{JS: frontBus.JetStream(), SchoolOf: fs.SchoolOf}

	if _, ok, err := fs.LookupDevice("dev-a"); ok || err != nil {
		t.Fatalf("unknown device: ok=%v err=%v, want not found and no error", ok, err)
	}
	dev := store.Device{DeviceID: "dev-a", Group: "pupils", Hostname: "lab-1", HostFingerprint: "fp1", EnrolledAt: time.Now()}
	if err := st.PutDevice(dev); err != nil {
		t.Fatal(err)
	}
	if err := m.PutRecord(ctx, dev); err != nil {
		t.Fatal(err)
	}
	got, ok, err := fs.LookupDevice("dev-a")
	if err != nil || !ok || got.Group != "pupils" || got.HostFingerprint != "fp1" || got.Revoked {
		t.Fatalf("after enrollment: %+v ok=%v err=%v", got, ok, err)
	}
	if err := fs.PutDevice(dev); !errors.Is(err, ErrEnrollAtStorer) {
		t.Fatalf("front-end enrollment: %v, want ErrEnrollAtStorer", err)
	}
	if _, err := fs.UseToken("t", "h", time.Now()); !errors.Is(err, ErrEnrollAtStorer) {
		t.Fatalf("front-end token use: %v, want ErrEnrollAtStorer", err)
	}

	revoked := make(chan string, 4)
	wctx, wcancel := context.WithCancel(ctx)
	defer wcancel()
	go WatchRevocations(wctx, fkv, func(id string) { revoked <- id }, testLogger())
	go m.Run(wctx)
	if err := st.Revoke(store.Revocation{DeviceID: "dev-a", RevokedAt: time.Now(), Who: "tech", Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.After(30 * time.Second)
	for {
		if _, r, _ := fs.Revoked("dev-a"); r {
			break
		}
		select {
		case <-deadline:
			t.Fatal("revocation never reached the front-end's record")
		case <-time.After(20 * time.Millisecond):
		}
	}
	select {
	case id := <-revoked:
		if id != "dev-a" {
			t.Fatalf("revoked %q", id)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the front-end's watch was not told of the revocation")
	}

	// Findings published by the front-end go under the school of the
	// device's record, and that school's storer stores them.
	devB := store.Device{DeviceID: "dev-b", Group: "pupils", Hostname: "north-1", School: "north", EnrolledAt: time.Now()}
	if err := st.PutDevice(devB); err != nil {
		t.Fatal(err)
	}
	if err := m.PutRecord(ctx, devB); err != nil {
		t.Fatal(err)
	}
	for _, school := range []string{"", "north"} {
		storer, err := NewStorer(ctx, storerBus.JetStream(), st, StorerConfig{School: school, Logger: testLogger(),
			Records: func(id string) (string, bool) { d, ok := st.GetDevice(id); return d.School, ok }})
		if err != nil {
			t.Fatal(err)
		}
		go storer.Run(wctx)
	}
	if school, err := fs.SchoolOf("dev-b"); err != nil || school != "north" {
		t.Fatalf("front-end's school of dev-b: %q %v", school, err)
	}
	// The front-end, holding no key, names each school's evidence
	// recipient as the records do.
	for _, school := range []string{"north", store.DefaultSchool} {
		want, _ := keys.Recipient(school)
		if got, _ := fs.Recipient(school); got != want {
			t.Errorf("front-end's evidence recipient of %s: %q, want %q", school, got, want)
		}
	}
	if n, d := keys.Recipient("north"); n == base.Recipient().String() || d != nil {
		t.Errorf("north's recipient %s is the installation's (%v)", n, d)
	}
	if _, _, err := fs.CommitFindings(ctx, batch("dev-b", 1, 5)); err != nil {
		t.Fatal(err)
	}
	for {
		if n := len(stored(t, st)); n == 5 {
			break
		}
		select {
		case <-deadline:
			t.Fatal("front-end's findings never reached the store")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

// TestConnectRefusesOffMachine: routes and client ports are unauthenticated.
func TestConnectRefusesOffMachine(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if _, err := Connect(ctx, []string{"nats://192.0.2.1:4222"}, Config{}); err == nil {
		t.Fatal("connected to a non-loopback NATS URL")
	}
}
