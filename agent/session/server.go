package session

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/internal/contract"
)

// Hello is what a helper says when it attaches: the display it watches.
// It is a claim, checked against the sessions the OS knows of.
type Hello struct {
	Display string `json:"display"`
}

// Welcome is the service's answer to an admitted helper: who the service
// says it is (for the helper's log).
type Welcome struct {
	User    string `json:"user"`
	Display string `json:"display"`
}

// maxHelpersPerUser bounds the attachments one user can hold (a user can
// start any number of processes; the service's memory is not theirs).
const maxHelpersPerUser = 8

// keepalive: how often an attached helper's stream carries a byte, so a
// half-dead connection is noticed by both ends.
const keepalive = 25 * time.Second

// Server is the service's end of the session endpoint (a Unix socket in a
// runtime directory users can traverse, a named pipe on Windows). A helper
// first attaches (POST /v1/session/hello, held open for as long as the
// helper lives) claiming the display it watches; the server admits it only
// when the OS identity of the connected process owns a graphical session
// on that display (see verify). Every later request is accepted only from
// the same process (by its OS process id) and is attributed to the
// identity and display it was admitted with.
type Server struct {
	h     Handler
	probe SessionProbe
	log   *slog.Logger
	now   func() time.Time

	mu       sync.Mutex
	attached map[int]*attachment // by peer PID
}

type attachment struct {
	peer  Peer
	since time.Time
	// again wakes the hello handler to send the helper Notice.ReportAgain.
	again chan struct{}
}

// Attached is one admitted helper.
type Attached struct {
	Peer  Peer
	Since time.Time
}

// NewServer returns a server handing admitted helpers' reports to h.
func NewServer(h Handler, probe SessionProbe, log *slog.Logger) *Server {
	return &Server{h: h, probe: probe, log: log, now: time.Now, attached: map[int]*attachment{}}
}

// Attached lists the helpers attached now, oldest first.
func (s *Server) Attached() []Attached {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]Attached, 0, len(s.attached))
	for _, a := range s.attached {
		out = append(out, Attached{a.peer, a.since})
	}
	sort.Slice(out, func(i, j int) bool { return out[i].Since.Before(out[j].Since) })
	return out
}

// ReportAgain asks the helper attached as process pid to report its current
// window again (Notice.ReportAgain on its attachment), and reports whether
// one is attached. A helper whose attachment ends before the notice is
// written reports its window anyway when it attaches again.
func (s *Server) ReportAgain(pid int) bool {
	s.mu.Lock()
	a := s.attached[pid]
	s.mu.Unlock()
	if a == nil {
		return false
	}
	select {
	case a.again <- struct{}{}:
	default: // one already waiting to be sent says the same
	}
	return true
}

// Probe is the server's session probe (shared with the helper-missing
// check, so both agree on what a graphical session is).
func (s *Server) Probe() SessionProbe { return s.probe }

// ListenAndServe serves helpers on path (the platform's endpoint, see
// Listen) until ctx ends.
func (s *Server) ListenAndServe(ctx context.Context, path string) error {
	l, err := Listen(path)
	if err != nil {
		return err
	}
	s.log.Info("session endpoint ready", "path", path)
	return s.Serve(ctx, l)
}

type connInfo struct {
	peer Peer
	err  error
}

type connKey struct{}

