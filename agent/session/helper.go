package session

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
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
	"github.com/vigil-safeguarding/vigil/internal/backoff"
	"github.com/vigil-safeguarding/vigil/internal/contract"
)

// RunHelper is `vigil-agent session`: watch this user's screen and report
// to the service at sockPath until ctx ends. Title changes are coalesced:
// while one observation is in flight only the latest window waits, so a
// page flickering through a thousand titles costs a handful of requests.
// When the service's decisions ask for it, the helper also reads the
// screen's text (OCR, see ocrLoop) in a goroutine of its own, so a read
// never delays the titles.
//
// The helper first attaches to the service (see Server), claiming display
// (default $DISPLAY), and stays attached for as long as it runs. When the
// service cannot be reached, or refuses it, the helper says so once in its
// log and retries with backoff; once attached again it reports the current
// window, so a title shown while the service restarted is not lost.
func RunHelper(ctx context.Context, sockPath, display string, log *slog.Logger) error {
	src, err := screen.Open(display)
	if err != nil {
		return err
	}
	defer src.Close()
	log.Info("session helper watching the screen", "display", display, "service", sockPath)
	return runHelper(ctx, src, HelperOptions{Socket: sockPath, Display: display}, log)
}

// HelperOptions configure a helper's connection to the service.
type HelperOptions struct {
	Socket  string
	Display string // claimed in hello (default $DISPLAY on X11)
	// BackoffBase, BackoffMax bound the waits between attempts to reach
	// the service (default 500ms, 30s).
	BackoffBase, BackoffMax time.Duration
}

// helper is one running session helper.
type helper struct {
	hc *http.Client
	// stream: the client for the attachment, which has no overall timeout.
	stream *http.Client
	src    screen.Source
	log    *slog.Logger
	opts   HelperOptions
	// shot: one screenshot at a time (evidence and OCR share the Source).
	shot sync.Mutex
	// cur is the latest active window, the one an OCR read is filed under.
	cur      atomic.Pointer[screen.Window]
	ocr      *ocrLoop
	attached atomic.Bool
	latest   chan screen.Window
	rel      releaser
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

func runHelper(ctx context.Context, src screen.Source, o HelperOptions, log *slog.Logger) error {
	if o.BackoffBase <= 0 {
		o.BackoffBase = 500 * time.Millisecond
	}
	if o.BackoffMax <= 0 {
		o.BackoffMax = 30 * time.Second
	}
	tr := transport(o.Socket)
	h := &helper{
		src: src, log: log, opts: o,
		hc:     &http.Client{Timeout: 10 * time.Second, Transport: tr},
		stream: &http.Client{Transport: tr},
		latest: make(chan screen.Window, 1),
	}
	h.ocr = newOCRLoop(h.readScreen, log)
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	defer h.rel.stop()
	var wg sync.WaitGroup
	defer wg.Wait()
	wg.Go(func() { h.ocr.run(ctx) })
	wg.Go(func() { h.attachLoop(ctx) })
	wg.Go(func() {
		for {
			select {
			case <-ctx.Done():
				return
			case w := <-h.latest:
				if !h.attached.Load() {
					continue // reported again once attached
				}
				if err := h.report(ctx, w); err != nil && ctx.Err() == nil {
					if h.attached.Load() {
						log.Warn("report to the agent service", "err", err)
					} else {
						log.Debug("report to the agent service while detached", "err", err)
					}
				}
			}
		}
	})
	return src.Watch(ctx, func(w screen.Window) {
		h.cur.Store(&w)
		h.offer(w)
	})
}

func transport(sock string) *http.Transport {
	return &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dial(ctx, sock)
	}}
}

// offer makes w the window waiting to be reported, replacing an older one.
func (h *helper) offer(w screen.Window) {
	select {
	case <-h.latest:
	default:
	}
	select {
	case h.latest <- w:
	default:
	}
}

// refusedError is the service's answer to a helper it will not admit.
type refusedError struct{ reason string }

func (e refusedError) Error() string { return "refused by the agent service: " + e.reason }

// attachLoop keeps the helper attached to the service until ctx ends.
// Each kind of trouble is logged once when it starts (not at every retry),
// and recovery once.
func (h *helper) attachLoop(ctx context.Context) {
	b := backoff.New(h.opts.BackoffBase, h.opts.BackoffMax)
	problem := ""
	for ctx.Err() == nil {
		start := time.Now()
		wasAttached, err := h.attach(ctx, func(wl Welcome) {
			if problem != "" {
				h.log.Info("reached the agent service again; attached", "as", wl.User, "display", wl.Display)
			} else {
				h.log.Info("attached to the agent service", "as", wl.User, "display", wl.Display)
			}
			problem = ""
		})
		if ctx.Err() != nil {
			return
		}
		if wasAttached && time.Since(start) > 10*time.Second {
			b.Reset()
		}
		var kind string
		var floor time.Duration
		var re refusedError
		switch {
		case errors.As(err, &re):
			kind, floor = "refused: "+re.reason, min(h.opts.BackoffMax, 30*time.Second)
			if kind != problem {
				h.log.Error("the agent service refused this session helper; retrying with backoff", "reason", re.reason)
			}
		case wasAttached:
			kind = "unreachable"
			h.log.Warn("lost the connection to the agent service; retrying with backoff", "err", err)
		default:
			kind = "unreachable"
			if kind != problem {
				h.log.Warn("cannot reach the agent service; retrying with backoff", "socket", h.opts.Socket, "err", err)
			}
		}
		if kind == problem {
			h.log.Debug("agent service still not available", "err", err)
		}
		problem = kind
		t := time.NewTimer(b.Next(floor))
		select {
		case <-ctx.Done():
			t.Stop()
			return
		case <-t.C:
		}
	}
}

// attach says hello and holds the attachment until it ends; wasAttached
// tells whether the service had admitted the helper.
func (h *helper) attach(ctx context.Context, onAttached func(Welcome)) (wasAttached bool, err error) {
	body, _ := json.Marshal(Hello{Display: helloDisplay(h.opts.Display)})
	req, _ := http.NewRequestWithContext(ctx, "POST", "http://vigil-agent/v1/session/hello", bytes.NewReader(body))
	resp, err := h.stream.Do(req)
	if err != nil {
		return false, err
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		msg, _ := io.ReadAll(io.LimitReader(resp.Body, 1024))
		if resp.StatusCode == http.StatusForbidden {
			return false, refusedError{string(bytes.TrimSpace(msg))}
		}
		return false, fmt.Errorf("hello: %s: %s", resp.Status, bytes.TrimSpace(msg))
	}
	br := bufio.NewReader(resp.Body)
	line, err := br.ReadBytes('\n')
	var wl Welcome
	if err != nil || json.Unmarshal(line, &wl) != nil {
		return false, fmt.Errorf("hello: no welcome from the service: %v", err)
	}
	h.attached.Store(true)
	defer h.attached.Store(false)
	onAttached(wl)
	if w := h.cur.Load(); w != nil {
		h.offer(*w)
	}
	for {
		line, err := br.ReadBytes('\n')
		if line = bytes.TrimSpace(line); len(line) > 0 {
			var n Notice
			if jerr := json.Unmarshal(line, &n); jerr != nil {
				h.log.Debug("unreadable notice from the agent service", "err", jerr)
			} else if n.ReportAgain {
				if w := h.cur.Load(); w != nil {
					h.offer(*w)
				}
			}
		}
		if err != nil {
			if err == io.EOF {
				err = io.ErrUnexpectedEOF
			}
			return true, err
		}
	}
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
