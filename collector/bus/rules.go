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
	"github.com/vigil-safeguarding/vigil/rules"
)

// RulesBucket is the JetStream KV bucket through which the store-owning
// collector hands front-ends, which hold no store, the rules files it
// generates for each school: its approved exclusions and the keyword
// terms in force there. Key: the school ID; value: a vigilv1.RulesBundle
// holding just those files and their hash. A front-end lays them over its
// own copy of the rules folders (collector/rulesdist), so an agent gets
// its school's whole bundle whichever front-end holds it.
const RulesBucket = "VIGIL_RULES"

// Rules opens (creating if need be) the rules bucket, retried like the
// devices bucket while a cluster elects its meta leader.
func (b *Bus) Rules(ctx context.Context) (jetstream.KeyValue, error) {
	return b.bucket(ctx, RulesBucket)
}

// RulesMirror writes each school's generated files into the rules bucket
// when they change.
type RulesMirror struct {
	KV jetstream.KeyValue
	// Files is each school's generated files (rulesdist's extra files).
	Files   func(school string) map[string][]byte
	Schools func() ([]string, error)

	mu   sync.Mutex
	last map[string]string // school -> hash last put
}

// Sync puts every school's files whose hash differs from the last put, and
// removes the entry of a school no longer listed (deleted: its terms are
// its own).
func (m *RulesMirror) Sync(ctx context.Context) error {
	schools, err := m.Schools()
	if err != nil {
		return fmt.Errorf("bus: list schools for the rules bucket: %w", err)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.last == nil {
		m.last = map[string]string{}
		keys, err := m.KV.ListKeys(ctx)
		if err == nil {
			for k := range keys.Keys() {
				m.last[k] = "" // present, content unknown: put again
			}
		} else if !errors.Is(err, jetstream.ErrNoKeysFound) {
			return fmt.Errorf("bus: list the rules bucket: %w", err)
		}
	}
	listed := map[string]bool{}
	for _, sc := range schools {
		sc = store.SchoolOf(sc)
		k := subjectToken(sc)
		listed[k] = true
		files := m.Files(sc)
		hash := rules.HashFiles(files)
		if h, ok := m.last[k]; ok && h == hash {
			continue
		}
		v, err := proto.Marshal(&vigilv1.RulesBundle{Hash: hash, Files: files})
		if err != nil {
			return fmt.Errorf("bus: encode the rules files of %s: %w", sc, err)
		}
		if _, err := m.KV.Put(ctx, k, v); err != nil {
			return fmt.Errorf("bus: put the rules files of %s: %w", sc, err)
		}
		m.last[k] = hash
	}
	for k := range m.last {
		if !listed[k] {
			if err := m.KV.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("bus: remove the rules files of %s: %w", k, err)
			}
			delete(m.last, k)
		}
	}
	return nil
}

// RulesCache is a front-end's copy of the rules bucket.
type RulesCache struct {
	mu    sync.RWMutex
	files map[string]map[string][]byte // school -> generated files
}

// Files is the school's generated files (rulesdist SetExtra); nil before
// the bucket has been read or for a school without any.
func (c *RulesCache) Files(school, _ string) map[string][]byte {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.files[subjectToken(store.SchoolOf(school))]
}

// Run follows the bucket until ctx ends, calling changed once the initial
// values are read and after each later change (then rebuild the bundles
// and push them).
func (c *RulesCache) Run(ctx context.Context, kv jetstream.KeyValue, changed func(), log *slog.Logger) error {
	for ctx.Err() == nil {
		w, err := kv.WatchAll(ctx)
		if err != nil {
			log.Warn("rules bucket: watch failed; retrying", "err", err)
			select {
			case <-ctx.Done():
			case <-time.After(time.Second):
			}
			continue
		}
		initial := true
		for e := range w.Updates() {
			if e == nil { // the initial values are all delivered
				initial = false
				changed()
				continue
			}
			c.mu.Lock()
			if c.files == nil {
				c.files = map[string]map[string][]byte{}
			}
			var b vigilv1.RulesBundle
			switch op := e.Operation(); {
			case op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge:
				delete(c.files, e.Key())
			case proto.Unmarshal(e.Value(), &b) != nil || rules.HashFiles(b.Files) != b.Hash:
				log.Error("rules bucket: an entry does not decode or match its hash; keeping the previous files", "school", e.Key())
			default:
				c.files[e.Key()] = b.Files
			}
			c.mu.Unlock()
			if !initial {
				changed()
			}
		}
		w.Stop()
	}
	return nil
}
