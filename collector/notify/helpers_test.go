package notify

import (
	"context"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"filippo.io/age"
	"golang.org/x/crypto/bcrypt"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/console"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func TestMain(m *testing.M) {
	auth.BcryptCost = bcrypt.MinCost
	os.Exit(m.Run())
}

const testDevice = "abcdefghijklmnopqrstuvwxyz"

// env is a real store with the real console as the notifier's Routing,
// sharing one controllable clock.
type env struct {
	t    *testing.T
	st   *store.Store
	cons *console.Server

	mu  sync.Mutex
	now time.Time // zero means time.Now
	seq uint64
}

func newEnv(t *testing.T) *env {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	key, err := age.GenerateX25519Identity()
	if err != nil {
		t.Fatal(err)
	}
	e := &env{t: t, st: st}
	if e.cons, err = console.New(console.Config{Store: st, EvidenceKey: key, Logger: quiet, Now: e.clock,
		Connected: func(string) bool { return false }}); err != nil {
		t.Fatal(err)
	}
	return e
}

// notifier is New over the env's store, console and clock with cfg's mail settings.
func (e *env) notifier(cfg Config) *Notifier {
	cfg.Store, cfg.Routing, cfg.Schools, cfg.Now = e.st, e.cons, &tenancy.Policy{Dir: e.st}, e.clock
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	return New(cfg)
}

// run runs the alert notifier until the test ends.
func (e *env) run(n *Notifier) {
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := n.Run(ctx); err != nil {
			e.t.Errorf("notifier: %v", err)
		}
	}()
	e.t.Cleanup(func() { cancel(); <-done })
}

func (e *env) clock() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.now.IsZero() {
		return time.Now()
	}
	return e.now
}

func (e *env) setNow(t time.Time) {
	e.mu.Lock()
	e.now = t
	e.mu.Unlock()
}

func (e *env) user(username, role string, chair bool, email string) store.User {
	e.t.Helper()
	u, err := auth.NewUser(username, strings.ToUpper(username[:1])+username[1:]+" Name", role, "correct horse battery", email, chair, time.Now())
	if err != nil {
		e.t.Fatal(err)
	}
	if err := e.st.CreateUser(u); err != nil {
		e.t.Fatal(err)
	}
	return u
}

func (e *env) people(ps ...store.Person) {
	e.t.Helper()
	if err := e.st.PutPeople(ps); err != nil {
		e.t.Fatal(err)
	}
	if err := e.cons.ReloadPeople(); err != nil {
		e.t.Fatal(err)
	}
}

// alert commits a screen finding about user through the store's real
// commit path (which writes the alert index and feeds SubscribeAlerts) and
// returns its device and seq.
func (e *env) alert(user, category string, sev vigilv1.Severity, term string, at time.Time) (string, uint64) {
	e.t.Helper()
	e.mu.Lock()
	e.seq++
	seq := e.seq
	e.mu.Unlock()
	f := &vigilv1.Finding{DeviceId: testDevice, Seq: seq, Group: "pupils", ObservedAt: timestamppb.New(at), User: user,
		Check: "screen", RuleId: "screen-keywords", Severity: sev, Category: category,
		Message: category + " term in the active window title",
		ScreenMatch: &vigilv1.ScreenMatch{Term: term, Library: "keywords-" + category, Category: category,
			Context: "how to " + term, WindowTitle: "how to " + term, Process: "firefox", User: user, Source: "window_title"}}
	if _, _, err := e.st.CommitFindings(context.Background(), []*vigilv1.Finding{f}); err != nil {
		e.t.Fatal(err)
	}
	return testDevice, seq
}
