package session

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/vigil-safeguarding/vigil/agent/screen"
)

// ocrSettle: a read asked for by a title change waits this long, so that
// the page whose title just changed has drawn its content.
var ocrSettle = time.Second

// ocrMaxFailures: after this many failed reads in a row the helper stops
// reading (tesseract broken: missing language data, crashing); it logs why.
const ocrMaxFailures = 3

// ocrLoop schedules the helper's OCR reads from the service's decisions.
// It holds no rules: the latest decision says whether a read is wanted now
// (after a title change), how often to read regardless (interval mode) and
// the minimum spacing between two reads, which is also the helper's own
// bound on OCR's CPU cost whatever the service asks.
type ocrLoop struct {
	read func(ctx context.Context, o *screen.OCR) error
	log  *slog.Logger
	// newOCR finds tesseract (screen.NewOCR); looked up at the first read,
	// so a helper whose rules never ask for OCR never looks.
	newOCR func() (*screen.OCR, error)
	now    func() time.Time

	mu          sync.Mutex
	want        bool      // a read was asked for (title change)
	wantAt      time.Time // not before (the settle time)
	every       time.Duration
	since       time.Time // the schedule (every) started
	minInterval time.Duration
	kick        chan struct{}
}

func newOCRLoop(read func(context.Context, *screen.OCR) error, log *slog.Logger) *ocrLoop {
	return &ocrLoop{read: read, log: log, newOCR: screen.NewOCR, now: time.Now, kick: make(chan struct{}, 1)}
}

// apply takes the OCR settings of a decision. A decision without any (no
// min interval, no schedule) turns OCR off and drops a pending read; one
// with OCR set asks for a read (merged with one already pending).
func (l *ocrLoop) apply(d Decision) {
	l.mu.Lock()
	every := time.Duration(d.OCREveryMS) * time.Millisecond
	if every > 0 && l.every <= 0 {
		l.since = l.now()
	}
	l.every = every
	l.minInterval = time.Duration(d.OCRMinIntervalMS) * time.Millisecond
	switch {
	case d.OCRMinIntervalMS <= 0 && d.OCREveryMS <= 0:
		l.want, l.every = false, 0
	case d.OCR && !l.want:
		l.want, l.wantAt = true, l.now().Add(ocrSettle)
	}
	l.mu.Unlock()
	select {
	case l.kick <- struct{}{}:
	default:
	}
}

// next is when the next read is due, given the start of the last one.
func (l *ocrLoop) next(last time.Time) (time.Time, bool) {
	l.mu.Lock()
	defer l.mu.Unlock()
	var due time.Time
	ok := false
	if l.want {
		due, ok = l.wantAt, true
	}
	if l.every > 0 {
		// The first scheduled read comes one period after the schedule
		// started.
		base := last
		if l.since.After(base) {
			base = l.since
		}
		if t := base.Add(l.every); !ok || t.Before(due) {
			due, ok = t, true
		}
	}
	if !ok {
		return time.Time{}, false
	}
	if t := last.Add(l.minInterval); t.After(due) {
		due = t
	}
	return due, true
}

func (l *ocrLoop) run(ctx context.Context) {
	var (
		last     time.Time
		o        *screen.OCR
		failures int
		timer    = time.NewTimer(time.Hour)
	)
	timer.Stop()
	defer timer.Stop()
	for {
		due, ok := l.next(last)
		if ok {
			if wait := due.Sub(l.now()); wait > 0 {
				timer.Reset(wait)
			} else {
				l.mu.Lock()
				l.want = false
				l.mu.Unlock()
				last = l.now()
				if o == nil {
					var err error
					if o, err = l.newOCR(); err != nil {
						l.log.Warn("the rules ask for OCR of the screen, but it cannot run here; not reading the screen's text", "err", err)
						return
					}
				}
				err := l.read(ctx, o)
				switch {
				case ctx.Err() != nil:
					return
				case err == nil:
					failures = 0
				case errors.Is(err, errReport):
					// The service did not take the text: not OCR's fault.
					l.log.Warn("report OCR text to the agent service", "err", err)
				default:
					failures++
					l.log.Warn("OCR of the screen", "err", err, "failures_in_a_row", failures)
					if failures >= ocrMaxFailures {
						l.log.Warn("OCR failed too often; not reading the screen's text until the session helper restarts")
						return
					}
				}
				continue
			}
		}
		select {
		case <-ctx.Done():
			return
		case <-l.kick:
			timer.Stop()
		case <-timer.C:
		}
	}
}

// errReport marks a failure to hand OCR text to the service.
var errReport = errors.New("report")

// readScreen grabs the screen, reads its text and reports it under the
// window that was active at the grab. The service's answer may ask for
// the same frame as evidence.
func (h *helper) readScreen(ctx context.Context, o *screen.OCR) error {
	var w screen.Window
	if p := h.cur.Load(); p != nil {
		w = *p
	}
	img, err := h.screenshot(ctx)
	if err != nil {
		return fmt.Errorf("screenshot: %w", err)
	}
	defer h.rel.soon()
	res, err := o.Read(ctx, img)
	if err != nil {
		return err
	}
	text := cutText(res.Text, MaxOCRText)
	h.log.Debug("OCR of the screen", "cpu", res.CPU, "wall", res.Wall, "prep", res.Prep, "bytes", len(text))
	if strings.TrimSpace(text) == "" {
		return nil
	}
	var d Decision
	if err := h.post(ctx, "/v1/session/ocr", OCRText{Window: w, Text: text}, &d); err != nil {
		return fmt.Errorf("%w: %v", errReport, err)
	}
	h.ocr.apply(d)
	if d.Capture {
		if err := h.evidence(ctx, img, d); err != nil {
			return fmt.Errorf("%w: evidence: %v", errReport, err)
		}
	}
	return nil
}

// cutText keeps at most max bytes of s, cut at a line break when there is
// one (else at a rune boundary).
func cutText(s string, max int) string {
	if len(s) <= max {
		return s
	}
	s = s[:max]
	if i := strings.LastIndexByte(s, '\n'); i > 0 {
		return s[:i+1]
	}
	for len(s) > 0 {
		if r, size := utf8.DecodeLastRuneInString(s); r != utf8.RuneError || size > 1 {
			break
		}
		s = s[:len(s)-1]
	}
	return s
}
