package bus

import (
	"context"
	"errors"
	"fmt"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// SchoolForgotten is what ForgetSchool removed from the bus.
type SchoolForgotten struct {
	Findings, Events uint64 // messages purged, not yet consumed
	Records          int    // device records removed from the bucket
}

// ForgetSchool removes what the bus holds of a deleted school: messages
// still queued under its subjects in the findings and device-events
// streams, its durable consumers, its rules bundles in the rules bucket,
// and its devices' records in the devices bucket, so no front-end admits one of its devices again. Streams or a
// bucket that do not exist (a single collector without front-ends) are
// skipped; it can be run again after a failure.
func (b *Bus) ForgetSchool(ctx context.Context, school string) (SchoolForgotten, error) {
	var out SchoolForgotten
	if school == "" || school == DefaultSchool {
		return out, errors.New("bus: the default school is never forgotten")
	}
	tok := subjectToken(school)
	purge := func(stream, subjects, durable string) (uint64, error) {
		s, err := b.js.Stream(ctx, stream)
		if errors.Is(err, jetstream.ErrStreamNotFound) {
			return 0, nil
		}
		if err != nil {
			return 0, fmt.Errorf("bus: open stream %s: %w", stream, err)
		}
		if err := s.DeleteConsumer(ctx, durable); err != nil && !errors.Is(err, jetstream.ErrConsumerNotFound) {
			return 0, fmt.Errorf("bus: delete consumer %s of %s: %w", durable, stream, err)
		}
		before, err := s.Info(ctx, jetstream.WithSubjectFilter(subjects))
		if err != nil {
			return 0, fmt.Errorf("bus: read stream %s: %w", stream, err)
		}
		n := uint64(0)
		for _, c := range before.State.Subjects {
			n += c
		}
		if err := s.Purge(ctx, jetstream.WithPurgeSubject(subjects)); err != nil {
			return 0, fmt.Errorf("bus: purge %s from %s: %w", subjects, stream, err)
		}
		return n, nil
	}
	var err error
	if out.Findings, err = purge(StreamName, SchoolSubjects(school), DurableName(school)); err != nil {
		return out, err
	}
	if out.Events, err = purge(EventsStream, EventsPrefix+"."+tok+".>", "devices_"+tok); err != nil {
		return out, err
	}
	// Its rules bundles (its overrides, its own terms and exclusions).
	if rk, err := b.js.KeyValue(ctx, RulesBucket); err == nil {
		keys, err := rk.ListKeys(ctx)
		if err != nil && !errors.Is(err, jetstream.ErrNoKeysFound) {
			return out, fmt.Errorf("bus: list the rules bundles: %w", err)
		}
		if err == nil {
			for k := range keys.Keys() {
				if schoolOfKey(k) != tok {
					continue
				}
				if err := rk.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
					return out, fmt.Errorf("bus: remove the rules bundle %s: %w", k, err)
				}
			}
		}
	} else if !errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, fmt.Errorf("bus: open bucket %s: %w", RulesBucket, err)
	}
	kv, err := b.js.KeyValue(ctx, DevicesBucket)
	if errors.Is(err, jetstream.ErrBucketNotFound) {
		return out, nil
	}
	if err != nil {
		return out, fmt.Errorf("bus: open bucket %s: %w", DevicesBucket, err)
	}
	keys, err := kv.ListKeys(ctx)
	if err != nil {
		return out, fmt.Errorf("bus: list device records: %w", err)
	}
	for k := range keys.Keys() {
		e, err := kv.Get(ctx, k)
		if errors.Is(err, jetstream.ErrKeyNotFound) {
			continue
		}
		if err != nil {
			return out, fmt.Errorf("bus: read device record %s: %w", k, err)
		}
		var r vigilv1.DeviceRecord
		if err := proto.Unmarshal(e.Value(), &r); err != nil || r.GetSchool() != school {
			continue
		}
		if err := kv.Purge(ctx, k); err != nil {
			return out, fmt.Errorf("bus: remove device record %s: %w", k, err)
		}
		out.Records++
	}
	return out, nil
}
