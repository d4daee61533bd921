package removable

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/vigil-safeguarding/vigil/rules"
)

const (
	fixtureSys = "testdata/linux/sys"
	fixtureDev = "testdata/linux/dev"
	stickKey   = "usb:0781:5581/4C530001230529114283/1"
)

// TestMountEventWakesWait: on the real /proc/self/mountinfo a mount wakes
// Wait through POLLPRI long before its interval. Needs mount(2) (root);
// skipped where the kernel refuses it. Nothing shows when Wait has started
// polling, so the test mounts (and unmounts) again every 2 s until Wait
// returns; with a 120 s interval only an event can wake it within 60 s,
// however slow the machine.
func TestMountEventWakesWait(t *testing.T) {
	const interval = 120 * time.Second
	src := newLinuxSource("/proc/self/mountinfo", "/sys", "/dev", interval)
	defer src.Close()
	ctx, cancel := context.WithTimeout(context.Background(), interval+30*time.Second)
	defer cancel()
	src.List(ctx)
	dir := t.TempDir()
	woke := make(chan time.Duration, 1)
	start := time.Now()
	go func() {
		src.Wait(ctx)
		woke <- time.Since(start)
	}()
	for mounts := 1; ; mounts++ {
		if err := unix.Mount("vigil-test", dir, "tmpfs", 0, "size=1m"); err != nil {
			cancel()
			<-woke
			t.Skipf("cannot mount a tmpfs here: %v", err)
		}
		select {
		case d := <-woke:
			unix.Unmount(dir, unix.MNT_DETACH)
			if d > interval/2 {
				t.Errorf("Wait returned after %v: the mount event did not wake it", d)
			}
			t.Logf("Wait returned after %v and %d mount(s) (interval %v)", d, mounts, interval)
			return
		case <-time.After(2 * time.Second):
			unix.Unmount(dir, unix.MNT_DETACH)
		}
		if time.Since(start) > interval/2 {
			t.Fatalf("Wait did not return within %v despite %d mounts", interval/2, mounts)
		}
	}
}

// listedSource signals when Run has read the mount table once.
type listedSource struct {
	source
	once  sync.Once
	first chan struct{}
}

func (s *listedSource) List(ctx context.Context) ([]Medium, error) {
	m, err := s.source.List(ctx)
	s.once.Do(func() { close(s.first) })
	return m, err
}

// TestLinuxFixturePoll: Poll lists the mounted removable media of the
// fixture: a USB stick, a USB SSD (removable=0 but USB) and an SD card;
// not the internal SATA disk, the soldered eMMC, a bind mount or a loop.
func TestLinuxFixturePoll(t *testing.T) {
	dev := t.TempDir()
	copyLinks(t, filepath.Join(fixtureDev, "disk"), filepath.Join(dev, "disk"))
	// udev escapes spaces in label link names.
	if err := os.Symlink("../../sdc1", filepath.Join(dev, "disk", "by-label", `T7\x20Shield`)); err != nil {
		t.Fatal(err)
	}
	src := newLinuxSource("testdata/linux/mountinfo.all", fixtureSys, dev, time.Second)
	defer src.Close()
	rec := newRecorder()
	rule := ruleFrom(t, "rm", "  allow: []\n")
	if err := poll(context.Background(), rule, Params{}, src, rec.emit); err != nil {
		t.Fatal(err)
	}
	obs := rec.list("")
	if len(obs) != 3 {
		t.Fatalf("want 3 observations, got %d: %+v", len(obs), obs)
	}
	stick := obs[0]
	if stick.Key != stickKey || stick.Status != "" {
		t.Errorf("key %q status %q", stick.Key, stick.Status)
	}
	if want := "removable storage mounted: SanDisk Ultra 32 GB (sdb1, label KEYS) at /media/pupil/KEYS"; stick.Message != want {
		t.Errorf("message %q, want %q", stick.Message, want)
	}
	want := map[string]any{"device": "sdb1", "vendor": "SanDisk", "model": "Ultra", "serial": "4C530001230529114283", "label": "KEYS",
		"size_bytes": float64(62519296 * 512), "fs_type": "vfat", "mount_point": "/media/pupil/KEYS", "bus": "usb", "event": "present", "hardware_id": "0781:5581"}
	for k, v := range want {
		if stick.Details[k] != v {
			t.Errorf("details[%s] = %v, want %v", k, stick.Details[k], v)
		}
	}
	ssd := obs[1]
	if ssd.Key != "usb:04e8:4001/S6XANS0W123456A/1" || ssd.Details["mount_point"] != "/media/pupil/T7 Shield" || ssd.Details["label"] != "T7 Shield" || ssd.Details["fs_type"] != "exfat" {
		t.Errorf("usb ssd: %+v", ssd)
	}
	sd := obs[2]
	if sd.Details["device"] != "mmcblk1" || sd.Details["bus"] != "mmc" || sd.Details["serial"] != "0x9e1f2a3b" || sd.Key != "mmc:0x000003:0x5344/0x9e1f2a3b" {
		t.Errorf("sd card: %+v", sd)
	}
	// Nothing removable mounted: no observations.
	rec2 := newRecorder()
	src2 := newLinuxSource("testdata/linux/mountinfo.base", fixtureSys, fixtureDev, time.Second)
	defer src2.Close()
	if err := poll(context.Background(), rule, Params{}, src2, rec2.emit); err != nil || len(rec2.list("")) != 0 {
		t.Errorf("base: %v %+v", err, rec2.list(""))
	}
	// Unreadable mount table is an error, not silence.
	src3 := newLinuxSource(filepath.Join(t.TempDir(), "none"), fixtureSys, fixtureDev, time.Second)
	if err := poll(context.Background(), rule, Params{}, src3, rec2.emit); err == nil {
		t.Error("missing mountinfo: no error")
	}
}

