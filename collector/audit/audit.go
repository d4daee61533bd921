// Package audit runs headteacher-requested device audits: it resolves the
// scope to devices, queues the request durably per device, sends it to each
// device while it is connected (now, or when it reconnects), records each
// answer or why there is none in the audit's hash chain (collector/store),
// expires what was never reached, and reads records back with their
// verification, sign-offs and the differences from the previous audit of
// the same scope.
package audit

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sort"
	"sync"
	"time"

	"google.golang.org/protobuf/encoding/protojson"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// RequestKind is the control request an agent answers with an Inventory.
const RequestKind = "audit"

// DefaultExpiry is how long an audit waits for offline devices.
const DefaultExpiry = 7 * 24 * time.Hour

// MaxAnswerBytes bounds one device's stored answer (the agent bounds its
// own at 1 MiB).
const MaxAnswerBytes = 2 << 20

// NotReached is the reason recorded for a device that never connected
// before the audit expired.
const NotReached = "not reached"

// Store is what audits need of the collector store: a small interface, so
// the console can be given the same Service.
type Store interface {
	CreateAudit(id string, at time.Time, header []byte, queue []store.AuditQueued) (store.AuditEntry, error)
	AppendAuditEntry(id, kind, device string, at time.Time, body []byte) (store.AuditEntry, error)
	AppendAuditEntries(id string, adds []store.AuditAppend) ([]store.AuditEntry, []error, error)
	AuditChain(id string) ([]store.AuditEntry, store.AuditHead, error)
	AuditHeaders() ([]store.AuditEntry, error)
	AuditQueue(device string) ([]store.AuditQueued, error)
	Devices() []store.Device
	// LogAccess records each read of an audit (View, Export).
	LogAccess(e store.AccessEntry) error
}

// Agents sends a request to a connected agent and waits for its result
// (the gRPC server).
type Agents interface {
	Request(ctx context.Context, deviceID, kind string, params map[string]any) (*vigilv1.RequestResult, error)
	Connected(deviceID string) bool
}

// Scope is what an audit covers.
type Scope struct {
	Kind  string `json:"kind"` // device, group, all
	Value string `json:"value,omitempty"`
}

// Key names the scope for finding the previous audit of the same one.
func (s Scope) Key() string { return s.Kind + ":" + s.Value }

func (s Scope) String() string {
	if s.Kind == "all" {
		return "the whole fleet"
	}
	return s.Kind + " " + s.Value
}

// Validate refuses an incomplete scope.
func (s Scope) Validate() error {
	switch s.Kind {
	case "all":
		if s.Value != "" {
			return errors.New("scope all takes no value")
		}
	case "device", "group":
		if s.Value == "" {
			return fmt.Errorf("scope %s needs a %s", s.Kind, s.Kind)
		}
	default:
		return fmt.Errorf("unknown scope %q (want device, group or all)", s.Kind)
	}
	return nil
}

// Header is the first entry of an audit: who asked, what, why, when.
type Header struct {
	ID string `json:"id"`
	// School is the school the audit belongs to and whose devices it
	// covers ("" is store.DefaultSchool, as for every record, so a
	// single school's audits read as before schools existed).
	School      string       `json:"school,omitempty"`
	Scope       Scope        `json:"scope"`
	RequestedBy string       `json:"requested_by"`
	Reason      string       `json:"reason"`
	RequestedAt time.Time    `json:"requested_at"`
	ExpiresAt   time.Time    `json:"expires_at"`
	Devices     []DeviceInfo `json:"devices"`
	// Previous is the latest earlier audit of the same scope, compared in
	// the record; its head hash at the time ties the two together.
	Previous     string `json:"previous,omitempty"`
	PreviousHash string `json:"previous_hash,omitempty"`
}

// DeviceInfo names a device in scope as the collector knew it.
type DeviceInfo struct {
	DeviceID string `json:"device_id"`
	Hostname string `json:"hostname,omitempty"`
	Group    string `json:"group,omitempty"`
}

// NoAnswer is the body of a no-answer entry.
type NoAnswer struct {
	Reason string `json:"reason"`
	Detail string `json:"detail,omitempty"`
}

// Signoff is the body of a sign-off entry.
type Signoff struct {
	By   string `json:"by"`
	Note string `json:"note,omitempty"`
}

// Service runs audits. Construct it in the daemon; set Agents before
// serving (the gRPC server is built after it, and calls DeviceConnected).
type Service struct {
	Store  Store
	Agents Agents
	Logger *slog.Logger
	Now    func() time.Time
	// AnswerTimeout bounds one device's collection (default 5 min).
	AnswerTimeout time.Duration
	// MaxInFlight bounds requests awaiting an answer at once, so a fleet
	// audit's answers do not all sit in memory together (default 64).
	MaxInFlight int

	once     sync.Once
	slots    chan struct{}
	appends  chan pendingAppend
	mu       sync.Mutex
	inflight map[string]bool // device \x00 audit id -> asked again meanwhile
	progress map[string]*progressState
	schools  map[string]string // audit id -> Header.School, once read
}

