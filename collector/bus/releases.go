package bus

import (
	"context"
	"crypto/ed25519"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"github.com/nats-io/nats.go/jetstream"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/releases"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Agent upgrades through front-ends. The store-owning collector owns the
// releases (collector/releases: signed binaries, rollouts, each device's
// refusals); front-ends hold the streams. The collector mirrors what
// decides an offer into the KV bucket ReleasesBucket (key "policy": the
// release public key and releases.Policy; "m.<version>.<os>.<arch>": each
// release's signed manifest) and each binary into the object store
// ReleaseBinaries. A front-end's ReleasesCache decides offers with
// releases.OfferFrom, exactly as the collector does, serves the binary
// from a local copy checked against the manifest's SHA-256, and sends the
// agent's upgrade report back as a device event, which the collector
// records (a refusal stops that version being offered to the device,
// at every front-end once the policy is mirrored again). The agent checks
// the signature with the key it pinned at enrolment, so a front-end cannot
// make it run anything the release key did not sign.
const (
	ReleasesBucket  = "VIGIL_RELEASES"
	ReleaseBinaries = "VIGIL_RELEASE_BINARIES"
	policyKey       = "policy"
)

// mirroredPolicy is the "policy" entry.
type mirroredPolicy struct {
	PublicKey []byte          `json:"public_key"`
	Policy    releases.Policy `json:"policy"`
}

func manifestKey(version, goos, goarch string) string {
	return "m." + kvToken(version) + "." + kvToken(goos) + "." + kvToken(goarch)
}

func binaryName(m releases.Manifest) string { return m.Version + "/" + m.OS + "/" + m.Arch }

// Releases opens (creating if need be) the releases bucket.
func (b *Bus) Releases(ctx context.Context) (jetstream.KeyValue, error) {
	return b.bucket(ctx, ReleasesBucket)
}

// ReleaseBinaries opens (creating if need be) the object store of release
// binaries, retried like the buckets while a cluster elects its leader.
func (b *Bus) ReleaseBinaries(ctx context.Context) (jetstream.ObjectStore, error) {
	cfg := jetstream.ObjectStoreConfig{Bucket: ReleaseBinaries, Storage: jetstream.FileStorage, Replicas: b.cfg.Replicas}
	var st jetstream.ObjectStore
	err := untilReady(ctx, "open object store "+ReleaseBinaries, func(ctx context.Context) (err error) {
		st, err = b.js.CreateOrUpdateObjectStore(ctx, cfg)
		return err
	})
	return st, err
}

// ReleaseSource is what ReleasesMirror reads (*releases.Manager).
type ReleaseSource interface {
	PublicKey() ed25519.PublicKey
	Policy() releases.Policy
	List() ([]releases.Manifest, error)
	BinaryPath(releases.Manifest) string
}

// ReleasesMirror puts the release policy, manifests and binaries on the
// bus when they change.
type ReleasesMirror struct {
	KV      jetstream.KeyValue
	Objects jetstream.ObjectStore
	Source  ReleaseSource

	mu        sync.Mutex
	policy    []byte          // last put
	manifests map[string]bool // keys put
}

// Sync puts what changed: the binary of a new release before its manifest
// (a front-end that sees a manifest finds its binary), then the policy.
func (m *ReleasesMirror) Sync(ctx context.Context) error {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.manifests == nil {
		m.manifests = map[string]bool{}
	}
	list, err := m.Source.List()
	if err != nil {
		return fmt.Errorf("bus: list releases: %w", err)
	}
	for _, man := range list {
		k := manifestKey(man.Version, man.OS, man.Arch)
		if m.manifests[k] {
			continue
		}
		if err := m.putBinary(ctx, man); err != nil {
			return err
		}
		v, _ := json.Marshal(man)
		if _, err := m.KV.Put(ctx, k, v); err != nil {
			return fmt.Errorf("bus: put the manifest of %s: %w", binaryName(man), err)
		}
		m.manifests[k] = true
	}
	v, _ := json.Marshal(mirroredPolicy{PublicKey: m.Source.PublicKey(), Policy: m.Source.Policy()})
	if string(v) != string(m.policy) {
		if _, err := m.KV.Put(ctx, policyKey, v); err != nil {
			return fmt.Errorf("bus: put the release policy: %w", err)
		}
		m.policy = v
	}
	return nil
}

// putBinary puts a release's binary unless the object store holds it
// with the manifest's SHA-256 already.
func (m *ReleasesMirror) putBinary(ctx context.Context, man releases.Manifest) error {
	name := binaryName(man)
	if info, err := m.Objects.GetInfo(ctx, name); err == nil && !info.Deleted {
		if sum, err := jetstream.DecodeObjectDigest(info.Digest); err == nil && hex.EncodeToString(sum) == man.SHA256 {
			return nil
		}
	}
	f, err := os.Open(m.Source.BinaryPath(man))
	if err != nil {
		return fmt.Errorf("bus: open the binary of %s: %w", name, err)
	}
	defer f.Close()
	if _, err := m.Objects.Put(ctx, jetstream.ObjectMeta{Name: name}, f); err != nil {
		return fmt.Errorf("bus: put the binary of %s: %w", name, err)
	}
	return nil
}

// ReportSink carries an agent's upgrade report to the store-owning
// collector (*EventPublisher).
type ReportSink interface {
	DeviceEvent(ctx context.Context, ev *vigilv1.DeviceEvent) error
}

// ReleasesCache is a front-end's copy of the releases bucket; it is the
// front-end's server.UpgradeSource.
type ReleasesCache struct {
	Objects jetstream.ObjectStore
	// Dir keeps the binaries fetched from the object store.
	Dir     string
	Reports ReportSink
	Log     *slog.Logger

	mu        sync.RWMutex
	pub       ed25519.PublicKey
	policy    releases.Policy
	manifests map[string]releases.Manifest

	fetchMu sync.Mutex // one download from the bus at a time
}

// PublicKey is the release key agents pin at enrolment (front-ends do not
// enrol; this is for completeness of the interface).
func (c *ReleasesCache) PublicKey() ed25519.PublicKey {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return c.pub
}

func (c *ReleasesCache) manifest(version, goos, goarch string) (releases.Manifest, bool) {
	m, ok := c.manifests[manifestKey(version, goos, goarch)]
	return m, ok
}

// Offer is what the store-owning collector would offer device.
func (c *ReleasesCache) Offer(device, group, running, goos, goarch string) *vigilv1.UpgradeOffer {
	c.mu.RLock()
	defer c.mu.RUnlock()
	return releases.OfferFrom(c.policy, c.manifest, device, group, running, goos, goarch)
}

// OpenOffered opens the binary of the release offered to device, fetched
// from the object store the first time and kept only if its SHA-256 is the
// manifest's.
func (c *ReleasesCache) OpenOffered(device, group, running string, req *vigilv1.DownloadRequest) (*os.File, int64, error) {
	o := c.Offer(device, group, running, req.GetOs(), req.GetArch())
	if o == nil || o.Version != req.GetVersion() {
		return nil, 0, fmt.Errorf("%w: release %s for %s/%s is not offered to this device", releases.ErrNotFound, req.GetVersion(), req.GetOs(), req.GetArch())
	}
	man := releases.Manifest{Version: o.Version, OS: o.Os, Arch: o.Arch, SHA256: o.Sha256, Size: o.Size}
	path := filepath.Join(c.Dir, kvToken(o.Version)+"-"+kvToken(o.Os)+"-"+kvToken(o.Arch))
	if f, err := c.openChecked(path, man); err == nil {
		return f, o.Size, nil
	}
	c.fetchMu.Lock()
	defer c.fetchMu.Unlock()
	if f, err := c.openChecked(path, man); err == nil {
		return f, o.Size, nil
	}
	if err := c.fetch(path, man); err != nil {
		return nil, 0, err
	}
	f, err := c.openChecked(path, man)
	if err != nil {
		return nil, 0, err
	}
	return f, o.Size, nil
}

// openChecked opens path if its content hashes to man's SHA-256.
func (c *ReleasesCache) openChecked(path string, man releases.Manifest) (*os.File, error) {
	f, err := os.Open(path)
	if err != nil {
		return nil, err
	}
	h := sha256.New()
	if _, err := io.Copy(h, f); err != nil || hex.EncodeToString(h.Sum(nil)) != man.SHA256 {
		f.Close()
		return nil, fmt.Errorf("bus: %s does not match the release's SHA-256", path)
	}
	if _, err := f.Seek(0, io.SeekStart); err != nil {
		f.Close()
		return nil, err
	}
	return f, nil
}

// fetch copies the release binary from the object store to path.
func (c *ReleasesCache) fetch(path string, man releases.Manifest) error {
	if err := os.MkdirAll(c.Dir, 0o700); err != nil {
		return fmt.Errorf("bus: release cache: %w", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Minute)
	defer cancel()
	obj, err := c.Objects.Get(ctx, binaryName(man))
	if err != nil {
		return fmt.Errorf("bus: get the binary of %s: %w", binaryName(man), err)
	}
	defer obj.Close()
	tmp, err := os.CreateTemp(c.Dir, ".fetch-*")
	if err != nil {
		return fmt.Errorf("bus: release cache: %w", err)
	}
	defer os.Remove(tmp.Name())
	h := sha256.New()
	_, err = io.Copy(io.MultiWriter(tmp, h), obj)
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return fmt.Errorf("bus: fetch the binary of %s: %w", binaryName(man), err)
	}
	if hex.EncodeToString(h.Sum(nil)) != man.SHA256 {
		return fmt.Errorf("bus: the binary of %s on the bus does not match its manifest's SHA-256", binaryName(man))
	}
	return os.Rename(tmp.Name(), path)
}

// Record sends the agent's report to the store-owning collector. A report
// lost here (the bus down) only means the agent is offered the version
// again and refuses it again.
func (c *ReleasesCache) Record(device string, rep *vigilv1.UpgradeReport) {
	if c.Reports == nil {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	ev := &vigilv1.DeviceEvent{DeviceId: device, At: timestamppb.Now(), Event: &vigilv1.DeviceEvent_UpgradeReport{UpgradeReport: rep}}
	if err := c.Reports.DeviceEvent(ctx, ev); err != nil && c.Log != nil {
		c.Log.Warn("upgrade report not passed on to the store-owning collector", "device", device, "err", err)
	}
}

// Run follows the releases bucket until ctx ends, calling changed once
// the initial values are read and after each later change (then offer
// upgrades again).
func (c *ReleasesCache) Run(ctx context.Context, kv jetstream.KeyValue, changed func(), log *slog.Logger) error {
	followBucket(ctx, kv, "releases bucket", func(e jetstream.KeyValueEntry) { c.apply(e, log) }, changed, log)
	return nil
}

func (c *ReleasesCache) apply(e jetstream.KeyValueEntry, log *slog.Logger) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.manifests == nil {
		c.manifests = map[string]releases.Manifest{}
	}
	gone := e.Operation() == jetstream.KeyValueDelete || e.Operation() == jetstream.KeyValuePurge
	switch k := e.Key(); {
	case k == policyKey && gone:
		c.pub, c.policy = nil, releases.Policy{}
	case k == policyKey:
		var p mirroredPolicy
		if err := json.Unmarshal(e.Value(), &p); err != nil {
			log.Error("releases bucket: the policy does not decode; keeping the previous one", "err", err)
			return
		}
		c.pub, c.policy = p.PublicKey, p.Policy
	case gone:
		delete(c.manifests, k)
	default:
		var m releases.Manifest
		if err := json.Unmarshal(e.Value(), &m); err != nil || manifestKey(m.Version, m.OS, m.Arch) != k {
			log.Error("releases bucket: a manifest does not decode or match its key; ignored", "key", k, "err", err)
			return
		}
		c.manifests[k] = m
	}
}
