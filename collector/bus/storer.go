package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
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
	Logger     *slog.Logger
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
		s.log.Error("storer: undecodable message dropped", "subject", m.Subject(), "err", err)
		m.Term()
		return
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