// progressState is an audit's progress kept in memory once read, updated
// as entries are written, so polling progress does not read every answer.
type progressState struct {
	devices                        []string
	expires                        time.Time
	recorded                       map[string]bool
	answered, noAnswer, notReached int
}

func (p *progressState) note(kind, device string, body []byte) {
	if device == "" || p.recorded[device] {
		return
	}
	p.recorded[device] = true
	if kind == store.AuditAnswerEntry {
		p.answered++
		return
	}
	p.noAnswer++
	var na NoAnswer
	if json.Unmarshal(body, &na) == nil && na.Reason == NotReached {
		p.notReached++
	}
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
			s.AnswerTimeout = 5 * time.Minute
		}
		if s.MaxInFlight <= 0 {
			s.MaxInFlight = 64
		}
		s.slots = make(chan struct{}, s.MaxInFlight)
		s.inflight = map[string]bool{}
		s.progress = map[string]*progressState{}
		s.schools = map[string]string{}
		s.appends = make(chan pendingAppend, s.MaxInFlight)
		go s.appender()
	})
}

// pendingAppend is an answer waiting to be written.
type pendingAppend struct {
	id   string
	add  store.AuditAppend
	done chan error
}

// Batch bounds for one transaction of answers. Answers are larger than
// Badger's value threshold, so they go to its value log and count little
// against its transaction limit; a batch refused as too big is split.
const (
	maxBatchEntries = 64
	maxBatchBytes   = 16 << 20
)

// appender writes answers as they come, gathering those that arrive
// together into one transaction per audit: a fleet audit's thousand
// answers then cost tens of fsyncs, not a thousand. It runs for the
// process's life (idle on its channel).
func (s *Service) appender() {
	for first := range s.appends {
		batch := []pendingAppend{first}
		size := len(first.add.Body)
	gather:
		for len(batch) < maxBatchEntries && size < maxBatchBytes {
			select {
			case p := <-s.appends:
				batch = append(batch, p)
				size += len(p.add.Body)
			default:
				break gather
			}
		}
		byID := map[string][]pendingAppend{}
		for _, p := range batch {
			byID[p.id] = append(byID[p.id], p)
		}
		for id, ps := range byID {
			adds := make([]store.AuditAppend, len(ps))
			for i, p := range ps {
				adds[i] = p.add
			}
			errs, err := s.appendSplit(id, adds)
			if err == nil {
				s.mu.Lock()
				if st := s.progress[id]; st != nil {
					for i, a := range adds {
						if errs[i] == nil {
							st.note(a.Kind, a.Device, a.Body)
						}
					}
				}
				s.mu.Unlock()
			}
			for i, p := range ps {
				if err != nil {
					p.done <- err
				} else {
					p.done <- errs[i]
				}
			}
		}
	}
}

// appendSplit writes adds in one transaction, or in halves when the store
// says the transaction is too big.
func (s *Service) appendSplit(id string, adds []store.AuditAppend) ([]error, error) {
	_, errs, err := s.Store.AppendAuditEntries(id, adds)
	if errors.Is(err, store.ErrAuditBatchTooBig) && len(adds) > 1 {
		h := len(adds) / 2
		e1, err := s.appendSplit(id, adds[:h])
		if err != nil {
			return nil, err
		}
		e2, err := s.appendSplit(id, adds[h:])
		if err != nil {
			return nil, err
		}
		return append(e1, e2...), nil
	}
	return errs, err
}

// record writes one entry through the appender.
func (s *Service) record(id, kind, device string, body []byte) error {
	done := make(chan error, 1)
	s.appends <- pendingAppend{id: id, add: store.AuditAppend{Kind: kind, Device: device, At: s.Now(), Body: body}, done: done}
	return <-done
}

