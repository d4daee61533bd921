// Package fleetcheck runs the fleet-wide end-to-end check of the DfE
// evidence pack: it asks every enrolled device for a synthetic selftest
// through the ordinary control request, waits for that selftest's finding
// to come back through the device's spool, the stream and the store (the
// path every real finding takes), and records, per device, whether
// monitoring proved itself working, when it last did, and if not, why:
// not connected (with the coverage judgement: silent, stopped, dormant...),
// no answer, a finding that never arrived, or a session helper missing,
// which leaves a graphical session's screen unmonitored even though the
// agent answers.
package fleetcheck

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Outcomes of one device's part.
const (
	Pending              = "pending"
	Working              = "working"
	SessionHelperMissing = "session_helper_missing"
	NotConnected         = "not_connected"
	NoAnswer             = "no_answer"
	NotReceived          = "not_received"
)

// OutcomeLabel is an outcome as the pack prints it.
func OutcomeLabel(o string) string {
	switch o {
	case Pending:
		return "Waiting"
	case Working:
		return "Working end to end"
	case SessionHelperMissing:
		return "Session helper missing: screen not monitored"
	case NotConnected:
		return "Not connected"
	case NoAnswer:
		return "Did not answer"
	case NotReceived:
		return "Selftest finding did not arrive"
	}
	return o
}

// RequestKind is the agent's control request for a selftest.
const RequestKind = "selftest"

// Store is what a fleet check needs of the collector store.
type Store interface {
	Devices() []store.Device
	GetDevice(id string) (store.Device, bool)
	RecentFindings(device string, maxScan int, fn func(*vigilv1.Finding) bool) error
	PutFleetCheck(store.FleetCheck) error
	GetFleetCheck(id string) (store.FleetCheck, error)
	FleetChecks() ([]store.FleetCheck, error)
}

// Agents sends a control request to a connected agent (the gRPC server).
type Agents interface {
	Request(ctx context.Context, deviceID, kind string, params map[string]any) (*vigilv1.RequestResult, error)
	Connected(deviceID string) bool
}

// Service runs fleet checks. Construct it in the daemon.
type Service struct {
	Store  Store
	Agents Agents
	Logger *slog.Logger
	Now    func() time.Time
	// Absence names why a device is not connected, as the coverage page
	// does ("silent: no heartbeat for ..."); the daemon passes the coverage
	// judgement (collector/coverage). Nil: "not connected" alone.
	Absence func(d store.Device, now time.Time) string
	// AnswerTimeout bounds the agent's answer to the request (default
	// 60 s); ArriveTimeout how long its finding may take to reach the
	// store after that (default 2 min: a full spool drains first).
	AnswerTimeout, ArriveTimeout time.Duration
	// Poll is how often the store is looked at for the finding (default
	// 250 ms).
	Poll time.Duration
	// MaxInFlight bounds devices checked at once (default 32).
	MaxInFlight int
	// ScanFindings bounds how many of a device's newest findings are read
	// looking for its latest selftest (default 5000).
	ScanFindings int

	once    sync.Once
	mu      sync.Mutex
	running map[string]*store.FleetCheck
}

func (s *Service) init() {
	s.once.Do(func() {
		if s.Logger == nil {
			s.Logger = slog.Default()
		}
		if s.Now == nil {
			s.Now = time.Now
		}
		if s.AnswerTimeout <= 0 {
			s.AnswerTimeout = 60 * time.Second
		}
		if s.ArriveTimeout <= 0 {
			s.ArriveTimeout = 2 * time.Minute
		}
		if s.Poll <= 0 {
			s.Poll = 250 * time.Millisecond
		}
		if s.MaxInFlight <= 0 {
			s.MaxInFlight = 32
		}
		if s.ScanFindings <= 0 {
			s.ScanFindings = 5000
		}
		s.running = map[string]*store.FleetCheck{}
	})
}

// ErrBadRequest marks a request the caller must correct.
var ErrBadRequest = errors.New("bad fleet check request")

