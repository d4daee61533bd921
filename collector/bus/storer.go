package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// FindingStore is what a Storer commits into; *store.Store is one. It must
// be idempotent on (device_id, seq): JetStream delivers at least once.
type FindingStore interface {
	CommitFindings(ctx context.Context, findings []*vigilv1.Finding) (stored, dups int, err error)
}

// StorerConfig for NewStorer.
type StorerConfig struct {
	// School whose subjects are consumed (default "default").
	School string
	// Batch is how many messages are pulled and committed at once
	// (default 128); the store's group commit shares transactions among
	// them.
	Batch int
	// AckWait is how long a message fetched but not acknowledged waits
	// before JetStream redelivers it (default 30s): a storer that died
	// mid-commit is covered by this.
	AckWait time.Duration
	// RetryDelay is how long a message the store refused (overloaded,
	// disk full, failed commit) waits before redelivery (default 2s).
	RetryDelay time.Duration
	// Records names the school each device is recorded in at the store
	// (required). A message is stored only when its subject names the
	// device's own school: a front-end, compromised or wrong, cannot write
	// into another school's records by publishing under its subjects.
	Records Records
	// OnRefused, if set, is told of every message refused for good (its
	// school and why), for the collector's metrics.
	OnRefused func(school, reason string)
	Logger    *slog.Logger
}

// Records answers the school a device is recorded in ("" or "default" for
// the default school); ok false for a device the store does not know.
type Records func(deviceID string) (school string, ok bool)

// Reasons a message is refused for good (OnRefused, the logs).
const (
	RefusedUndecodable   = "undecodable"
	RefusedUnknownDevice = "unknown-device"
	RefusedWrongSchool   = "wrong-school"
	RefusedWrongDevice   = "subject-device-mismatch"
)

// checkSubject is the one check of a message's subject against the store's
// record: subject (PREFIX.SCHOOL.DEVICE) must name the device the message
// is about, and that device must be recorded in SCHOOL. It answers the
// reason for a refusal, or "".
func checkSubject(records Records, prefix, subject, deviceID string) string {
	rest, ok := strings.CutPrefix(subject, prefix+".")
	school, dev, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 || dev != subjectToken(deviceID) {
		return RefusedWrongDevice
	}
	recorded, known := records(deviceID)
	if !known {
		return RefusedUnknownDevice
	}
	if recorded == "" {
		recorded = DefaultSchool
	}
	if subjectToken(recorded) != school {
		return RefusedWrongSchool
	}
	return ""
}

// Storer drains one school's subjects into its store through a durable
// pull consumer.
type Storer struct {
	cfg  StorerConfig
	st   FindingStore
	cons jetstream.Consumer
	log  *slog.Logger
}

// DurableName is the consumer a school's storers share: several storer
// processes may pull from it, each message going to one of them.
func DurableName(school string) string {
	if school == "" {
		school = DefaultSchool
	}
	return "storer_" + subjectToken(school)
}