// Request starts an audit of scope within school ("all" is every device
// of the school) for by, and sends it to every connected device in it; the
// others get it when they reconnect, until expiry. A school by may not see
// is answered as one without the device (ErrBadRequest, naming nothing of
// it).
func (s *Service) Request(ctx context.Context, school string, scope Scope, by Reader, reason string, expiry time.Duration) (Header, error) {
	s.init()
	school = store.SchoolOf(school)
	if !by.sees(school) {
		return Header{}, fmt.Errorf("%w: no enrolled device in %s", ErrBadRequest, scope)
	}
	if err := scope.Validate(); err != nil {
		return Header{}, fmt.Errorf("%w: %v", ErrBadRequest, err)
	}
	if by.Name == "" || reason == "" {
		return Header{}, fmt.Errorf("%w: an audit needs who asks and a reason", ErrBadRequest)
	}
	if len(reason) > 2000 || len(by.Name) > 200 {
		return Header{}, fmt.Errorf("%w: reason (2000) or requester (200) too long", ErrBadRequest)
	}
	if expiry <= 0 {
		expiry = DefaultExpiry
	}
	now := s.Now().UTC()
	h := Header{ID: newID(now), Scope: scope, RequestedBy: by.Name, Reason: reason, RequestedAt: now, ExpiresAt: now.Add(expiry)}
	if school != store.DefaultSchool {
		h.School = school
	}
	for _, d := range s.Store.Devices() {
		if d.Revoked || store.SchoolOf(d.School) != school {
			continue
		}
		if (scope.Kind == "device" && d.DeviceID == scope.Value) || (scope.Kind == "group" && d.Group == scope.Value) || scope.Kind == "all" {
			h.Devices = append(h.Devices, DeviceInfo{DeviceID: d.DeviceID, Hostname: d.Hostname, Group: d.Group})
		}
	}
	if len(h.Devices) == 0 {
		return Header{}, fmt.Errorf("%w: no enrolled device in %s", ErrBadRequest, scope)
	}
	sort.Slice(h.Devices, func(i, j int) bool { return h.Devices[i].DeviceID < h.Devices[j].DeviceID })
	if prev, err := s.previous(h.School, scope); err == nil && prev != "" {
		if _, head, err := s.Store.AuditChain(prev); err == nil {
			h.Previous, h.PreviousHash = prev, head.Hash
		}
	}
	body, err := json.Marshal(h)
	if err != nil {
		return Header{}, err
	}
	queue := make([]store.AuditQueued, len(h.Devices))
	for i, d := range h.Devices {
		queue[i] = store.AuditQueued{DeviceID: d.DeviceID, ExpiresAt: h.ExpiresAt}
	}
	if _, err := s.Store.CreateAudit(h.ID, now, body, queue); err != nil {
		return Header{}, err
	}
	s.mu.Lock()
	s.schools[h.ID] = h.School
	s.mu.Unlock()
	s.Logger.Info("audit requested", "audit", h.ID, "school", school, "scope", scope.String(), "by", by.Name, "devices", len(h.Devices))
	for _, d := range h.Devices {
		if s.Agents != nil && s.Agents.Connected(d.DeviceID) {
			s.dispatch(d.DeviceID, h.ID)
		}
	}
	return h, nil
}

// ErrBadRequest marks a request the caller must correct.
var ErrBadRequest = errors.New("bad audit request")

func newID(t time.Time) string {
	b := make([]byte, 3)
	rand.Read(b)
	return "au-" + t.UTC().Format("20060102T150405.000") + "-" + hex.EncodeToString(b)
}

// DeviceConnected sends the device every audit still queued for it. The
// gRPC server calls it once a stream is set up.
func (s *Service) DeviceConnected(deviceID string) {
	s.init()
	q, err := s.Store.AuditQueue(deviceID)
	if err != nil {
		s.Logger.Error("read the device's queued audits", "device", deviceID, "err", err)
		return
	}
	now := s.Now()
	for _, e := range q {
		if now.After(e.ExpiresAt) {
			s.expire(e)
			continue
		}
		s.dispatch(deviceID, e.AuditID)
	}
}

// dispatch sends one audit request to one device in the background, one
// at a time per (device, audit). A dispatch while one is in flight (the
// device reconnected while the old stream's request still waits) asks
// again once the first gives up, on the new stream.
func (s *Service) dispatch(device, id string) {
	k := device + "\x00" + id
	s.mu.Lock()
	if _, busy := s.inflight[k]; busy {
		s.inflight[k] = true // ask again when the running one ends unanswered
		s.mu.Unlock()
		return
	}
	s.inflight[k] = false
	s.mu.Unlock()
	go func() {
		for {
			s.slots <- struct{}{}
			answered := s.ask(device, id)
			<-s.slots
			s.mu.Lock()
			again := s.inflight[k] && !answered
			if !again {
				delete(s.inflight, k)
				s.mu.Unlock()
				return
			}
			s.inflight[k] = false
			s.mu.Unlock()
		}
	}()
}