func copyLinks(t *testing.T, from, to string) {
	t.Helper()
	err := filepath.WalkDir(from, func(p string, d os.DirEntry, err error) error {
		if err != nil {
			return err
		}
		rel, _ := filepath.Rel(from, p)
		dst := filepath.Join(to, rel)
		if d.IsDir() {
			return os.MkdirAll(dst, 0o755)
		}
		target, err := os.Readlink(p)
		if err != nil {
			return err
		}
		return os.Symlink(target, dst)
	})
	if err != nil {
		t.Fatal(err)
	}
}

// swap replaces the mount table atomically, as the kernel's view changes.
func swap(t *testing.T, dst, fixture string) {
	t.Helper()
	data, err := os.ReadFile(fixture)
	if err != nil {
		t.Fatal(err)
	}
	tmp := dst + ".tmp"
	if err := os.WriteFile(tmp, data, 0o644); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, dst); err != nil {
		t.Fatal(err)
	}
}

// TestLinuxRunInsertion: while Run watches, the stick appears in the
// mount table; one observation arrives (at the next 1 s poll; the latency
// is logged) for the rule without an allow list and none for the rule that
// allow-lists its serial. Removal is reported when asked for.
func TestLinuxRunInsertion(t *testing.T) {
	mi := filepath.Join(t.TempDir(), "mountinfo")
	swap(t, mi, "testdata/linux/mountinfo.base")
	src := &listedSource{source: newLinuxSource(mi, fixtureSys, fixtureDev, time.Second), first: make(chan struct{})} // the production interval
	open := ruleFrom(t, "open", "  report_removal: true\n")
	allow := ruleFrom(t, "allow", "  allow:\n    - serial: \"4C530001*\"\n      vendor: sandisk\n      reason: school-issued exam stick\n")
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []*rules.Rule{open, allow}, rec.emit, src, slog.Default()) }()
	defer func() {
		cancel()
		select {
		case <-done:
		case <-time.After(3 * time.Second):
			t.Error("Run did not return within 3s of cancel")
		}
		src.Close()
	}()
	select { // Run has read the base table, so the stick is an insertion
	case <-src.first:
	case <-time.After(30 * time.Second):
		t.Fatal("Run did not read the mount table within 30 s")
	}

	start := time.Now()
	swap(t, mi, "testdata/linux/mountinfo.stick")
	var got recorded
	select {
	case got = <-rec.ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("no observation within 30 s of the insertion")
	}
	t.Logf("insertion -> observation latency: %v", time.Since(start))
	if got.rule != "open" || got.obs.Key != stickKey ||
		got.obs.Message != "removable storage inserted: SanDisk Ultra 32 GB (sdb1, label KEYS) mounted at /media/pupil/KEYS" {
		t.Errorf("got %+v", got)
	}
	time.Sleep(1500 * time.Millisecond) // more polls: no repeat, nothing for the allow-listed rule
	if n := len(rec.list("open")); n != 1 {
		t.Errorf("open rule: %d observations, want 1: %+v", n, rec.list("open"))
	}
	if n := len(rec.list("allow")); n != 0 {
		t.Errorf("allow-listed serial reported: %+v", rec.list("allow"))
	}

	swap(t, mi, "testdata/linux/mountinfo.base")
	select {
	case got = <-rec.ch:
	case <-time.After(30 * time.Second):
		t.Fatalf("no removal observation within 30 s")
	}
	if got.rule != "open" || got.obs.Key != stickKey+"#removed" || got.obs.Details["event"] != "removed" ||
		got.obs.Message != "removable storage removed: SanDisk Ultra 32 GB (sdb1, label KEYS) from /media/pupil/KEYS" {
		t.Errorf("removal: %+v", got)
	}
}

// TestRunReportsPresentAtStart: media mounted before Run starts are
// reported once as present (keys are stable, so the engine's dedupe
// absorbs restarts).
func TestRunReportsPresentAtStart(t *testing.T) {
	src := newLinuxSource("testdata/linux/mountinfo.stick", fixtureSys, fixtureDev, 50*time.Millisecond)
	rec := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	run(ctx, []*rules.Rule{ruleFrom(t, "r", "  allow: []\n")}, rec.emit, src, slog.Default())
	src.Close()
	obs := rec.list("")
	if len(obs) != 1 || obs[0].Details["event"] != "present" || obs[0].Key != stickKey {
		t.Errorf("%+v", obs)
	}
}

// TestWaitEndsWithContext: Wait blocks in one poll for its whole interval
// (no wake-ups in between, the idle agent's main cost before) and still
// returns promptly when its context ends, every time (a wake-up left by
// one context is drained by the next Wait).
func TestWaitEndsWithContext(t *testing.T) {
	src := newLinuxSource("/proc/self/mountinfo", "/sys", "/dev", time.Hour)
	defer src.Close()
	for i := range 3 {
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { src.Wait(ctx); close(done) }()
		time.Sleep(100 * time.Millisecond)
		cancel()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: Wait did not return within 10 s of its context ending", i)
		}
	}
}
