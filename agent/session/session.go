// Package session connects the per-user session helper to the agent
// service. A system service cannot see users' desktops (Windows session 0,
// macOS per-user consent, Linux per-user X sessions), so the same
// vigil-agent binary runs as `vigil-agent session` at each login, watches
// that user's screen and hands what it sees to the service over a Unix
// socket. The service owns rules, spool and uplink; the helper holds no
// keys (only the collector's public evidence recipient) and can do nothing
// but report observations, the text it read on the screen when the
// service asked for OCR, and the evidence the service asked for. The
// service learns who is talking from the OS (the socket's peer
// credentials, the named pipe client's process token), never from what
// the helper claims, and admits a helper only for a graphical session of
// that same user (see Server and docs/screen.md).
package session

import (
	"context"
	"fmt"

	"github.com/vigil-safeguarding/vigil/agent/screen"
	"github.com/vigil-safeguarding/vigil/internal/contract"
)

// Peer is the verified identity of a connected helper: what the OS says
// about the process at the other end of the connection, never what the
// helper says about itself.
type Peer struct {
	UID      int    // -1 where the OS has no numeric user ids (Windows)
	SID      string // Windows: the process token's user SID
	PID      int    // 0 when unknown
	Username string // looked up from UID / SID
	// LoginUID (Linux): the audit login uid of the process (set by
	// pam_loginuid at login, unchangeable by the user); -1 when unset.
	LoginUID int
	// OSSession is the session the OS itself places the process in, where
	// it has one a process cannot leave (Windows: the terminal session id
	// from the process token); empty elsewhere.
	OSSession string
	// Display is the graphical session the helper was admitted for (the X
	// display ":0", "console" on macOS, the session id on Windows). Set
	// once the helper has said hello and the claim was verified.
	Display string
}

// owns reports whether s is a session of p's user.
func (p Peer) owns(s GraphicalSession) bool {
	if s.SID != "" || p.SID != "" {
		return s.SID != "" && s.SID == p.SID
	}
	return s.UID == p.UID && p.UID >= 0
}

// key names p's user for per-user bookkeeping.
func (p Peer) key() string {
	if p.SID != "" {
		return p.SID
	}
	return fmt.Sprint(p.UID)
}

// GraphicalSession is one user's desktop on this machine.
type GraphicalSession struct {
	UID      int    // -1 on Windows
	SID      string // Windows
	Username string
	// Display: ":N" for X11, "console" for the macOS console user, the
	// terminal session id on Windows.
	Display string
}

// Key names the session's user, as Peer's key does.
func (s GraphicalSession) Key() string {
	if s.SID != "" {
		return s.SID
	}
	return fmt.Sprint(s.UID)
}

// SessionProbe lists the graphical sessions on this machine. The real
// implementation is NewProbe (per OS).
type SessionProbe interface {
	GraphicalSessions(ctx context.Context) ([]GraphicalSession, error)
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

// Notice is a line the service sends a helper on its attachment after the
// Welcome (blank lines are keepalives).
type Notice struct {
	// ReportAgain: the windows the helper reported could not be matched
	// (the service's rules were loading) and now can: report the current
	// window again. A capture the match asks for then reaches a helper that
	// is waiting for the decision; a match the service replayed on its own
	// could only be recorded without a screenshot.
	ReportAgain bool `json:"report_again,omitempty"`
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

// MaxEvidence bounds one uploaded screenshot (encrypted): the collector's
// budget, so nothing larger is ever spooled.
const MaxEvidence = contract.MaxEvidenceBytes
