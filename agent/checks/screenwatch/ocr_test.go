package screenwatch

import (
	"context"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/agent/session"
	"github.com/vigil-safeguarding/vigil/rules"
)

const ocrLibrary = "#! rule: keywords-test\n#! category: self_harm\n#! severity: critical\nkill myself # test term\n"

// ocrRule loads a screen rule with extra params lines through the agent's
// own loader (which validates params).
func ocrRule(t *testing.T, extra string) (*rules.Rule, error) {
	t.Helper()
	y := "apiVersion: vigil/v1\nid: s\nname: s\nrationale: r\nseverity: high\ncategory: safeguarding\ncheck: screen\nparams:\n  screenshot: false\n" + extra
	set, errs := rules.LoadFiles(map[string][]byte{"screen.yaml": []byte(y), "keywords/t.txt": []byte(ocrLibrary)}, checks.MustRegistry(Check{}))
	if len(errs) > 0 {
		return nil, errs
	}
	return &set.Rules[0], nil
}

func ocrHub(t *testing.T, extra string) (*Hub, *recorder) {
	t.Helper()
	r, err := ocrRule(t, extra)
	if err != nil {
		t.Fatal(err)
	}
	ar, err := compile(r)
	if err != nil {
		t.Fatal(err)
	}
	h := NewHub()
	rec := &recorder{ch: make(chan checks.Observation, 16)}
	h.activate([]*activeRule{ar}, rec.emit)
	return h, rec
}

func TestOCRParamsValidated(t *testing.T) {
	for _, bad := range []string{
		"  ocr: {enabled: true, on: always}\n",
		"  ocr: {enabled: true, min_interval: 100ms}\n",
		"  ocr: {enabled: true, interval: 0.5s}\n",
		"  ocr: {enabled: true, every: 1m}\n",
	} {
		if _, err := ocrRule(t, bad); err == nil {
			t.Errorf("%q accepted", bad)
		}
	}
	r, err := ocrRule(t, "  ocr: {enabled: true}\n")
	if err != nil {
		t.Fatal(err)
	}
	ar, err := compile(r)
	if err != nil {
		t.Fatal(err)
	}
	want := OCRParams{Enabled: true, On: OCROnTitleChange, Interval: checks.Duration(time.Minute), MinInterval: checks.Duration(10 * time.Second)}
	if ar.params.OCR != want {
		t.Errorf("defaults %+v, want %+v", ar.params.OCR, want)
	}
}

// TestOCRDecisions: the helper learns from every decision whether and how
// to read the screen; the default (no ocr params) is off.
func TestOCRDecisions(t *testing.T) {
	peer := session.Peer{UID: 1000, Username: "pupil1"}
	win := screen.Window{ID: 1, Title: "maths homework", Process: "firefox"}
	for _, c := range []struct {
		name, params string
		want         session.Decision
	}{
		{"default off", "", session.Decision{}},
		{"explicitly off", "  ocr: {enabled: false, on: interval}\n", session.Decision{}},
		{"title change", "  ocr: {enabled: true}\n", session.Decision{OCR: true, OCRMinIntervalMS: 10000}},
		{"interval", "  ocr: {enabled: true, on: interval, interval: 90s, min_interval: 20s}\n", session.Decision{OCREveryMS: 90000, OCRMinIntervalMS: 20000}},
	} {
		t.Run(c.name, func(t *testing.T) {
			h, _ := ocrHub(t, c.params)
			d, err := h.Observe(context.Background(), peer, win)
			if err != nil || d != c.want {
				t.Errorf("observe: %+v %v, want %+v", d, err, c.want)
			}
			// An OCR report's answer repeats the settings but asks for no
			// further read.
			d, _ = h.OCR(context.Background(), peer, session.OCRText{Window: win, Text: "nothing here"})
			want := c.want
			want.OCR = false
			if d != want {
				t.Errorf("ocr: %+v, want %+v", d, want)
			}
		})
	}
	// While the rules reload nothing is active: OCR off until they are.
	h := NewHub()
	if d, _ := h.Observe(context.Background(), peer, win); d != (session.Decision{}) {
		t.Errorf("inactive hub: %+v", d)
	}
}