// Start records a new check of every enrolled, unrevoked device and runs
// it in the background; Get shows its progress.
func (s *Service) Start(by, reason string) (store.FleetCheck, error) {
	s.init()
	if by == "" || len(by) > 200 || len(reason) > 2000 {
		return store.FleetCheck{}, fmt.Errorf("%w: a check needs who asks (200) and at most a 2000-character reason", ErrBadRequest)
	}
	if s.Agents == nil {
		return store.FleetCheck{}, errors.New("fleet check: no agent connection to request selftests through")
	}
	now := s.Now().UTC()
	b := make([]byte, 3)
	rand.Read(b)
	c := store.FleetCheck{ID: "fc-" + now.Format("20060102T150405.000") + "-" + hex.EncodeToString(b), RequestedBy: by, Reason: reason, RequestedAt: now}
	for _, d := range s.Store.Devices() {
		if d.Revoked {
			continue
		}
		c.Devices = append(c.Devices, store.FleetCheckDevice{DeviceID: d.DeviceID, Hostname: d.Hostname, Group: d.Group, Outcome: Pending})
	}
	if len(c.Devices) == 0 {
		return store.FleetCheck{}, fmt.Errorf("%w: no enrolled device to check", ErrBadRequest)
	}
	sort.Slice(c.Devices, func(i, j int) bool { return c.Devices[i].DeviceID < c.Devices[j].DeviceID })
	if err := s.Store.PutFleetCheck(c); err != nil {
		return store.FleetCheck{}, fmt.Errorf("record fleet check: %w", err)
	}
	s.mu.Lock()
	cp := c
	cp.Devices = append([]store.FleetCheckDevice(nil), c.Devices...)
	s.running[c.ID] = &cp
	s.mu.Unlock()
	s.Logger.Info("fleet check requested", "check", c.ID, "by", by, "devices", len(c.Devices))
	go s.run(c.ID)
	return c, nil
}

// Get returns a check as it stands (from memory while it runs).
func (s *Service) Get(id string) (store.FleetCheck, error) {
	s.init()
	s.mu.Lock()
	if c, ok := s.running[id]; ok {
		cp := *c
		cp.Devices = append([]store.FleetCheckDevice(nil), c.Devices...)
		s.mu.Unlock()
		return cp, nil
	}
	s.mu.Unlock()
	return s.Store.GetFleetCheck(id)
}

// Latest is the newest completed check (ok false when there is none).
func (s *Service) Latest() (store.FleetCheck, bool, error) {
	all, err := s.Store.FleetChecks()
	if err != nil {
		return store.FleetCheck{}, false, err
	}
	for i := len(all) - 1; i >= 0; i-- {
		if !all[i].CompletedAt.IsZero() {
			return all[i], true, nil
		}
	}
	return store.FleetCheck{}, false, nil
}

// CloseInterrupted completes the checks a previous run of the collector
// left unfinished: their unsettled devices are recorded as not answered
// because of the restart, so no record stays "running" forever and the
// pack's check record is never one that can no longer finish. Call it at
// start, before serving.
func (s *Service) CloseInterrupted() error {
	s.init()
	all, err := s.Store.FleetChecks()
	if err != nil {
		return fmt.Errorf("read fleet checks: %w", err)
	}
	for _, c := range all {
		if !c.CompletedAt.IsZero() {
			continue
		}
		for i := range c.Devices {
			if c.Devices[i].Outcome == Pending {
				c.Devices[i].Outcome, c.Devices[i].Detail = NoAnswer, "the collector restarted before the device's selftest came back"
			}
		}
		c.CompletedAt = s.Now().UTC()
		if err := s.Store.PutFleetCheck(c); err != nil {
			return fmt.Errorf("close interrupted fleet check %s: %w", c.ID, err)
		}
		s.Logger.Warn("fleet check interrupted by a restart; closed with the devices it had not heard from", "check", c.ID)
	}
	return nil
}

func (s *Service) run(id string) {
	s.mu.Lock()
	devices := append([]store.FleetCheckDevice(nil), s.running[id].Devices...)
	s.mu.Unlock()
	slots := make(chan struct{}, s.MaxInFlight)
	var wg sync.WaitGroup
	for i := range devices {
		wg.Add(1)
		slots <- struct{}{}
		go func() {
			defer func() { <-slots; wg.Done() }()
			part := s.checkDevice(devices[i])
			// Read after the check, so its own selftest counts.
			part.LastProved = s.LastProved(part.DeviceID)
			s.mu.Lock()
			c := s.running[id]
			c.Devices[i] = part
			snap := *c
			snap.Devices = append([]store.FleetCheckDevice(nil), c.Devices...)
			s.mu.Unlock()
			// Written as each device settles, so a collector restart mid-check
			// keeps what was proved; a later write carries everything earlier.
			if err := s.Store.PutFleetCheck(snap); err != nil {
				s.Logger.Error("record fleet check progress", "check", id, "err", err)
			}
		}()
	}
	wg.Wait()
	s.mu.Lock()
	c := s.running[id]
	c.CompletedAt = s.Now().UTC()
	final := *c
	delete(s.running, id)
	s.mu.Unlock()
	if err := s.Store.PutFleetCheck(final); err != nil {
		s.Logger.Error("record fleet check completion", "check", id, "err", err)
	}
	n := 0
	for _, d := range final.Devices {
		if d.Outcome == Working {
			n++
		}
	}
	s.Logger.Info("fleet check done", "check", id, "devices", len(final.Devices), "working", n)
}

