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
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// DevicesBucket is the JetStream KV bucket through which the store-owning
// collector tells stateless front-ends which devices exist and which are
// revoked. The store stays the record; the bucket is a copy of the few
// fields a front-end needs to admit a stream (vigilv1.DeviceRecord).
const DevicesBucket = "VIGIL_DEVICES"

// ErrEnrollAtStorer is what a front-end answers to an enrollment: tokens
// live in the store, so devices enroll at the store-owning collector and
// then stream to any front-end.
var ErrEnrollAtStorer = errors.New("this collector is a stream front-end: enroll at the store-owning collector")

// Devices opens (creating if need be) the devices bucket with the stream's
// replication. Like the stream it is retried while a cluster elects its
// meta leader.
func (b *Bus) Devices(ctx context.Context) (jetstream.KeyValue, error) {
	return b.bucket(ctx, DevicesBucket)
}

// bucket opens (creating if need be) a KV bucket of one value per key with
// the stream's replication, retried while a cluster elects its meta leader.
func (b *Bus) bucket(ctx context.Context, name string) (jetstream.KeyValue, error) {
	cfg := jetstream.KeyValueConfig{Bucket: name, History: 1, Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas}
	var kv jetstream.KeyValue
	err := untilReady(ctx, "open bucket "+name, func(ctx context.Context) (err error) {
		kv, err = b.js.CreateOrUpdateKeyValue(ctx, cfg)
		return err
	})
	return kv, err
}

// untilReady runs fn (each attempt bounded to 10 s) until it succeeds or
// ctx ends: a fresh cluster answers only once it has elected its meta
// leader, a minute on a busy machine.
func untilReady(ctx context.Context, what string, fn func(context.Context) error) error {
	for {
		attempt, cancel := context.WithTimeout(ctx, 10*time.Second)
		err := fn(attempt)
		cancel()
		if err == nil {
			return nil
		}
		select {
		case <-ctx.Done():
			return fmt.Errorf("bus: %s: %w", what, err)
		case <-time.After(250 * time.Millisecond):
		}
	}
}

