package screenwatch

import (
	"bytes"
	"context"
	"strings"
	"testing"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/agent/session"
	"github.com/vigil-safeguarding/vigil/internal/contract"
)

// TestEvidenceWithinBudget: the capture decision names the collector's
// evidence budget; a screenshot that fits is attached with the media type
// the helper encoded; one the helper could not fit, one over the budget and
// one of an unknown type are left out and the finding says why, and the
// finding is recorded at once in every case.
func TestEvidenceWithinBudget(t *testing.T) {
	r, err := ocrRule(t, "")
	if err != nil {
		t.Fatal(err)
	}
	ar, err := compile(r)
	if err != nil {
		t.Fatal(err)
	}
	yes := true
	ar.params.Screenshot = &yes
	h := NewHub()
	h.EvidenceWait = 1 << 40 // only the evidence may complete a finding here
	h.SetRecipient("age1ql3z7hjy54pw3hyww5ayyfg7zqgvc7w3j2elw8zmrj2kg5sfn9aqmcac8p")
	rec := &recorder{ch: make(chan checks.Observation, 4)}
	h.activate([]*activeRule{ar}, rec.emit)
	peer := session.Peer{UID: 1000, Username: "p"}
	cases := []struct {
		name    string
		ev      session.Evidence
		media   string
		dropped string
	}{
		{"jpeg that fits", session.Evidence{Data: []byte("ciphertext"), MediaType: screen.MediaJPEG}, screen.MediaJPEG, ""},
		{"png, type not named (older helper)", session.Evidence{Data: []byte("ciphertext")}, screen.MediaPNG, ""},
		{"helper could not fit it", session.Evidence{Dropped: "screenshot does not fit the evidence budget: 7631 bytes at best"}, "", "does not fit"},
		{"over the budget", session.Evidence{Data: bytes.Repeat([]byte{1}, contract.MaxEvidenceBytes+1), MediaType: screen.MediaPNG}, "", "exceeds the evidence budget"},
		{"unknown media type", session.Evidence{Data: []byte("x"), MediaType: "text/html"}, "", "unsupported media type"},
	}
	for i, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			d, _ := h.Observe(context.Background(), peer, screen.Window{ID: uint32(100 + i), Title: "how to kill myself"})
			if !d.Capture || d.MaxBytes != contract.MaxEvidenceBytes {
				t.Fatalf("decision %+v, want a capture within the evidence budget", d)
			}
			if err := h.Evidence(context.Background(), peer, d.Token, c.ev); err != nil {
				t.Fatal(err)
			}
			o := rec.next(t, "finding")
			dropped, _ := o.Details[contract.KeyEvidenceDropped].(string)
			if c.dropped == "" {
				if len(o.Evidence) != 1 || o.Evidence[0].MediaType != c.media || dropped != "" {
					t.Errorf("evidence %v, dropped %q", o.Evidence, dropped)
				}
				// The typed match names the screenshot that shows it.
				if ids := o.ScreenMatch.GetEvidenceIds(); len(o.Evidence) == 1 && (len(ids) != 1 || ids[0] != o.Evidence[0].Id) {
					t.Errorf("screen match evidence ids %v, want [%s]", ids, o.Evidence[0].Id)
				}
				return
			}
			if len(o.Evidence) != 0 || len(o.EvidenceData) != 0 || !strings.Contains(dropped, c.dropped) || len(o.ScreenMatch.GetEvidenceIds()) != 0 {
				t.Errorf("evidence %v, dropped %q; want none and %q", o.Evidence, dropped, c.dropped)
			}
		})
	}
}

// TestRawTitleKept: the helper's escaped original of a title that was not
// valid UTF-8 goes into the finding's details.
func TestRawTitleKept(t *testing.T) {
	h, rec := ocrHub(t, "")
	peer := session.Peer{UID: 1000, Username: "p"}
	h.Observe(context.Background(), peer, screen.Window{ID: 1, Title: "how to kill myself \uFFFD", TitleRaw: `how to kill myself \xff`, ProcessRaw: `x\xfe`})
	o := rec.next(t, "finding")
	if o.Details["title_raw"] != `how to kill myself \xff` || o.Details["process_raw"] != `x\xfe` {
		t.Errorf("details %v", o.Details)
	}
}
