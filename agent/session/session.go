// Package session connects the per-user session helper to the agent
// service. A system service cannot see users' desktops (Windows session 0,
// macOS per-user consent, Linux per-user X sessions), so the same
// vigil-agent binary runs as `vigil-agent session` at each login, watches
// that user's screen and hands what it sees to the service over a Unix
// socket. The service owns rules, spool and uplink; the helper holds no
// keys (only the collector's public evidence recipient) and can do nothing
// but report observations and the evidence the service asked for. The
// service learns who is talking from the socket's peer credentials, never
// from what the helper claims.
package session

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/user"
	"runtime/debug"
	"strconv"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/screen"
)

// Peer is the verified identity of a connected helper.
type Peer struct {
	UID      int    // -1 where the OS gives no peer credentials
	PID      int    // 0 when unknown
	Username string // looked up from UID
}

// Decision is the service's answer to an observation.
type Decision struct {
	// Capture asks for a screenshot now, encrypted to Recipient, no wider
	// than MaxWidth, sent back with Token.
	Capture   bool   `json:"capture"`
	Token     string `json:"token,omitempty"`
	MaxWidth  int    `json:"max_width,omitempty"`
	Recipient string `json:"recipient,omitempty"`
}

// Handler is implemented by the screen check in the service.
type Handler interface {
	Observe(ctx context.Context, p Peer, w screen.Window) (Decision, error)
	Evidence(ctx context.Context, p Peer, token string, data []byte) error
}

type peerKey struct{}

// MaxEvidence bounds one uploaded screenshot (encrypted PNG).
const MaxEvidence = 4 << 20

// Serve listens on path for session helpers until ctx ends. The socket is
// connectable by every local user (each user's helper must reach it);
// every request is attributed by peer credentials.
func Serve(ctx context.Context, path string, h Handler, log *slog.Logger) error {
	os.Remove(path)
	l, err := net.Listen("unix", path)
	if err != nil {
		return fmt.Errorf("listen on session socket: %w", err)
	}
	if err := os.Chmod(path, 0o666); err != nil {
		l.Close()
		return err
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/session/observe", func(w http.ResponseWriter, r *http.Request) {
		p := r.Context().Value(peerKey{}).(Peer)
		var win screen.Window
		if err := json.NewDecoder(io.LimitReader(r.Body, 64<<10)).Decode(&win); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		d, err := h.Observe(r.Context(), p, win)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(d)
	})
	mux.HandleFunc("POST /v1/session/evidence/{token}", func(w http.ResponseWriter, r *http.Request) {
		p := r.Context().Value(peerKey{}).(Peer)
		data, err := io.ReadAll(io.LimitReader(r.Body, MaxEvidence+1))
		if err != nil || len(data) > MaxEvidence {
			http.Error(w, "evidence too large or unreadable", http.StatusBadRequest)
			return
		}
		if err := h.Evidence(r.Context(), p, r.PathValue("token"), data); err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	})
	srv := &http.Server{
		Handler:           mux,
		ReadHeaderTimeout: 5 * time.Second,
		ConnContext: func(ctx context.Context, c net.Conn) context.Context {
			return context.WithValue(ctx, peerKey{}, peerOf(c))
		},
	}
	go func() {
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		os.Remove(path)
	}()
	log.Info("session socket ready", "path", path)
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

func peerOf(c net.Conn) Peer {
	p := Peer{UID: -1}
	uc, ok := c.(*net.UnixConn)
	if !ok {
		return p
	}
	uid, pid, err := peerCredentials(uc)
	if err != nil {
		return p
	}
	p.UID, p.PID = uid, pid
	if u, err := user.LookupId(strconv.Itoa(uid)); err == nil {
		p.Username = u.Username
	}
	return p
}

// RunHelper is `vigil-agent session`: watch this user's screen and report
// to the service at sockPath until ctx ends. Title changes are coalesced:
// while one observation is in flight only the latest window waits, so a
// page flickering through a thousand titles costs a handful of requests.
func RunHelper(ctx context.Context, sockPath, display string, log *slog.Logger) error {
	src, err := screen.Open(display)
	if err != nil {
		return err
	}
	defer src.Close()
	hc := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		var d net.Dialer
		return d.DialContext(ctx, "unix", sockPath)
	}}}
	latest := make(chan screen.Window, 1)
	go func() {
		for {
			select {
			case <-ctx.Done():
				return
			case w := <-latest:
				if err := report(ctx, hc, src, w); err != nil && ctx.Err() == nil {
					log.Warn("report to the agent service", "err", err)
				}
			}
		}
	}()
	log.Info("session helper watching the screen", "display", display)
	return src.Watch(ctx, func(w screen.Window) {
		select {
		case <-latest:
		default:
		}
		latest <- w
	})
}

func report(ctx context.Context, hc *http.Client, src screen.Source, w screen.Window) error {
	body, _ := json.Marshal(w)
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://vigil-agent/v1/session/observe", bytes.NewReader(body))
	resp, err := hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("observe: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	var d Decision
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil {
		return err
	}
	if !d.Capture {
		return nil
	}
	img, err := src.Screenshot(ctx)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	png, err := screen.EncodePNG(screen.Downscale(img, d.MaxWidth))
	if err != nil {
		return err
	}
	ct, err := screen.Encrypt(d.Recipient, png)
	img, png = nil, nil
	// A capture briefly needs ~15 MB (the frame, its copy, the PNG); hand it
	// back to the OS instead of keeping the helper's RSS at its peak.
	defer debug.FreeOSMemory()
	if err != nil {
		return err
	}
	req, _ = http.NewRequestWithContext(ctx, "POST", "http://vigil-agent/v1/session/evidence/"+d.Token, bytes.NewReader(ct))
	resp2, err := hc.Do(req)
	if err != nil {
		return err
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusNoContent {
		return fmt.Errorf("evidence upload: %s", resp2.Status)
	}
	return nil
}