// followBucket watches every key of kv until ctx ends, re-watching after
// a failure (a node lost, the bucket re-created): apply gets each entry
// (the current ones first, then every change), and changed, if set, is
// called once the current entries are all applied and after each later
// entry. A re-watch delivers the current entries again, so nothing changed
// while the watch was down is missed.
func followBucket(ctx context.Context, kv jetstream.KeyValue, what string, apply func(jetstream.KeyValueEntry), changed func(), log *slog.Logger) {
	for ctx.Err() == nil {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			log.Warn(what+": watch failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		initial := true
		for e := range w.Updates() {
			if e == nil { // the current entries are all delivered
				initial = false
				if changed != nil {
					changed()
				}
				continue
			}
			apply(e)
			if !initial && changed != nil {
				changed()
			}
		}
		w.Stop()
	}
}

func recordOf(d store.Device, rv *store.Revocation, recipient string) *vigilv1.DeviceRecord {
	r := &vigilv1.DeviceRecord{DeviceId: d.DeviceID, Group: d.Group, Hostname: d.Hostname, Revoked: d.Revoked,
		EnrolledAt: timestamppb.New(d.EnrolledAt), HostFingerprint: d.HostFingerprint, School: store.SchoolOf(d.School),
		EvidenceRecipient: recipient}
	if rv != nil {
		r.Revoked, r.RevokedAt = true, timestamppb.New(rv.RevokedAt)
	}
	return r
}

// DeviceSource is what the mirror reads of the store; *store.Store is one.
type DeviceSource interface {
	Devices() []store.Device
	Revocations() ([]store.Revocation, error)
}

// Mirror writes the store's device records into the devices bucket: at
// once for an enrollment (PutRecord, before the agent is answered), and by
// Run for everything else (revocations made by the console or the CLI,
// devices enrolled before the bucket existed), every Interval.
type Mirror struct {
	KV     jetstream.KeyValue
	Source DeviceSource
	// Recipients, when set, names each school's evidence recipient in its
	// devices' records (*evidencekeys.Keyring).
	Recipients Recipients
	Interval   time.Duration // default 1s
	Logger     *slog.Logger

	mu      sync.Mutex
	written map[string]string // device id -> encoded record last written
}

// Recipients names the age recipient a school's devices seal evidence to.
type Recipients interface {
	Recipient(school string) (string, error)
}

// recipient is school's evidence recipient, "" (the agent keeps its own)
// when there are no keys here.
func (m *Mirror) recipient(school string) (string, error) {
	if m.Recipients == nil {
		return "", nil
	}
	r, err := m.Recipients.Recipient(store.SchoolOf(school))
	if err != nil {
		return "", fmt.Errorf("bus: evidence recipient of school %s: %w", store.SchoolOf(school), err)
	}
	return r, nil
}

// PutRecord writes d's record now.
func (m *Mirror) PutRecord(ctx context.Context, d store.Device) error {
	r, err := m.recipient(d.School)
	if err != nil {
		return err
	}
	return m.put(ctx, recordOf(d, nil, r))
}

func (m *Mirror) put(ctx context.Context, r *vigilv1.DeviceRecord) error {
	data, err := proto.MarshalOptions{Deterministic: true}.Marshal(r)
	if err != nil {
		return fmt.Errorf("bus: encode device record %s: %w", r.DeviceId, err)
	}
	m.mu.Lock()
	same := m.written != nil && m.written[r.DeviceId] == string(data)
	m.mu.Unlock()
	if same {
		return nil
	}
	if _, err := m.KV.Put(ctx, r.DeviceId, data); err != nil {
		return fmt.Errorf("bus: write device record %s: %w", r.DeviceId, err)
	}
	m.mu.Lock()
	if m.written == nil {
		m.written = map[string]string{}
	}
	m.written[r.DeviceId] = string(data)
	m.mu.Unlock()
	return nil
}

// Sync writes every record that changed since the last write.
func (m *Mirror) Sync(ctx context.Context) error {
	rvs, err := m.Source.Revocations()
	if err != nil {
		return fmt.Errorf("bus: read revocations: %w", err)
	}
	byID := make(map[string]*store.Revocation, len(rvs))
	for i := range rvs {
		byID[rvs[i].DeviceID] = &rvs[i]
	}
	recipients := map[string]string{}
	for _, d := range m.Source.Devices() {
		school := store.SchoolOf(d.School)
		r, ok := recipients[school]
		if !ok {
			if r, err = m.recipient(school); err != nil {
				return err
			}
			recipients[school] = r
		}
		if err := m.put(ctx, recordOf(d, byID[d.DeviceID], r)); err != nil {
			return err
		}
		delete(byID, d.DeviceID)
	}
	for id, rv := range byID { // a key revoked before its device record existed
		if err := m.put(ctx, recordOf(store.Device{DeviceID: id}, rv, "")); err != nil {
			return err
		}
	}
	return nil
}

// Run syncs until ctx ends; a failed sync (the cluster without a quorum)
// is retried at the next tick.
func (m *Mirror) Run(ctx context.Context) error {
	every := m.Interval
	if every <= 0 {
		every = time.Second
	}
	log := m.Logger
	if log == nil {
		log = slog.Default()
	}
	t := time.NewTicker(every)
	defer t.Stop()
	for {
		if err := m.Sync(ctx); err != nil && ctx.Err() == nil {
			log.Warn("device mirror: sync failed; retrying", "err", err)
		}
		select {
		case <-ctx.Done():
			return nil
		case <-t.C:
		}
	}
}

// FrontStore is the server.Store of a stateless front-end. Device records
// come from the devices bucket (read when a stream opens, so a device that
// enrolled a moment ago at the store-owning collector is found); findings
// go to JetStream through the Publisher; enrollment is refused
// (ErrEnrollAtStorer). A device's live state (connected, last seen,
// heartbeat figures) is kept here for the server's own use while the
// stream lasts; what reaches the store are the agent's messages themselves
// (server.Config.Events, EventPublisher), applied there.
type FrontStore struct {
	KV  jetstream.KeyValue
	Pub *Publisher

	mu         sync.Mutex
	live       map[string]*store.Device
	schools    map[string]string // device -> school of its last record read
	recipients map[string]string // school -> evidence recipient of its last record read
}

// Recipient is the evidence recipient the school's device records name
// (server.EvidenceKeys): the front-end reads a device's record before
// welcoming it, so its school's is known by then; "" when the records
// name none (the agent keeps the one it has).
func (f *FrontStore) Recipient(school string) (string, error) {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.recipients[school], nil
}

// SchoolOf is the school of the device's record, as read when its stream
// was admitted (read again if this process has not read it): its findings,
// events and control requests go under that school's subjects.
func (f *FrontStore) SchoolOf(id string) (string, error) {
	f.mu.Lock()
	school, ok := f.schools[id]
	f.mu.Unlock()
	if ok {
		return school, nil
	}
	_, found, err := f.LookupDevice(id)
	if err != nil {
		return "", err
	}
	if !found {
		return "", fmt.Errorf("device %s has no record", id)
	}
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.schools[id], nil
}

// lookupTimeout bounds a bucket read while a stream waits to be welcomed.
const lookupTimeout = 10 * time.Second

// LookupDevice reads id's record from the bucket, telling a device that is
// not there (ok false) from a bucket that could not be read (err).
func (f *FrontStore) LookupDevice(id string) (store.Device, bool, error) {
	ctx, cancel := context.WithTimeout(context.Background(), lookupTimeout)
	defer cancel()
	e, err := f.KV.Get(ctx, id)
	if errors.Is(err, jetstream.ErrKeyNotFound) {
		// Its record removed (the school deleted): forget its school too,
		// so nothing more of it is published under a school's subjects.
		f.mu.Lock()
		delete(f.schools, id)
		f.mu.Unlock()
		return store.Device{}, false, nil
	}
	if err != nil {
		return store.Device{}, false, fmt.Errorf("bus: read device record %s: %w", id, err)
	}
	var r vigilv1.DeviceRecord
	if err := proto.Unmarshal(e.Value(), &r); err != nil {
		return store.Device{}, false, fmt.Errorf("bus: decode device record %s: %w", id, err)
	}
	d := store.Device{DeviceID: r.DeviceId, Group: r.Group, Hostname: r.Hostname, Revoked: r.Revoked,
		EnrolledAt: r.EnrolledAt.AsTime(), HostFingerprint: r.HostFingerprint, School: r.School}
	if d.School == store.DefaultSchool {
		d.School = "" // as the store writes it
	}
	f.mu.Lock()
	if f.schools == nil {
		f.schools = map[string]string{}
	}
	f.schools[id] = store.SchoolOf(d.School)
	if r.EvidenceRecipient != "" {
		if f.recipients == nil {
			f.recipients = map[string]string{}
		}
		f.recipients[store.SchoolOf(d.School)] = r.EvidenceRecipient
	}
	if l := f.live[id]; l != nil {
		// Identity from the record (it may have been revoked since), the
		// rest as this front-end last saw it.
		keep := *l
		keep.Group, keep.Revoked, keep.HostFingerprint, keep.EnrolledAt, keep.School = d.Group, d.Revoked, d.HostFingerprint, d.EnrolledAt, d.School
		d = keep
	}
	f.mu.Unlock()
	return d, true, nil
}

// GetDevice is LookupDevice with a read error taken as not found.
func (f *FrontStore) GetDevice(id string) (store.Device, bool) {
	d, ok, err := f.LookupDevice(id)
	return d, ok && err == nil
}

// UpdateDevice applies fn to the device's live state in this process.
func (f *FrontStore) UpdateDevice(id string, fn func(*store.Device)) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.live == nil {
		f.live = map[string]*store.Device{}
	}
	d := f.live[id]
	if d == nil {
		d = &store.Device{DeviceID: id}
		f.live[id] = d
	}
	fn(d)
	return nil
}

