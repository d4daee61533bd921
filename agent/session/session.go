// Package session connects the per-user session helper to the agent
// service. A system service cannot see users' desktops (Windows session 0,
// macOS per-user consent, Linux per-user X sessions), so the same
// vigil-agent binary runs as `vigil-agent session` at each login, watches
// that user's screen and hands what it sees to the service over a Unix
// socket. The service owns rules, spool and uplink; the helper holds no
// keys (only the collector's public evidence recipient) and can do nothing
// but report observations, the text it read on the screen when the
// service asked for OCR, and the evidence the service asked for. The
// service learns who is talking from the socket's peer credentials, never
// from what the helper claims.
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
	"os"
	"os/user"
	"strconv"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/internal/contract"
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
	// MaxBytes is the evidence budget: the encrypted screenshot must fit
	// it (the collector refuses more; internal/contract). The helper
	// shrinks and recompresses to fit, or reports the screenshot dropped.
	MaxBytes int `json:"max_bytes,omitempty"`

	// OCR settings, repeated in every decision so that the helper, which
	// holds no rules, always follows the current ones; all zero: no OCR.
	// OCR asks for one read of the screen's text (tesseract) now, sent
	// back with /v1/session/ocr. OCREveryMS > 0 asks for a read that often
	// (the rule's `on: interval`), whatever the titles do.
	// OCRMinIntervalMS: never two reads closer than this; a read asked for
	// sooner waits until then (the latest window is read).
	OCR              bool  `json:"ocr,omitempty"`
	OCREveryMS       int64 `json:"ocr_every_ms,omitempty"`
	OCRMinIntervalMS int64 `json:"ocr_min_interval_ms,omitempty"`
}

// OCRText is what the helper read on the screen, with the window that was
// active when it grabbed the screen.
type OCRText struct {
	Window screen.Window `json:"window"`
	Text   string        `json:"text"`
}

// Evidence is what the helper sends for a Decision's Capture.
type Evidence struct {
	// Data is the age-encrypted image, MediaType what it decrypts to
	// (screen.MediaPNG or screen.MediaJPEG).
	Data      []byte
	MediaType string
	// Dropped, when set, says why there is no screenshot (it did not fit
	// the budget, could not be taken or encrypted); Data is then empty.
	Dropped string
}

// Headers of an evidence upload.
const (
	headerMediaType = "Vigil-Media-Type"
	headerDropped   = "Vigil-Evidence-Dropped"
)

// Handler is implemented by the screen check in the service.
type Handler interface {
	Observe(ctx context.Context, p Peer, w screen.Window) (Decision, error)
	Evidence(ctx context.Context, p Peer, token string, e Evidence) error
	// OCR matches the text read on the screen; its Decision can ask for
	// the screenshot of the frame that was read (Capture) and carries the
	// OCR settings like Observe's.
	OCR(ctx context.Context, p Peer, t OCRText) (Decision, error)
}

// MaxOCRText bounds the text of one OCR report; the helper cuts longer
// text at a line break.
const MaxOCRText = 64 << 10

type peerKey struct{}

// MaxEvidence bounds one uploaded screenshot (encrypted): the collector's
// budget, so nothing larger is ever spooled.
const MaxEvidence = contract.MaxEvidenceBytes

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
	mux.HandleFunc("POST /v1/session/ocr", func(w http.ResponseWriter, r *http.Request) {
		p := r.Context().Value(peerKey{}).(Peer)
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
		d, err := h.OCR(r.Context(), p, t)
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
		if err != nil {
			http.Error(w, "evidence unreadable", http.StatusBadRequest)
			return
		}
		ev := Evidence{Data: data, MediaType: r.Header.Get(headerMediaType), Dropped: contract.Truncate(r.Header.Get(headerDropped), 512)}
		if len(data) > MaxEvidence {
			// The finding goes without it, saying why, rather than waiting
			// for a screenshot that will not come.
			ev = Evidence{Dropped: fmt.Sprintf("screenshot of more than %d bytes refused (the evidence budget)", MaxEvidence)}
			h.Evidence(r.Context(), p, r.PathValue("token"), ev)
			http.Error(w, ev.Dropped, http.StatusRequestEntityTooLarge)
			return
		}
		if err := h.Evidence(r.Context(), p, r.PathValue("token"), ev); err != nil {
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
