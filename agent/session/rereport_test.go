package session_test

import (
	"context"
	"image"
	"log/slog"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/checks/screenwatch"
	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/agent/session"
	"github.com/vigil-safeguarding/vigil/internal/testutil"
	"github.com/vigil-safeguarding/vigil/rules"
)

// desktop is a screen whose windows the test sets.
type desktop struct{ wins chan screen.Window }

func (d desktop) Watch(ctx context.Context, fn func(screen.Window)) error {
	for {
		select {
		case <-ctx.Done():
			return nil
		case w := <-d.wins:
			fn(w)
		}
	}
}

func (desktop) Screenshot(context.Context) (image.Image, error) {
	return image.NewRGBA(image.Rect(0, 0, 1280, 800)), nil
}

func (desktop) Close() error { return nil }

// counted passes everything to the real screen check and counts the
// observations it has answered.
type counted struct {
	*screenwatch.Hub
	answered atomic.Int32
}

func (c *counted) Observe(ctx context.Context, p session.Peer, w screen.Window) (session.Decision, error) {
	d, err := c.Hub.Observe(ctx, p, w)
	c.answered.Add(1)
	return d, err
}

// TestTitleBeforeRulesGetsScreenshot: a title the helper reports before the
// screen rules are active (the agent has just started, or is reloading its
// rules) becomes a finding with its screenshot once they are. The service
// cannot take a screenshot itself: it has the helper report again, and the
// helper, waiting for that decision, captures. (The screen check used to
// replay such a title on its own: its capture request had no helper to
// answer it, and the finding was recorded after EvidenceWait saying
// "screenshot not received in time", the flaky end-to-end test.)
func TestTitleBeforeRulesGetsScreenshot(t *testing.T) {
	const liveness = 60 * time.Second
	sock := session.SocketForTest(t)
	hub := screenwatch.NewHub()
	// Less than the wait below, so that a capture nobody answers shows as
	// such instead of as a timeout.
	hub.EvidenceWait = liveness / 2
	hub.SetRecipient("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
	svc := &counted{Hub: hub}
	logs := &testutil.SyncBuffer{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	srv := session.NewServer(svc, session.ProbeForTest(t), log)
	hub.UseHelpers(srv)

	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	src := desktop{wins: make(chan screen.Window)}
	wg.Go(func() { srv.ListenAndServe(ctx, sock) })
	wg.Go(func() { session.RunTestHelper(ctx, src, sock, log) })

	got := make(chan checks.Observation, 8)
	emit := func(_ context.Context, _ *rules.Rule, obs ...checks.Observation) (uint64, uint64, error) {
		for _, o := range obs {
			got <- o
		}
		return 1, 1, nil
	}
	rule := screenRule(t)
	// runRules makes the rules active until the returned stop is called
	// (the engine's restart of the checks after a rules change).
	runRules := func() (stop func()) {
		rctx, rcancel := context.WithCancel(ctx)
		done := make(chan struct{})
		go func() {
			defer close(done)
			screenwatch.New(hub).Run(rctx, []*rules.Rule{rule}, emit)
		}()
		return func() { rcancel(); <-done }
	}
	report := func(w screen.Window) {
		t.Helper()
		n := svc.answered.Load()
		src.wins <- w
		waitUntil(t, liveness, "the title answered while no rules are active", func() bool { return svc.answered.Load() > n })
	}
	finding := func(what string) {
		t.Helper()
		select {
		case o := <-got:
			if msg, ok := o.Details["evidence"]; ok || len(o.Evidence) != 1 || len(o.EvidenceData) != 1 {
				t.Fatalf("%s: finding without its screenshot (%v): %s", what, msg, o.Message)
			}
		case <-time.After(liveness):
			t.Fatalf("%s: no finding", what)
		}
	}

	// At start: the helper reports before the first rules arrive.
	report(screen.Window{ID: 7, Title: "how to kill myself", Process: "xterm"})
	stop := runRules()
	finding("title reported before the first rules")

	// During a reload: between the old rules stopping and the new starting.
	stop()
	report(screen.Window{ID: 8, Title: "kill myself tonight", Process: "xterm"})
	stop = runRules()
	defer stop()
	finding("title reported during a rules reload")
	select {
	case o := <-got:
		t.Errorf("extra finding: %s", o.Message)
	default:
	}
}

func screenRule(t *testing.T) *rules.Rule {
	t.Helper()
	lib := "#! rule: keywords-test\n#! category: self_harm\n#! severity: critical\nkill myself # test term\n"
	set, errs := rules.LoadFiles(map[string][]byte{
		"screen.yaml":    []byte("apiVersion: vigil/v1\nid: s\nname: s\nrationale: r\nseverity: high\ncategory: safeguarding\ncheck: screen\n"),
		"keywords/t.txt": []byte(lib),
	}, checks.MustRegistry(screenwatch.Check{}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return &set.Rules[0]
}

func waitUntil(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	for deadline := time.Now().Add(d); !cond(); {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}
