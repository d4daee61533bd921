package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func testLogger() *slog.Logger {
	return slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
}

func startBus(t *testing.T, cfg Config) *Bus {
	t.Helper()
	if cfg.Logger == nil {
		cfg.Logger = testLogger()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	b, err := Start(ctx, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(b.Close)
	return b
}

func openStore(t *testing.T, dir string) *store.Store {
	t.Helper()
	s, err := store.Open(dir, store.Options{Logger: testLogger()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return s
}

func finding(dev string, seq uint64) *vigilv1.Finding {
	return &vigilv1.Finding{DeviceId: dev, Seq: seq, Category: "compliance", Check: "selftest", RuleId: "selftest",
		Severity: vigilv1.Severity_SEVERITY_INFO, Message: fmt.Sprintf("finding %d", seq), ObservedAt: timestamppb.Now()}
}

func batch(dev string, first, n int) []*vigilv1.Finding {
	var fs []*vigilv1.Finding
	for i := 0; i < n; i++ {
		fs = append(fs, finding(dev, uint64(first+i)))
	}
	return fs
}

// stored returns every (device, seq) in st with how often it is there.
func stored(t *testing.T, st *store.Store) map[string]int {
	t.Helper()
	got := map[string]int{}
	if err := st.ListFindings(context.Background(), store.Query{}, func(f *vigilv1.Finding) bool {
		got[fmt.Sprintf("%s/%d", f.DeviceId, f.Seq)]++
		return true
	}); err != nil {
		t.Fatal(err)
	}
	return got
}

func waitFor(t *testing.T, what string, d time.Duration, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// defaultSchool records every device in the default school: the tests of
// delivery publish findings of devices the store never enrolled.
func defaultSchool(string) (string, bool) { return "", true }

func runStorer(t *testing.T, b *Bus, st FindingStore, cfg StorerConfig) {
	t.Helper()
	if cfg.Records == nil {
		cfg.Records = defaultSchool
	}
	ctx, cancel := context.WithCancel(context.Background())
	s, err := NewStorer(ctx, b.JetStream(), st, cfg)
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { s.Run(ctx); close(done) }()
	t.Cleanup(func() { cancel(); <-done })
}

func streamMsgs(t *testing.T, b *Bus) uint64 {
	t.Helper()
	s, err := b.JetStream().Stream(context.Background(), StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := s.Info(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	return info.State.Msgs
}

// Everything the publisher acknowledged survives the server stopping
// before any storer ran, and is stored exactly once after the restart.
func TestAcknowledgedBatchesSurviveRestart(t *testing.T) {
	dir := t.TempDir()
	b := startBus(t, Config{Dir: dir})
	if jc := b.ns.JetStreamConfig(); jc == nil || !jc.SyncAlways {
		t.Fatalf("JetStream runs without fsync on every write: %+v", jc)
	}
	pub := &Publisher{JS: b.JetStream()}
	ctx := context.Background()
	want := map[string]int{}
	for d := 0; d < 5; d++ {
		dev := fmt.Sprintf("dev%02d", d)
		for k := 0; k < 10; k++ {
			fs := batch(dev, 1+k*20, 20)
			n, dups, err := pub.CommitFindings(ctx, fs)
			if err != nil || n != 20 || dups != 0 {
				t.Fatalf("publish %s batch %d: stored %d dups %d err %v", dev, k, n, dups, err)
			}
			for _, f := range fs {
				want[fmt.Sprintf("%s/%d", dev, f.Seq)] = 1
			}
		}
	}
	b.Close()

	b = startBus(t, Config{Dir: dir})
	if n := streamMsgs(t, b); n != 50 {
		t.Fatalf("after restart the stream holds %d messages, want the 50 acknowledged", n)
	}
	st := openStore(t, t.TempDir())
	runStorer(t, b, st, StorerConfig{})
	waitFor(t, "the stream drained into the store", 60*time.Second, func() bool { return streamMsgs(t, b) == 0 })
	got := stored(t, st)
	if len(got) != len(want) {
		t.Fatalf("store holds %d findings, want %d", len(got), len(want))
	}
	for k := range want {
		if got[k] != 1 {
			t.Fatalf("finding %s stored %d times", k, got[k])
		}
	}
}

// A resent batch inside the dupe window is recognised by its Nats-Msg-Id.
func TestResentBatchIsDuplicate(t *testing.T) {
	b := startBus(t, Config{Dir: t.TempDir()})
	pub := &Publisher{JS: b.JetStream()}
	fs := batch("devA", 1, 5)
	if n, _, err := pub.CommitFindings(context.Background(), fs); err != nil || n != 5 {
		t.Fatalf("first publish: %d %v", n, err)
	}
	n, dups, err := pub.CommitFindings(context.Background(), batch("devA", 1, 5))
	if err != nil || n != 0 || dups != 5 {
		t.Fatalf("resend: stored %d dups %d err %v, want 0 and 5", n, dups, err)
	}
	if got := streamMsgs(t, b); got != 1 {
		t.Fatalf("stream holds %d messages, want 1", got)
	}
	// Other seqs of the same device are a different batch.
	if n, _, err := pub.CommitFindings(context.Background(), batch("devA", 1, 6)); err != nil || n != 6 {
		t.Fatalf("longer batch: %d %v", n, err)
	}
}

// A message committed to the store but never acknowledged (the storer died
// between the two) is redelivered and lands as duplicates; and a batch
// published again after the dupe window is dropped by the store too.
func TestStorerIdempotentOnRedelivery(t *testing.T) {
	b := startBus(t, Config{Dir: t.TempDir(), DupeWindow: time.Second})
	pub := &Publisher{JS: b.JetStream()}
	ctx := context.Background()
	st := openStore(t, t.TempDir())
	for k := 0; k < 4; k++ {
		if _, _, err := pub.CommitFindings(ctx, batch("devB", 1+k*10, 10)); err != nil {
			t.Fatal(err)
		}
	}
	// A first storer takes every message and commits them, then "dies"
	// before acknowledging.
	cfg := StorerConfig{AckWait: time.Second, Records: defaultSchool}
	if _, err := NewStorer(ctx, b.JetStream(), st, cfg); err != nil {
		t.Fatal(err)
	}
	cons, err := b.JetStream().Consumer(ctx, StreamName, DurableName(""))
	if err != nil {
		t.Fatal(err)
	}
	// Exactly four: a longer fetch would see them redelivered after AckWait.
	mb, err := cons.Fetch(4, jetstream.FetchMaxWait(30*time.Second))
	if err != nil {
		t.Fatal(err)
	}
	taken := 0
	for m := range mb.Messages() {
		var fb vigilv1.FindingBatch
		if err := protoUnmarshal(m.Data(), &fb); err != nil {
			t.Fatal(err)
		}
		if _, _, err := st.CommitFindings(ctx, fb.Findings); err != nil {
			t.Fatal(err)
		}
		taken++
	}
	if taken != 4 {
		t.Fatalf("fetched %d messages, want 4", taken)
	}
	counting := &countingStore{FindingStore: st}
	runStorer(t, b, counting, cfg)
	waitFor(t, "the redelivered messages acknowledged", 60*time.Second, func() bool { return streamMsgs(t, b) == 0 })
	if s, d := counting.totals(); s != 0 || d != 40 {
		t.Fatalf("redelivery stored %d and found %d duplicates, want 0 and 40", s, d)
	}
	// Past the dupe window JetStream takes the batch again; the store does not.
	time.Sleep(1500 * time.Millisecond) // the window itself is what is tested here
	if n, _, err := pub.CommitFindings(ctx, batch("devB", 1, 10)); err != nil || n != 10 {
		t.Fatalf("publish after the window: %d %v", n, err)
	}
	waitFor(t, "the late resend drained", 60*time.Second, func() bool { return streamMsgs(t, b) == 0 })
	got := stored(t, st)
	if len(got) != 40 {
		t.Fatalf("store holds %d findings, want 40", len(got))
	}
	for k, n := range got {
		if n != 1 {
			t.Fatalf("%s stored %d times", k, n)
		}
	}
}

func TestSubjectsAndListenersStayLocal(t *testing.T) {
	if got := Subject("", "dev.1 *>"); got != "vigil.findings.default.dev_1___" {
		t.Fatalf("Subject = %q", got)
	}
	if _, err := Start(context.Background(), Config{Dir: t.TempDir(), ClientListen: "0.0.0.0:4222"}); err == nil {
		t.Fatal("a client listener on every interface was accepted")
	}
	if _, err := Start(context.Background(), Config{Dir: t.TempDir(), Cluster: &Cluster{Name: "c", Listen: "127.0.0.1:0", Routes: []string{"192.0.2.1:6222"}}}); err == nil {
		t.Fatal("a route off this machine was accepted")
	}
}

// TestStorerRefusesAnotherSchoolsSubject: a message is stored only by the
// storer of the school its device is recorded in, and only when its subject
// names that school. A publisher that puts a north device's findings under
// the default school's subjects (a front-end wrong or compromised) has them
// refused for good and counted, not stored; published under north they are
// stored once; a subject naming another device than the findings' is
// refused too.
func TestStorerRefusesAnotherSchoolsSubject(t *testing.T) {
	b := startBus(t, Config{Dir: t.TempDir()})
	st := openStore(t, t.TempDir())
	for _, d := range []store.Device{{DeviceID: "dev-n", School: "north"}, {DeviceID: "dev-d"}} {
		if err := st.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	records := func(id string) (string, bool) { d, ok := st.GetDevice(id); return d.School, ok }
	var mu sync.Mutex
	refused := map[string]int{}
	for _, school := range []string{"", "north"} {
		runStorer(t, b, st, StorerConfig{School: school, Records: records, OnRefused: func(school, why string) {
			mu.Lock()
			refused[school+"/"+why]++
			mu.Unlock()
		}})
	}
	ctx := context.Background()
	lying := &Publisher{JS: b.JetStream(), SchoolOf: func(string) (string, error) { return "", nil }}
	honest := &Publisher{JS: b.JetStream(), SchoolOf: func(id string) (string, error) { s, _ := records(id); return s, nil }}
	if _, _, err := lying.CommitFindings(ctx, batch("dev-n", 1, 3)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := honest.CommitFindings(ctx, batch("dev-n", 4, 3)); err != nil {
		t.Fatal(err)
	}
	if _, _, err := honest.CommitFindings(ctx, batch("dev-d", 1, 2)); err != nil {
		t.Fatal(err)
	}
	// A subject naming dev-d carrying dev-n's findings.
	data, err := proto.Marshal(&vigilv1.FindingBatch{Findings: batch("dev-n", 7, 1)})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := b.JetStream().Publish(ctx, Subject("north", "dev-d"), data); err != nil {
		t.Fatal(err)
	}
	waitFor(t, "every message consumed", 60*time.Second, func() bool {
		mu.Lock()
		defer mu.Unlock()
		return streamMsgs(t, b) == 0 && refused["default/"+RefusedWrongSchool] == 1 && refused["north/"+RefusedWrongDevice] == 1
	})
	got := stored(t, st)
	want := map[string]int{"dev-n/4": 1, "dev-n/5": 1, "dev-n/6": 1, "dev-d/1": 1, "dev-d/2": 1}
	if len(got) != len(want) {
		t.Fatalf("stored %v, want %v", got, want)
	}
	for k := range want {
		if got[k] != 1 {
			t.Fatalf("stored %v, want %v", got, want)
		}
	}
	if len(refused) != 2 {
		t.Fatalf("refusals %v", refused)
	}
}

// TestForgetSchool: a deleted school's queued findings, device events,
// durable consumers and device records leave the bus; another school's
// stay as they were.
func TestForgetSchool(t *testing.T) {
	b := startBus(t, Config{Dir: t.TempDir()})
	ctx := context.Background()
	if err := b.EnsureEvents(ctx); err != nil {
		t.Fatal(err)
	}
	kv, err := b.Devices(ctx)
	if err != nil {
		t.Fatal(err)
	}
	st := openStore(t, t.TempDir())
	m := &Mirror{KV: kv, Source: st, Logger: testLogger()}
	school := map[string]string{"dev-n": "north", "dev-d": ""}
	for id, sc := range school {
		if err := m.PutRecord(ctx, store.Device{DeviceID: id, School: sc}); err != nil {
			t.Fatal(err)
		}
	}
	for _, sc := range []string{"", "north"} {
		if _, err := NewStorer(ctx, b.JetStream(), st, StorerConfig{School: sc, Records: defaultSchool}); err != nil {
			t.Fatal(err)
		}
	}
	pub := &Publisher{JS: b.JetStream(), SchoolOf: func(id string) (string, error) { return school[id], nil }}
	events := &EventPublisher{JS: b.JetStream(), SchoolOf: pub.SchoolOf}
	for k := 0; k < 3; k++ {
		for id := range school {
			if _, _, err := pub.CommitFindings(ctx, batch(id, 1+k*5, 5)); err != nil {
				t.Fatal(err)
			}
			if err := events.DeviceEvent(ctx, &vigilv1.DeviceEvent{DeviceId: id}); err != nil {
				t.Fatal(err)
			}
		}
	}
	got, err := b.ForgetSchool(ctx, "north")
	if err != nil {
		t.Fatal(err)
	}
	if got.Findings != 3 || got.Events != 3 || got.Records != 1 {
		t.Fatalf("forgot %+v, want 3 batches, 3 events and 1 record", got)
	}
	if n := streamMsgs(t, b); n != 3 {
		t.Fatalf("the findings stream holds %d messages, want the default school's 3", n)
	}
	if _, err := kv.Get(ctx, "dev-n"); !errors.Is(err, jetstream.ErrKeyNotFound) {
		t.Fatalf("north's device record: %v", err)
	}
	if _, err := kv.Get(ctx, "dev-d"); err != nil {
		t.Fatalf("the default school's device record: %v", err)
	}
	if _, err := b.JetStream().Consumer(ctx, StreamName, DurableName("north")); !errors.Is(err, jetstream.ErrConsumerNotFound) {
		t.Fatalf("north's storer consumer: %v", err)
	}
	if _, err := b.JetStream().Consumer(ctx, StreamName, DurableName("")); err != nil {
		t.Fatalf("the default school's storer consumer: %v", err)
	}
	// Run again (a retry after a failure): nothing more to remove.
	if again, err := b.ForgetSchool(ctx, "north"); err != nil || again != (SchoolForgotten{}) {
		t.Fatalf("second run: %+v %v", again, err)
	}
	if _, err := b.ForgetSchool(ctx, ""); err == nil {
		t.Fatal("the default school was forgotten")
	}
}
