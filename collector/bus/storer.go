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
	// Batch is how many messages are fetched at once (default 128); they
	// are committed concurrently so the store's group commit shares one
	// transaction among them.
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

// Run commits messages into the store until ctx ends. A fetch that fails
// (a cluster electing a leader, the server shutting down) is retried.
func (s *Storer) Run(ctx context.Context) error {
	for ctx.Err() == nil {
		batch, err := s.cons.Fetch(s.cfg.Batch, jetstream.FetchMaxWait(time.Second))
		if err != nil {
			if ctx.Err() != nil {
				break
			}
			s.log.Debug("storer: fetch failed; retrying", "err", err)
			sleep(ctx, 250*time.Millisecond)
			continue
		}
		var msgs []jetstream.Msg
		for m := range batch.Messages() {
			msgs = append(msgs, m)
		}
		if err := batch.Error(); err != nil && !errors.Is(err, jetstream.ErrNoMessages) && ctx.Err() == nil {
			s.log.Debug("storer: fetch ended early", "err", err, "got", len(msgs))
		}
		s.commit(ctx, msgs)
	}
	return nil
}

// commit stores each message's batch and acknowledges the message only
// once its commit returned; the commits run at once so the store groups
// them into one transaction.
func (s *Storer) commit(ctx context.Context, msgs []jetstream.Msg) {
	var wg sync.WaitGroup
	for _, m := range msgs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			s.commitOne(ctx, m)
		}()
	}
	wg.Wait()
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

func sleep(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-ctx.Done():
	case <-t.C:
	}
}