// NewStorer creates (or finds) the school's durable consumer.
func NewStorer(ctx context.Context, js jetstream.JetStream, st FindingStore, cfg StorerConfig) (*Storer, error) {
	if cfg.Batch <= 0 {
		cfg.Batch = 128
	}
	if cfg.AckWait <= 0 {
		cfg.AckWait = 30 * time.Second
	}
	if cfg.RetryDelay <= 0 {
		cfg.RetryDelay = 2 * time.Second
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Records == nil {
		return nil, errors.New("bus: a storer needs the store's device records to check each message's school")
	}
	cons, err := js.CreateOrUpdateConsumer(ctx, StreamName, jetstream.ConsumerConfig{
		Durable:       DurableName(cfg.School),
		FilterSubject: SchoolSubjects(cfg.School),
		AckPolicy:     jetstream.AckExplicitPolicy,
		AckWait:       cfg.AckWait,
		MaxAckPending: 8 * cfg.Batch,
		// Redelivered without end: a message is only gone once the store
		// has it, and one that can never be stored is terminated by Run.
		MaxDeliver: -1,
	})
	if err != nil {
		return nil, fmt.Errorf("bus: create consumer %s: %w", DurableName(cfg.School), err)
	}
	return &Storer{cfg: cfg, st: st, cons: cons, log: cfg.Logger}, nil
}

// Run commits messages into the store until ctx ends. Messages arrive by a
// continuous pull (JetStream keeps Batch in flight); each is committed in
// its own goroutine, at most Batch at once, so the store's group commit
// puts many in one transaction while a slow commit holds up no other.
func (s *Storer) Run(ctx context.Context) error {
	sem := make(chan struct{}, s.cfg.Batch)
	var wg sync.WaitGroup
	cc, err := s.cons.Consume(func(m jetstream.Msg) {
		select {
		case sem <- struct{}{}:
		case <-ctx.Done():
			return // not acknowledged: redelivered to the next storer
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			s.commitOne(ctx, m)
		}()
	}, jetstream.PullMaxMessages(s.cfg.Batch), jetstream.ConsumeErrHandler(func(_ jetstream.ConsumeContext, err error) {
		// Heartbeats missed while a cluster elects a leader, or the
		// server shutting down: the pull is renewed by the client.
		s.log.Debug("storer: pull interrupted", "err", err)
	}))
	if err != nil {
		return fmt.Errorf("bus: consume %s: %w", DurableName(s.cfg.School), err)
	}
	<-ctx.Done()
	cc.Stop()
	<-cc.Closed()
	wg.Wait()
	return nil
}

func (s *Storer) commitOne(ctx context.Context, m jetstream.Msg) {
	var b vigilv1.FindingBatch
	if err := proto.Unmarshal(m.Data(), &b); err != nil {
		// Only a publisher of another version could send this; redelivering
		// it would never succeed.
		s.refuse(m, RefusedUndecodable, err)
		return
	}
	if len(b.Findings) == 0 {
		m.Ack()
		return
	}
	for _, f := range b.Findings {
		if why := checkSubject(s.cfg.Records, SubjectPrefix, m.Subject(), f.GetDeviceId()); why != "" {
			s.refuse(m, why, fmt.Errorf("finding of device %q", f.GetDeviceId()))
			return
		}
	}
	// Commit even if ctx is ending: once queued the store completes it,
	// and an ack sent then saves a redelivery.
	_, _, err := s.st.CommitFindings(context.WithoutCancel(ctx), b.Findings)
	if err != nil {
		if !errors.Is(err, store.ErrOverloaded) && !errors.Is(err, store.ErrDiskFull) && !errors.Is(err, store.ErrClosed) {
			s.log.Error("storer: commit failed; message will be redelivered", "subject", m.Subject(), "err", err)
		}
		m.NakWithDelay(s.cfg.RetryDelay)
		return
	}
	if err := m.Ack(); err != nil {
		// Redelivered after AckWait and dropped then as duplicates.
		s.log.Debug("storer: ack failed", "subject", m.Subject(), "err", err)
	}
}

// refuse terminates m (never redelivered, never stored) and says why.
func (s *Storer) refuse(m jetstream.Msg, why string, err error) {
	school := s.cfg.School
	if school == "" {
		school = DefaultSchool
	}
	s.log.Error("storer: message refused, not stored", "school", school, "subject", m.Subject(), "reason", why, "err", err)
	if s.cfg.OnRefused != nil {
		s.cfg.OnRefused(school, why)
	}
	if err := m.Term(); err != nil {
		s.log.Warn("storer: terminate refused message", "subject", m.Subject(), "err", err)
	}
}

// EachSchool calls run(ctx, school) in its own goroutine once for every
// school that schools lists: at once, and again every interval (default
// 5s) for schools added since, so a school added while the collector runs
// gets its storer within that time. A school no longer listed (deleted)
// has its run's context cancelled. It returns when ctx ends and every run
// has returned. A failed listing is logged and retried at the next tick.
func EachSchool(ctx context.Context, schools func() ([]string, error), interval time.Duration,
	run func(ctx context.Context, school string), log *slog.Logger) {
	if interval <= 0 {
		interval = 5 * time.Second
	}
	running := map[string]context.CancelFunc{}
	var wg sync.WaitGroup
	t := time.NewTicker(interval)
	defer t.Stop()
	for {
		ids, err := schools()
		if err != nil {
			log.Warn("bus: list schools failed; retrying", "err", err)
		} else {
			listed := map[string]bool{}
			for _, id := range ids {
				if id == "" {
					id = DefaultSchool
				}
				listed[id] = true
				if running[id] != nil {
					continue
				}
				sctx, cancel := context.WithCancel(ctx)
				running[id] = cancel
				wg.Add(1)
				go func() { defer wg.Done(); run(sctx, id) }()
			}
			for id, cancel := range running {
				if !listed[id] {
					log.Info("bus: school no longer listed; its consumers stop", "school", id)
					cancel()
					delete(running, id)
				}
			}
		}
		select {
		case <-ctx.Done():
			wg.Wait()
			return
		case <-t.C:
		}
	}
}
