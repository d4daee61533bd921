package session

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"image"
	"io"
	"log/slog"
	"net"
	"net/http"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/internal/contract"
)

// RunHelper is `vigil-agent session`: watch this user's screen and report
// to the service at sockPath until ctx ends. Title changes are coalesced:
// while one observation is in flight only the latest window waits, so a
// page flickering through a thousand titles costs a handful of requests.
// When the service's decisions ask for it, the helper also reads the
// screen's text (OCR, see ocrLoop) in a goroutine of its own, so a read
// never delays the titles.
func RunHelper(ctx context.Context, sockPath, display string, log *slog.Logger) error {
	src, err := screen.Open(display)
	if err != nil {
		return err
	}
	defer src.Close()
	log.Info("session helper watching the screen", "display", display)
	return runHelper(ctx, src, sockPath, log)
}

// helper is one running session helper.
type helper struct {
	hc  *http.Client
	src screen.Source
	log *slog.Logger
	// shot: one screenshot at a time (evidence and OCR share the Source).
	shot sync.Mutex
	// cur is the latest active window, the one an OCR read is filed under.
	cur atomic.Pointer[screen.Window]
	ocr *ocrLoop
	rel releaser
}

// releaseAfter is how long the helper must go without a capture before
// the capture buffers are handed back to the OS: long enough that a burst
// of captures (a pupil typing a search) keeps its buffers, short enough
// that an isolated capture does not keep the helper's RSS at its peak.
const releaseAfter = time.Second

// releaser hands freed capture memory back to the OS off the capture path.
// A capture briefly needs ~15 MB (the frame, its copy, the PNG). Calling
// debug.FreeOSMemory after every capture forced a full GC and scavenge
// inline and left the next capture to fault its buffers in again: title →
// finding with a screenshot went from 22 to 39 ms p50. Now a burst of
// captures reuses the warm heap, and the memory goes back once captures
// have stopped for releaseAfter, on the timer's own goroutine.
type releaser struct {
	mu sync.Mutex
	t  *time.Timer
}

// soon (re)arms the release; called after each capture or OCR read.
func (r *releaser) soon() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.t == nil {
		r.t = time.AfterFunc(releaseAfter, debug.FreeOSMemory)
		return
	}
	r.t.Reset(releaseAfter)
}

func (r *releaser) stop() {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.t != nil {
		r.t.Stop()
	}
}

func runHelper(ctx context.Context, src screen.Source, sockPath string, log *slog.Logger) error {
	h := &helper{
		src: src, log: log,
		hc: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
			var d net.Dialer
			return d.DialContext(ctx, "unix", sockPath)
		}}},
	}
	h.ocr = newOCRLoop(h.readScreen, log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer h.rel.stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { h.ocr.run(ctx) })
	latest := make(chan screen.Window, 1)
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case w := <-latest:
				if err := h.report(ctx, w); err != nil && ctx.Err() == nil {
					log.Warn("report to the agent service", "err", err)
				}
			}
		}
	})
	return src.Watch(ctx, func(w screen.Window) {
		h.cur.Store(&w)
		select {
		case <-latest:
		default:
		}
		latest <- w
	})
}

func (h *helper) report(ctx context.Context, w screen.Window) error {
	w.KeepRaw()
	var d Decision
	if err := h.post(ctx, "/v1/session/observe", w, &d); err != nil {
		return fmt.Errorf("observe: %w", err)
	}
	h.ocr.apply(d)
	if !d.Capture {
		return nil
	}
	img, err := h.screenshot(ctx)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	return h.evidence(ctx, img, d)
}

// post sends v as JSON to the service and decodes its answer into out.
func (h *helper) post(ctx context.Context, path string, v, out any) error {
	body, _ := json.Marshal(v)
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://vigil-agent"+path, bytes.NewReader(body))
	resp, err := h.hc.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		return fmt.Errorf("%s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	return json.NewDecoder(resp.Body).Decode(out)
}

func (h *helper) screenshot(ctx context.Context) (image.Image, error) {
	h.shot.Lock()
	defer h.shot.Unlock()
	return h.src.Screenshot(ctx)
}

// evidence fits img to d's width and byte budget (screen.Fit), encrypts it
// and uploads it with d's token; a screenshot that cannot be fitted or
// encrypted is reported dropped, with why, so the finding records that
// instead of waiting for it.
func (h *helper) evidence(ctx context.Context, img image.Image, d Decision) error {
	budget := d.MaxBytes
	if budget <= 0 {
		budget = contract.MaxEvidenceBytes
	}
	var ct []byte
	data, mediaType, err := screen.Fit(img, d.MaxWidth, screen.PlainBudget(budget))
	if err == nil {
		ct, err = screen.Encrypt(d.Recipient, data)
	}
	if err == nil && len(ct) > budget {
		err = fmt.Errorf("encrypted screenshot of %d bytes exceeds the budget of %d", len(ct), budget)
	}
	dropped := ""
	if err != nil {
		h.log.Warn("screenshot not attached", "err", err)
		dropped, ct = err.Error(), nil
	}
	img, data = nil, nil
	h.rel.soon()
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://vigil-agent/v1/session/evidence/"+d.Token, bytes.NewReader(ct))
	if dropped != "" {
		req.Header.Set(headerDropped, contract.Truncate(dropped, 512))
	} else {
		req.Header.Set(headerMediaType, mediaType)
	}
	resp, err := h.hc.Do(req)
	if err != nil {
		return err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		return fmt.Errorf("evidence upload: %s", resp.Status)
	}
	return nil
}
