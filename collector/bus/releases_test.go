package bus

import (
	"bytes"
	"context"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/collector/releases"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestReleasesReachFrontEnds: a release added and rolled out at the
// store-owning collector (a real releases.Manager) is offered by a
// front-end's ReleasesCache exactly as the collector offers it, its binary
// served from the object store of a real node and checked against the
// manifest (a damaged local copy is fetched again), and an agent's refusal
// reported at the front-end travels as a device event to the collector,
// which records it, after which no front-end offers that version to that
// device.
func TestReleasesReachFrontEnds(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	storerBus, frontBus := storerAndFront(t, ctx)
	if err := storerBus.EnsureEvents(ctx); err != nil {
		t.Fatal(err)
	}

	// The store-owning collector's releases: one signed build, rolled out
	// to every pupil device.
	dataDir := t.TempDir()
	mgr, err := releases.Open(dataDir, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	key, err := releases.LoadPrivateKey(releases.PrivateKeyPath(dataDir))
	if err != nil {
		t.Fatal(err)
	}
	binary := bytes.Repeat([]byte("vigil-agent 1.5.0 "), 20000) // ~360 KB: several object chunks
	bin := filepath.Join(t.TempDir(), "agent")
	if err := os.WriteFile(bin, binary, 0o600); err != nil {
		t.Fatal(err)
	}
	if _, err := releases.Add(dataDir, key, bin, "1.5.0", runtime.GOOS, runtime.GOARCH, time.Now()); err != nil {
		t.Fatal(err)
	}
	mgr, err = releases.Open(dataDir, testLogger())
	if err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.StartRollout("pupils", "1.5.0", 100); err != nil {
		t.Fatal(err)
	}
	skv, err := storerBus.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	sobj, err := storerBus.ReleaseBinaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	mirror := &ReleasesMirror{KV: skv, Objects: sobj, Source: mgr}
	if err := mirror.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	// The collector's side of the events: an upgrade report is recorded
	// and the policy mirrored again (as collector/daemon does).
	go RunEvents(ctx, storerBus.JetStream(), DefaultSchool, func(string) (string, bool) { return DefaultSchool, true },
		func(ev *vigilv1.DeviceEvent) error {
			if rep := ev.GetUpgradeReport(); rep != nil {
				mgr.Record(ev.GetDeviceId(), rep)
				return mirror.Sync(ctx)
			}
			return nil
		}, nil, nil, testLogger())

	// The front-end.
	fkv, err := frontBus.Releases(ctx)
	if err != nil {
		t.Fatal(err)
	}
	fobj, err := frontBus.ReleaseBinaries(ctx)
	if err != nil {
		t.Fatal(err)
	}
	cacheDir := t.TempDir()
	c := &ReleasesCache{Objects: fobj, Dir: cacheDir, Reports: &EventPublisher{JS: frontBus.JetStream()}, Log: testLogger()}
	changes := make(chan struct{}, 64)
	go c.Run(ctx, fkv, func() { changes <- struct{}{} }, testLogger())
	wait := func(what string, cond func() bool) { t.Helper(); waitChanged(t, changes, 2*time.Minute, what, cond) }
	const dev, other = "devaaaaaaaaaaaaaaaaaaaaaaa", "devbbbbbbbbbbbbbbbbbbbbbbb"
	offer := func(c interface {
		Offer(device, group, running, goos, goarch string) *vigilv1.UpgradeOffer
	}, device string) *vigilv1.UpgradeOffer {
		return c.Offer(device, "pupils", "1.4.0", runtime.GOOS, runtime.GOARCH)
	}
	wait("the front-end offers the rollout", func() bool { return offer(c, dev) != nil })
	if want := offer(mgr, dev); !proto.Equal(offer(c, dev), want) || len(want.GetSignature()) == 0 {
		t.Fatalf("front-end offer %v, collector's %v", offer(c, dev), want)
	}
	if !bytes.Equal(c.PublicKey(), mgr.PublicKey()) {
		t.Error("the front-end's release key is not the collector's")
	}
	if c.Offer(dev, "staff", "1.4.0", runtime.GOOS, runtime.GOARCH) != nil || c.Offer(dev, "pupils", "1.5.0", runtime.GOOS, runtime.GOARCH) != nil {
		t.Error("offered to a group without a rollout, or to a device already running it")
	}

	req := &vigilv1.DownloadRequest{Version: "1.5.0", Os: runtime.GOOS, Arch: runtime.GOARCH}
	read := func() []byte {
		t.Helper()
		f, size, err := c.OpenOffered(dev, "pupils", "1.4.0", req)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		b, _ := io.ReadAll(f)
		if size != int64(len(binary)) {
			t.Errorf("size %d, want %d", size, len(binary))
		}
		return b
	}
	if !bytes.Equal(read(), binary) {
		t.Fatal("the binary served is not the release's")
	}
	// A damaged local copy is not served: it is fetched again.
	cached, _ := filepath.Glob(filepath.Join(cacheDir, "1=2E5=2E0-*"))
	if len(cached) != 1 {
		t.Fatalf("cached copies: %v", cached)
	}
	if err := os.WriteFile(cached[0], []byte("tampered"), 0o600); err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(read(), binary) {
		t.Fatal("a damaged local copy was served")
	}
	if _, _, err := c.OpenOffered(dev, "pupils", "1.4.0", &vigilv1.DownloadRequest{Version: "1.4.9", Os: runtime.GOOS, Arch: runtime.GOARCH}); err == nil {
		t.Error("a version not offered was served")
	}

	// The agent refuses it at the front-end: recorded by the collector,
	// and no longer offered to it (still to others).
	c.Record(dev, &vigilv1.UpgradeReport{Version: "1.5.0", Outcome: vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_REFUSED, Reason: "signature did not verify"})
	wait("the refusal recorded by the collector and mirrored", func() bool { return offer(c, dev) == nil })
	if f := mgr.Failures(dev)["1.5.0"]; f.Outcome != "refused" {
		t.Errorf("the collector's record of the refusal: %+v", f)
	}
	if offer(c, other) == nil {
		t.Error("another device lost the offer")
	}
}
