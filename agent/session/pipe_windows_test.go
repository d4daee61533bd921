package session

import (
	"context"
	"log/slog"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"

	"golang.org/x/sys/windows"

	"github.com/vigil-safeguarding/vigil/agent/screen"
)

// selfIdentity is this process's token identity, which the service must
// find at the other end of the pipe.
func selfIdentity(t *testing.T) (sid, name, session string) {
	t.Helper()
	s, n, sess, err := tokenIdentity(windows.GetCurrentProcessToken())
	if err != nil {
		t.Fatal(err)
	}
	return s, n, strconv.FormatUint(uint64(sess), 10)
}

// TestPipeAttachIdentity: over the named pipe (with the interactive-users
// SDDL) a helper attaches and reports; the service identifies it by
// GetNamedPipeClientProcessId and the client's process token (here this
// very process), admits it for its token's session whatever it claims,
// and attributes its report to that identity.
func TestPipeAttachIdentity(t *testing.T) {
	sid, name, sess := selfIdentity(t)
	t.Logf("this process: sid %s, user %q, session %s", sid, name, sess)
	if sess == "0" {
		t.Skip("running in session 0 (a service): no interactive session to attach for")
	}
	pipe := testEndpoint(t)
	logs := &syncBuf{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	svc := &peerRecorder{}
	srv := NewServer(svc, staticProbe{{UID: -1, SID: sid, Username: name, Display: sess}}, log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	wg.Go(func() { srv.ListenAndServe(ctx, pipe) })
	src := &fakeSource{wins: make(chan screen.Window, 1)}
	// The claim is ignored on Windows: the token's session decides.
	wg.Go(func() { runHelper(ctx, src, HelperOptions{Socket: pipe, Display: "99"}, log) })
	src.wins <- screen.Window{ID: 1, Title: "Notepad - kill myself"}
	eventually(t, "the report at the service", func() bool { return svc.last().Username != "" })
	p := svc.last()
	if p.PID != os.Getpid() || p.SID != sid || p.Username != name || p.OSSession != sess || p.Display != sess {
		t.Errorf("report attributed to %+v, want pid %d sid %s user %q session %s", p, os.Getpid(), sid, name, sess)
	}
	if a := srv.Attached(); len(a) != 1 || a[0].Peer.SID != sid {
		t.Errorf("attached: %+v", a)
	}
}

// TestPipeRefusesOtherSession: the service admits a pipe client only for
// a session of its own user.
func TestPipeRefusesOtherSession(t *testing.T) {
	_, _, sess := selfIdentity(t)
	pipe := testEndpoint(t)
	logs := &syncBuf{}
	log := slog.New(slog.NewTextHandler(logs, nil))
	// The probe says this session belongs to someone else.
	srv := NewServer(&peerRecorder{}, staticProbe{{UID: -1, SID: "S-1-5-21-0-0-0-4242", Username: `SCHOOL\other`, Display: sess}}, log)
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() { srv.ListenAndServe(ctx, pipe) })
	h := &helper{stream: newTestClient(pipe), opts: HelperOptions{Socket: pipe}}
	var err error
	eventually(t, "an answer", func() bool {
		_, err = h.attach(ctx, func(Welcome) {})
		_, refused := err.(refusedError)
		return refused
	})
	if want := `graphical session of user SCHOOL\other`; !strings.Contains(err.Error(), want) {
		t.Errorf("refusal %v, want %q", err, want)
	}
}

// TestWTSProbe: the real probe lists this process's session with its user
// when it runs in an interactive session (it needs LocalSystem for
// WTSQueryUserToken; as an ordinary user it lists nothing, which the test
// reports rather than fails).
func TestWTSProbe(t *testing.T) {
	sid, _, sess := selfIdentity(t)
	ss, err := NewProbe().GraphicalSessions(context.Background())
	if err != nil {
		t.Fatalf("WTS probe: %v", err)
	}
	t.Logf("WTS sessions: %+v", ss)
	for _, s := range ss {
		if s.Display == sess && s.SID != sid {
			t.Errorf("session %s listed for %s, but this process (sid %s) runs in it", sess, s.SID, sid)
		}
	}
}

type peerRecorder struct {
	fakeService
	mu sync.Mutex
	p  Peer
}

func (r *peerRecorder) Observe(ctx context.Context, p Peer, w screen.Window) (Decision, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.p = p
	return Decision{}, nil
}

func (r *peerRecorder) last() Peer {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.p
}