// checkDevice asks one device for a selftest and follows its finding.
func (s *Service) checkDevice(part store.FleetCheckDevice) store.FleetCheckDevice {
	d, known := s.Store.GetDevice(part.DeviceID)
	if !known {
		part.Outcome, part.Detail = NotConnected, "the device is no longer enrolled"
		return part
	}
	if !s.Agents.Connected(part.DeviceID) {
		part.Outcome, part.Detail = NotConnected, "the device is not connected"
		if s.Absence != nil {
			part.Detail = s.Absence(d, s.Now())
		}
		return part
	}
	ctx, cancel := context.WithTimeout(context.Background(), s.AnswerTimeout)
	res, err := s.Agents.Request(ctx, part.DeviceID, RequestKind, map[string]any{"count": 1})
	cancel()
	switch {
	case err != nil:
		part.Outcome, part.Detail = NoAnswer, err.Error()
		return part
	case !res.GetOk():
		part.Outcome, part.Detail = NoAnswer, "the agent could not run the selftest: "+res.GetError()
		return part
	}
	part.Nonce = res.GetResult().GetFields()["nonce"].GetStringValue()
	firstSeq := uint64(res.GetResult().GetFields()["first_seq"].GetNumberValue())
	if part.Nonce == "" {
		part.Outcome, part.Detail = NoAnswer, "the agent's answer names no selftest"
		return part
	}
	deadline := s.Now().Add(s.ArriveTimeout)
	for {
		if s.arrived(part.DeviceID, part.Nonce, firstSeq) {
			part.ProvedAt = s.Now().UTC()
			break
		}
		if s.Now().After(deadline) {
			part.Outcome, part.Detail = NotReceived, fmt.Sprintf("the agent ran the selftest but its finding did not reach the collector within %s", s.ArriveTimeout)
			return part
		}
		time.Sleep(s.Poll)
	}
	// The selftest proves the agent's path; the screen is watched through
	// the session helper, whose absence the agent reports as a posture
	// finding the collector keeps in the device's presence.
	if d, ok := s.Store.GetDevice(part.DeviceID); ok && d.Presence.SessionHelperMissing {
		part.Outcome = SessionHelperMissing
		part.Detail = "the selftest arrived, but a graphical session has had no session helper since " +
			d.Presence.SessionHelperMissingSince.UTC().Format(time.RFC3339) + ": its screen is not monitored"
		return part
	}
	part.Outcome, part.Detail = Working, "the selftest finding arrived through the agent's spool, the stream and the store"
	return part
}

// arrived says whether the device's selftest finding with nonce is stored.
// The agent's spool numbered it firstSeq (0: unknown); findings are read
// newest first, so the scan stops below it rather than reading hundreds of
// findings every poll while a fleet's selftests are on their way.
func (s *Service) arrived(device, nonce string, firstSeq uint64) bool {
	found := false
	err := s.Store.RecentFindings(device, 500, func(f *vigilv1.Finding) bool {
		if f.GetCheck() == "selftest" && f.GetDetails().GetFields()["nonce"].GetStringValue() == nonce {
			found = true
			return false
		}
		return f.GetSeq() > firstSeq
	})
	if err != nil {
		s.Logger.Warn("read findings for the fleet check", "device", device, "err", err)
	}
	return found
}

// LastProved is when the device's newest stored selftest finding was
// observed: the last time monitoring proved itself end to end on it (zero
// when none is within the newest ScanFindings findings).
func (s *Service) LastProved(device string) time.Time {
	s.init()
	var at time.Time
	err := s.Store.RecentFindings(device, s.ScanFindings, func(f *vigilv1.Finding) bool {
		if f.GetCheck() == "selftest" {
			at = f.GetObservedAt().AsTime().UTC()
			return false
		}
		return true
	})
	if err != nil {
		s.Logger.Warn("read findings for the last selftest", "device", device, "err", err)
	}
	return at
}