// FlushDevices has nothing to write: live state is not persisted here.
func (f *FrontStore) FlushDevices() error { return nil }

// PutDevice refuses: devices enroll at the store-owning collector.
func (f *FrontStore) PutDevice(store.Device) error { return ErrEnrollAtStorer }

// UseToken refuses: tokens are in the store.
func (f *FrontStore) UseToken(string, string, time.Time) (store.Token, error) {
	return store.Token{}, ErrEnrollAtStorer
}

// Revoked reports the record's revocation. A bucket that cannot be read is
// an error, so enrollment checks fail closed.
func (f *FrontStore) Revoked(id string) (store.Revocation, bool, error) {
	d, ok, err := f.LookupDevice(id)
	if err != nil || !ok || !d.Revoked {
		return store.Revocation{}, false, err
	}
	return store.Revocation{DeviceID: id}, true, nil
}

// CommitFindings publishes (the front-end's own findings included).
func (f *FrontStore) CommitFindings(ctx context.Context, findings []*vigilv1.Finding) (int, int, error) {
	return f.Pub.CommitFindings(ctx, findings)
}

// WatchRevocations calls onRevoked for every device whose record says
// revoked, as the records change, until ctx ends: the front-end holding
// that device's stream ends it, as the store-owning collector does for its
// own streams. Records already revoked are delivered first (a no-op for a
// device with no stream here), so nothing revoked while the watch was down
// is missed.
func WatchRevocations(ctx context.Context, kv jetstream.KeyValue, onRevoked func(deviceID string), log *slog.Logger) error {
	followBucket(ctx, kv, "device records", func(e jetstream.KeyValueEntry) {
		if op := e.Operation(); op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge {
			// The record removed (its school deleted, ForgetSchool):
			// like a revocation, its stream ends and is not admitted again.
			onRevoked(e.Key())
			return
		}
		var r vigilv1.DeviceRecord
		if proto.Unmarshal(e.Value(), &r) == nil && r.Revoked {
			onRevoked(r.DeviceId)
		}
	}, nil, log)
	return nil
}