// TestOCRTextMatched: each line of the text is matched; the finding says
// source ocr, quotes the line as context, and is deduplicated with the
// window's title findings per window, user and term.
func TestOCRTextMatched(t *testing.T) {
	h, rec := ocrHub(t, "  ocr: {enabled: true}\n")
	ctx := context.Background()
	peer := session.Peer{UID: 1000, Username: "pupil1"}
	win := screen.Window{ID: 7, Title: "Notes", Process: "xterm", Class: "XTerm", PID: 42}
	text := "Shopping list\nsearch: how to kill\nmyself later\nI want to kill myself tonight\n"
	if _, err := h.OCR(ctx, peer, session.OCRText{Window: win, Text: text}); err != nil {
		t.Fatal(err)
	}
	o := rec.next(t, "ocr match")
	if o.Details["source"] != "ocr" || o.Details["term"] != "kill myself" || o.Details["context"] != "I want to kill myself tonight" ||
		o.Details["title"] != "Notes" || o.Details["process"] != "xterm" || o.User != "pupil1" {
		t.Errorf("details %+v", o.Details)
	}
	// The typed match the collector reads (not the Details keys above,
	// which are for people reading the finding).
	if sm := o.ScreenMatch; sm.GetSource() != "ocr" || sm.GetTerm() != "kill myself" || sm.GetContext() != "I want to kill myself tonight" ||
		sm.GetWindowTitle() != "Notes" || sm.GetProcess() != "xterm" || sm.GetUser() != "pupil1" || sm.GetLibrary() == "" || sm.GetCategory() != o.Category {
		t.Errorf("screen match %v", sm)
	}
	m := o.Details["matches"].([]any)
	if len(m) != 1 || m[0].(map[string]any)["start"] != 10 || m[0].(map[string]any)["end"] != 21 {
		t.Errorf("matches %+v (one, at 10..21 in its line: a phrase split over two lines is not matched)", m)
	}
	if !strings.Contains(o.Message, "OCR") {
		t.Errorf("message %q", o.Message)
	}
	// The same screen read again, and the same term in the title: repeats.
	h.OCR(ctx, peer, session.OCRText{Window: win, Text: text})
	h.Observe(ctx, peer, screen.Window{ID: 7, Title: "kill myself - Notes", Process: "xterm"})
	rec.none(t, "repeats within repeat_after")
	// Another window: a new finding.
	h.OCR(ctx, peer, session.OCRText{Window: screen.Window{ID: 8, Title: "Chat"}, Text: text})
	if o := rec.next(t, "other window"); o.Details["title"] != "Chat" {
		t.Errorf("details %+v", o.Details)
	}
}

// TestOCRNeedsOCRRule: text read for one rule is not matched by a rule
// that has OCR off.
func TestOCRNeedsOCRRule(t *testing.T) {
	h, rec := ocrHub(t, "")
	h.OCR(context.Background(), session.Peer{UID: 1}, session.OCRText{Window: screen.Window{ID: 1}, Text: "kill myself"})
	rec.none(t, "ocr text with ocr off")
}

// TestOCRAsksForTheFrame: with screenshots on, a new OCR match asks for
// the frame that was read, and the evidence completes the finding.
func TestOCRAsksForTheFrame(t *testing.T) {
	r, err := ocrRule(t, "  ocr: {enabled: true}\n")
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	ar, err := compile(r)
	if err != nil {
		t.Fatal(err)
	}
	ar.params.Screenshot = &yes
	h := NewHub()
	h.SetRecipient("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
	rec := &recorder{ch: make(chan checks.Observation, 4)}
	h.activate([]*activeRule{ar}, rec.emit)
	peer := session.Peer{UID: 1000, Username: "p"}
	d, _ := h.OCR(context.Background(), peer, session.OCRText{Window: screen.Window{ID: 3}, Text: "kill myself"})
	if !d.Capture || d.Token == "" || d.MaxWidth != 960 || d.OCR || d.OCRMinIntervalMS != 10000 {
		t.Fatalf("decision %+v", d)
	}
	if err := h.Evidence(context.Background(), peer, d.Token, session.Evidence{Data: []byte("ciphertext")}); err != nil {
		t.Fatal(err)
	}
	if o := rec.next(t, "finding with evidence"); len(o.Evidence) != 1 || o.Details["source"] != "ocr" {
		t.Errorf("observation %+v", o)
	}
}