// Serve serves helpers on l until ctx ends.
func (s *Server) Serve(ctx context.Context, l net.Listener) error {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/session/hello", s.hello)
	mux.HandleFunc("POST /v1/session/observe", s.admitted(func(w http.ResponseWriter, r *http.Request, p Peer) {
		var win screen.Window
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&win); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d, err := s.h.Observe(r.Context(), p, win)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, d)
	}))
	mux.HandleFunc("POST /v1/session/ocr", s.admitted(func(w http.ResponseWriter, r *http.Request, p Peer) {
		var t OCRText
		// JSON may escape a byte as 6 (\u003c): bound the body, then the text.
		if err := json.NewDecoder(io.LimitReader(r.Body, 6*MaxOCRText+16<<10)).Decode(&t); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		if len(t.Text) > MaxOCRText {
			http.Error(w, "ocr text too long", http.StatusBadRequest)
			return
		}
		d, err := s.h.OCR(r.Context(), p, t)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		writeJSON(w, d)
	}))
	mux.HandleFunc("POST /v1/session/evidence/{token}", s.admitted(func(w http.ResponseWriter, r *http.Request, p Peer) {
		data, err := io.ReadAll(io.LimitReader(r.Body, MaxEvidence+1))
		if err != nil {
			http.Error(w, "evidence unreadable", http.StatusBadRequest)
			return
		}
		ev := Evidence{Data: data, MediaType: r.Header.Get(headerMediaType), Dropped: contract.Truncate(r.Header.Get(headerDropped), 512)}
		if len(data) > MaxEvidence {
			// The finding goes without it, saying why, rather than waiting
			// for a screenshot that will not come.
			ev = Evidence{Dropped: fmt.Sprintf("screenshot of more than %d bytes refused (the evidence budget)", MaxEvidence)}
			s.h.Evidence(r.Context(), p, r.PathValue("token"), ev)
			http.Error(w, ev.Dropped, http.StatusRequestEntityTooLarge)
			return
		}
		if err := s.h.Evidence(r.Context(), p, r.PathValue("token"), ev); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		BaseContext:       func(net.Listener) context.Context { return ctx },
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			p, err := peerOf(c)
			return context.WithValue(ctx, connKey{}, connInfo{p, err})
		},
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		// Attached helpers hold their hello open; Shutdown does not wait
		// for hijack-free long requests forever, Close ends them.
		srv.Close()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

// refuse answers 403 with reason and logs it with the peer's identity.
func (s *Server) refuse(w http.ResponseWriter, r *http.Request, p Peer, reason string) {
	s.log.Warn("session helper refused", "reason", reason, "uid", p.UID, "sid", p.SID, "user", p.Username, "pid", p.PID, "path", r.URL.Path)
	http.Error(w, reason, http.StatusForbidden)
}

// hello admits a helper and holds the request open while it lives: the
// attachment ends when the helper's connection does.
func (s *Server) hello(w http.ResponseWriter, r *http.Request) {
	ci := r.Context().Value(connKey{}).(connInfo)
	if ci.err != nil {
		s.refuse(w, r, ci.peer, "the OS gave no identity for this connection: "+ci.err.Error())
		return
	}
	var hi Hello
	if err := json.NewDecoder(io.LimitReader(r.Body, 4<<10)).Decode(&hi); err != nil {
		http.Error(w, "hello: "+err.Error(), http.StatusBadRequest)
		return
	}
	p, err := s.verify(r.Context(), ci.peer, hi)
	if err != nil {
		s.refuse(w, r, ci.peer, err.Error())
		return
	}
	a := &attachment{peer: p, since: s.now(), again: make(chan struct{}, 1)}
	s.mu.Lock()
	n := 0
	for _, o := range s.attached {
		if o.peer.key() == p.key() && o.peer.PID != p.PID {
			n++
		}
	}
	if n >= maxHelpersPerUser {
		s.mu.Unlock()
		s.refuse(w, r, p, fmt.Sprintf("user %s already has %d session helpers attached", p.Username, n))
		return
	}
	// A helper re-attaching (its old connection not yet noticed as gone)
	// replaces its old attachment.
	s.attached[p.PID] = a
	s.mu.Unlock()
	defer func() {
		s.mu.Lock()
		if s.attached[p.PID] == a {
			delete(s.attached, p.PID)
		}
		s.mu.Unlock()
		s.log.Info("session helper detached", "user", p.Username, "uid", p.UID, "sid", p.SID, "display", p.Display, "pid", p.PID)
	}()
	s.log.Info("session helper attached", "user", p.Username, "uid", p.UID, "sid", p.SID, "display", p.Display, "pid", p.PID, "login_uid", p.LoginUID)
	writeJSON(w, Welcome{User: p.Username, Display: p.Display})
	fl, _ := w.(http.Flusher)
	if fl != nil {
		fl.Flush()
	}
	t := time.NewTicker(keepalive)
	defer t.Stop()
	for {
		select {
		case <-r.Context().Done():
			return
		case <-a.again:
			if err := json.NewEncoder(w).Encode(Notice{ReportAgain: true}); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		case <-t.C:
			if _, err := io.WriteString(w, "\n"); err != nil {
				return
			}
			if fl != nil {
				fl.Flush()
			}
		}
	}
}

// admitted wraps a handler so that it runs only for a process that has
// attached, with the identity it was admitted with.
func (s *Server) admitted(f func(http.ResponseWriter, *http.Request, Peer)) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		ci := r.Context().Value(connKey{}).(connInfo)
		if ci.err != nil {
			s.refuse(w, r, ci.peer, "the OS gave no identity for this connection: "+ci.err.Error())
			return
		}
		s.mu.Lock()
		a := s.attached[ci.peer.PID]
		s.mu.Unlock()
		if a == nil || ci.peer.PID == 0 || a.peer.key() != ci.peer.key() {
			s.refuse(w, r, ci.peer, "this process has not attached: POST /v1/session/hello first")
			return
		}
		f(w, r, a.peer)
	}
}