// ask requests the audit of one device and records the answer; it reports
// whether the device's part is now recorded (or was already).
func (s *Service) ask(device, id string) bool {
	ctx, cancel := context.WithTimeout(context.Background(), s.AnswerTimeout)
	defer cancel()
	res, err := s.Agents.Request(ctx, device, RequestKind, map[string]any{"audit_id": id})
	if err != nil {
		// Disconnected or slow: it stays queued and is asked again when
		// the device next connects.
		s.Logger.Info("audit request not answered yet; stays queued", "audit", id, "device", device, "err", err)
		return false
	}
	kind, body := store.AuditAnswerEntry, []byte(nil)
	switch inv := res.GetInventory(); {
	case !res.GetOk() || inv == nil:
		kind = store.AuditNoAnswerEntry
		why := res.GetError()
		if why == "" {
			why = "the agent answered without an inventory"
		}
		body, _ = json.Marshal(NoAnswer{Reason: "agent could not answer", Detail: why})
	case proto.Size(inv) > MaxAnswerBytes:
		kind = store.AuditNoAnswerEntry
		body, _ = json.Marshal(NoAnswer{Reason: "answer too large", Detail: fmt.Sprintf("%d bytes, the limit is %d", proto.Size(inv), MaxAnswerBytes)})
	default:
		b, err := protojson.MarshalOptions{UseProtoNames: true}.Marshal(inv)
		if err != nil {
			kind = store.AuditNoAnswerEntry
			body, _ = json.Marshal(NoAnswer{Reason: "answer could not be encoded", Detail: err.Error()})
			break
		}
		// protojson's spacing is not stable; the stored bytes are what is
		// hashed, so store them compact.
		var buf bytes.Buffer
		json.Compact(&buf, b)
		body = buf.Bytes()
	}
	if err := s.record(id, kind, device, body); err != nil {
		if errors.Is(err, store.ErrAuditClosed) {
			return true // answered meanwhile through another stream, or expired
		}
		s.Logger.Error("record audit answer; stays queued", "audit", id, "device", device, "err", err)
		return false
	}
	s.Logger.Debug("audit answer recorded", "audit", id, "device", device, "kind", kind)
	return true
}

// ExpireDue records every queued part past its audit's expiry as not
// reached; Run calls it every minute.
func (s *Service) ExpireDue() error {
	s.init()
	q, err := s.Store.AuditQueue("")
	if err != nil {
		return err
	}
	now := s.Now()
	for _, e := range q {
		if now.After(e.ExpiresAt) {
			s.expire(e)
		}
	}
	return nil
}

func (s *Service) expire(e store.AuditQueued) {
	body, _ := json.Marshal(NoAnswer{Reason: NotReached, Detail: "the device did not connect before the audit expired at " + e.ExpiresAt.UTC().Format(time.RFC3339)})
	if err := s.record(e.AuditID, store.AuditNoAnswerEntry, e.DeviceID, body); err != nil && !errors.Is(err, store.ErrAuditClosed) {
		s.Logger.Error("record audit expiry", "audit", e.AuditID, "device", e.DeviceID, "err", err)
	}
}

// Run expires audits on schedule until ctx ends, and asks devices that were
// connected before it started for their queued audits.
func (s *Service) Run(ctx context.Context) {
	s.init()
	if s.Agents != nil {
		if q, err := s.Store.AuditQueue(""); err == nil {
			for _, e := range q {
				if s.Agents.Connected(e.DeviceID) {
					s.DeviceConnected(e.DeviceID)
				}
			}
		}
	}
	t := time.NewTicker(time.Minute)
	defer t.Stop()
	for {
		if err := s.ExpireDue(); err != nil {
			s.Logger.Error("expire audits", "err", err)
		}
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
	}
}

// Sign records a sign-off by signer (the headteacher's name as shown),
// for r. The record is not changed: the sign-off is one more entry of the
// chain.
func (s *Service) Sign(id string, r Reader, by, note string) (store.AuditEntry, error) {
	s.init()
	if err := s.visible(id, r); err != nil {
		return store.AuditEntry{}, err
	}
	if by == "" {
		return store.AuditEntry{}, fmt.Errorf("%w: a sign-off needs who signs", ErrBadRequest)
	}
	if len(by) > 200 || len(note) > 2000 {
		return store.AuditEntry{}, fmt.Errorf("%w: name (200) or note (2000) too long", ErrBadRequest)
	}
	body, _ := json.Marshal(Signoff{By: by, Note: note})
	return s.Store.AppendAuditEntry(id, store.AuditSignoffEntry, "", s.Now(), body)
}

// previous returns the latest audit of scope in school (called before the
// new one is written).
func (s *Service) previous(school string, scope Scope) (string, error) {
	hs, err := s.Store.AuditHeaders()
	if err != nil {
		return "", err
	}
	last, lastAt := "", time.Time{}
	for _, e := range hs {
		var h Header
		if json.Unmarshal(e.Body, &h) != nil || h.Scope.Key() != scope.Key() || h.School != school {
			continue
		}
		if h.RequestedAt.After(lastAt) {
			last, lastAt = h.ID, h.RequestedAt
		}
	}
	return last, nil
}
