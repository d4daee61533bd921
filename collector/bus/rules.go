package bus

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"strings"
	"sync"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
	"github.com/vigil-safeguarding/vigil/rules"
)

// RulesBucket is the JetStream KV bucket through which the store-owning
// collector hands front-ends, which hold no store and no rules folders,
// every bundle it composed (collector/rulesdist: the trust's pack of the
// group, the school's overrides, the school's generated exclusions and
// keyword terms), already validated there. Key: RulesKey(school, group);
// value: the vigilv1.RulesBundle itself. An agent thus gets exactly the
// bundle the store-owning collector would give it, whichever front-end
// holds it, and a pack or override edited there reaches every front-end.
const RulesBucket = "VIGIL_RULES"

// Rules opens (creating if need be) the rules bucket, retried like the
// devices bucket while a cluster elects its meta leader.
func (b *Bus) Rules(ctx context.Context) (jetstream.KeyValue, error) {
	return b.bucket(ctx, RulesBucket)
}

// RulesKey is the bucket key of a school's bundle of a group:
// <school>.<group>, the group's characters outside [A-Za-z0-9_-] escaped
// as =XX (KV keys allow few).
func RulesKey(school, group string) string {
	return subjectToken(store.SchoolOf(school)) + "." + kvToken(group)
}

// kvToken keeps [A-Za-z0-9_-] of s and escapes every other byte as =XX:
// KV keys allow few characters, and a dot separates a key's parts.
func kvToken(s string) string {
	var b strings.Builder
	for _, c := range []byte(s) {
		switch {
		case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z', c >= '0' && c <= '9', c == '_', c == '-':
			b.WriteByte(c)
		default:
			fmt.Fprintf(&b, "=%02X", c)
		}
	}
	return b.String()
}

// schoolOfKey is the school part of a RulesKey.
func schoolOfKey(k string) string {
	school, _, _ := strings.Cut(k, ".")
	return school
}

// BundleSource is what RulesMirror mirrors (*rulesdist.Distributor).
type BundleSource interface {
	Each(fn func(school, group string, b *vigilv1.RulesBundle))
}

// RulesMirror writes every composed bundle into the rules bucket when it
// changes, and removes the entries of bundles no longer composed (a
// school deleted, a group's folder removed).
type RulesMirror struct {
	KV     jetstream.KeyValue
	Source BundleSource

	mu   sync.Mutex
	last map[string]string // key -> hash last put
}

// Sync puts every bundle whose hash differs from the last put and purges
// the keys no longer composed.
func (m *RulesMirror) Sync(ctx context.Context) error {
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
	now := map[string]*vigilv1.RulesBundle{}
	m.Source.Each(func(school, group string, b *vigilv1.RulesBundle) { now[RulesKey(school, group)] = b })
	for k, b := range now {
		if h, ok := m.last[k]; ok && h == b.GetHash() {
			continue
		}
		v, err := proto.Marshal(b)
		if err != nil {
			return fmt.Errorf("bus: encode the rules bundle %s: %w", k, err)
		}
		if _, err := m.KV.Put(ctx, k, v); err != nil {
			return fmt.Errorf("bus: put the rules bundle %s: %w", k, err)
		}
		m.last[k] = b.GetHash()
	}
	for k := range m.last {
		if now[k] == nil {
			if err := m.KV.Purge(ctx, k); err != nil && !errors.Is(err, jetstream.ErrKeyNotFound) {
				return fmt.Errorf("bus: remove the rules bundle %s: %w", k, err)
			}
			delete(m.last, k)
		}
	}
	return nil
}

// RulesCache is a front-end's copy of the rules bucket; it is the
// front-end's server.RulesSource.
type RulesCache struct {
	mu      sync.RWMutex
	bundles map[string]*vigilv1.RulesBundle // RulesKey -> bundle
}

// Bundle is the school's bundle of group, or of the default group, as the
// store-owning collector composed it; nil for a school it has not
// mirrored yet (the agent keeps its rules until the bundle arrives and is
// pushed). Never another school's: a school's bundle holds its own terms.
func (c *RulesCache) Bundle(school, group string) *vigilv1.RulesBundle {
	c.mu.RLock()
	defer c.mu.RUnlock()
	if b := c.bundles[RulesKey(school, group)]; b != nil {
		return b
	}
	return c.bundles[RulesKey(school, "default")]
}

// Run follows the bucket until ctx ends, calling changed once the initial
// values are read and after each later change (then push the bundles).
func (c *RulesCache) Run(ctx context.Context, kv jetstream.KeyValue, changed func(), log *slog.Logger) error {
	followBucket(ctx, kv, "rules bucket", func(e jetstream.KeyValueEntry) {
		c.mu.Lock()
		defer c.mu.Unlock()
		if c.bundles == nil {
			c.bundles = map[string]*vigilv1.RulesBundle{}
		}
		b := &vigilv1.RulesBundle{}
		switch op := e.Operation(); {
		case op == jetstream.KeyValueDelete || op == jetstream.KeyValuePurge:
			delete(c.bundles, e.Key())
		case proto.Unmarshal(e.Value(), b) != nil || rules.HashFiles(b.Files) != b.Hash:
			log.Error("rules bucket: an entry does not decode or match its hash; keeping the previous bundle", "key", e.Key())
		default:
			c.bundles[e.Key()] = b
		}
	}, changed, log)
	return nil
}