// verify decides whether the connected process p may attach for the
// display it claims, and returns p with the verified display.
//
// The rule: the process's OS user must own a graphical session, and the
// display it names must be one of that user's sessions (a session of
// another user, or one nobody is logged in to, is refused). Where the OS
// places the process in a session it cannot leave (Windows: the token's
// session id) that session is the claim, whatever the helper said; on
// Linux a process whose audit login uid (pam_loginuid) is another user's
// was started from inside that user's login (su, sudo) and is refused.
// Root (uid 0) is not checked against sessions: it can read the state dir
// and write the spool itself, so refusing it would protect nothing; it is
// attributed to root.
func (s *Server) verify(ctx context.Context, p Peer, hi Hello) (Peer, error) {
	if p.Username == "" {
		return p, fmt.Errorf("uid %d / sid %q has no user account on this machine", p.UID, p.SID)
	}
	claim := NormalizeDisplay(hi.Display)
	if p.OSSession == "0" {
		return p, errors.New("the process runs in session 0 (services), not in an interactive session")
	}
	if p.OSSession != "" {
		if hi.Display != "" && claim != p.OSSession {
			return p, fmt.Errorf("claims session %q but the process runs in session %s", hi.Display, p.OSSession)
		}
		claim = p.OSSession
	}
	if claim == "" {
		return p, fmt.Errorf("no local display named (got %q)", hi.Display)
	}
	p.Display = claim
	if p.UID == 0 {
		return p, nil
	}
	if p.LoginUID >= 0 && p.LoginUID != p.UID {
		return p, fmt.Errorf("the process runs as uid %d inside the login session of uid %d (su/sudo from another user's session)", p.UID, p.LoginUID)
	}
	sessions, err := s.probe.GraphicalSessions(ctx)
	if err != nil {
		return p, fmt.Errorf("list graphical sessions: %w", err)
	}
	var own []string
	for _, gs := range sessions {
		if p.owns(gs) {
			own = append(own, gs.Display)
		}
	}
	for _, gs := range sessions {
		if gs.Display != claim {
			continue
		}
		if p.owns(gs) {
			return p, nil
		}
		return p, fmt.Errorf("display %s is the graphical session of user %s, not of %s", claim, gs.Username, p.Username)
	}
	if len(own) == 0 {
		return p, fmt.Errorf("user %s has no graphical session on this machine", p.Username)
	}
	slices.Sort(own)
	return p, fmt.Errorf("user %s has no graphical session on display %s (theirs: %s)", p.Username, claim, strings.Join(own, ", "))
}
