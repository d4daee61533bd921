package session

import (
	"context"
	"errors"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/screen"
)

type staticProbe []GraphicalSession

func (p staticProbe) GraphicalSessions(context.Context) ([]GraphicalSession, error) { return p, nil }

// TestVerify: who may attach for which display. The peer is what the OS
// said; only the display is the helper's claim.
func TestVerify(t *testing.T) {
	probe := staticProbe{
		{UID: 1001, Username: "pupil1", Display: ":1"},
		{UID: 1002, Username: "pupil2", Display: ":2"},
		{SID: "S-1-5-21-1-1001", Username: `SCHOOL\pupil3`, Display: "2", UID: -1},
	}
	s := NewServer(nil, probe, slog.Default())
	pupil1 := Peer{UID: 1001, Username: "pupil1", PID: 10, LoginUID: -1}
	for _, c := range []struct {
		name    string
		peer    Peer
		display string
		refuse  string // substring of the refusal; "" admits
		want    string // admitted display
	}{
		{"own display", pupil1, ":1", "", ":1"},
		{"own display, screen and unix host", pupil1, "unix:1.0", "", ":1"},
		{"another user's display", pupil1, ":2", "graphical session of user pupil2", ""},
		{"no such display", pupil1, ":7", "no graphical session on display :7 (theirs: :1)", ""},
		{"remote display (ssh -X)", pupil1, "localhost:10.0", "no local display", ""},
		{"no display", pupil1, "", "no local display", ""},
		{"user without a session", Peer{UID: 1003, Username: "pupil9", LoginUID: -1}, ":1", "graphical session of user pupil1", ""},
		{"user without any session", Peer{UID: 1003, Username: "pupil9", LoginUID: -1}, ":9", "pupil9 has no graphical session", ""},
		{"uid without an account", Peer{UID: 4242, LoginUID: -1}, ":1", "no user account", ""},
		{"su from another login", Peer{UID: 1001, Username: "pupil1", LoginUID: 1002}, ":1", "inside the login session of uid 1002", ""},
		{"own login", Peer{UID: 1001, Username: "pupil1", LoginUID: 1001}, ":1", "", ":1"},
		{"root, any display", Peer{UID: 0, Username: "root", LoginUID: -1}, ":5", "", ":5"},
		{"windows: token session", Peer{UID: -1, SID: "S-1-5-21-1-1001", Username: `SCHOOL\pupil3`, OSSession: "2", LoginUID: -1}, "", "", "2"},
		{"windows: claims another session", Peer{UID: -1, SID: "S-1-5-21-1-1001", Username: `SCHOOL\pupil3`, OSSession: "2", LoginUID: -1}, "1", "runs in session 2", ""},
		{"windows: another user's session", Peer{UID: -1, SID: "S-1-5-21-1-1009", Username: `SCHOOL\pupil4`, OSSession: "2", LoginUID: -1}, "", "graphical session of user SCHOOL\\pupil3", ""},
		{"windows: session 0", Peer{UID: -1, SID: "S-1-5-18", Username: "SYSTEM", OSSession: "0", LoginUID: -1}, "", "session 0", ""},
	} {
		p, err := s.verify(context.Background(), c.peer, Hello{Display: c.display})
		switch {
		case c.refuse == "" && err != nil:
			t.Errorf("%s: refused: %v", c.name, err)
		case c.refuse == "" && p.Display != c.want:
			t.Errorf("%s: admitted for %q, want %q", c.name, p.Display, c.want)
		case c.refuse != "" && (err == nil || !strings.Contains(err.Error(), c.refuse)):
			t.Errorf("%s: err %v, want a refusal containing %q", c.name, err, c.refuse)
		}
	}
}

// TestHelperUnreachableLogsOnce: a helper whose service is not there
// says so once, retries with backoff, and attaches (saying so) when the
// service appears; the window it has is reported then.
func TestHelperUnreachableLogsOnce(t *testing.T) {
	sock := testEndpoint(t)
	logs := &syncBuf{}
	log := slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() {
		cancel()
		wg.Wait()
		if t.Failed() {
			t.Logf("logs:\n%s", logs.String())
		}
	})
	src := &fakeSource{wins: make(chan screen.Window, 1)}
	wg.Go(func() {
		runHelper(ctx, src, HelperOptions{Socket: sock, Display: ":99", BackoffBase: 5 * time.Millisecond, BackoffMax: 20 * time.Millisecond}, log)
	})
	src.wins <- screen.Window{ID: 3, Title: "before the service"}
	eventually(t, "several retries", func() bool { return strings.Count(logs.String(), "still not available") >= 5 })
	if n := strings.Count(logs.String(), "cannot reach the agent service"); n != 1 {
		t.Fatalf("%d warnings for an unreachable service, want 1", n)
	}
	svc := &recordingService{}
	wg.Go(func() { NewServer(svc, selfProbe(t), log).ListenAndServe(ctx, sock) })
	eventually(t, "attached and the waiting window reported", func() bool {
		return strings.Contains(logs.String(), "reached the agent service again") && svc.titles() == "before the service"
	})
}

type recordingService struct {
	fakeService
	mu  sync.Mutex
	got []string
}

func (r *recordingService) Observe(ctx context.Context, p Peer, w screen.Window) (Decision, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.got = append(r.got, w.Title)
	return Decision{}, nil
}

func (r *recordingService) titles() string {
	r.mu.Lock()
	defer r.mu.Unlock()
	return strings.Join(r.got, "|")
}

// TestNotAttachedRefused: a process that has not said hello cannot report.
func TestNotAttachedRefused(t *testing.T) {
	sock := testEndpoint(t)
	svc := &recordingService{}
	logs := &syncBuf{}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	t.Cleanup(func() { cancel(); wg.Wait() })
	wg.Go(func() {
		NewServer(svc, selfProbe(t), slog.New(slog.NewTextHandler(logs, nil))).ListenAndServe(ctx, sock)
	})
	h := &helper{hc: newTestClient(sock)}
	var d Decision
	var err error
	eventually(t, "an answer", func() bool {
		err = h.post(ctx, "/v1/session/observe", screen.Window{Title: "kill myself"}, &d)
		// Until the service listens the dial fails: a *net.OpError on a
		// unix socket, a *fs.PathError (open) on a named pipe.
		var oe *net.OpError
		var pe *fs.PathError
		return !errors.As(err, &oe) && !errors.As(err, &pe)
	})
	if err == nil || !strings.Contains(err.Error(), "403") || svc.titles() != "" {
		t.Fatalf("unattached report: %v, recorded %q", err, svc.titles())
	}
	if !strings.Contains(logs.String(), "has not attached") {
		t.Errorf("refusal not logged: %s", logs.String())
	}
}

func newTestClient(sock string) *http.Client {
	return &http.Client{Timeout: 10 * time.Second, Transport: transport(sock)}
}
