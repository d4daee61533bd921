// Package releases owns the collector's agent releases: the release signing
// key, the signed binaries under DATA/releases/, the rollout of a version
// per device group, and which devices failed which version. The gRPC server
// asks it what to offer a device and for the bytes to serve; the admin API
// and CLI change rollouts through it.
package releases

import (
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"crypto/x509"
	"encoding/hex"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"hash/fnv"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	"github.com/vigil-safeguarding/vigil/internal/release"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// Dir is the releases folder inside the collector's data dir.
const Dir = "releases"

// File names inside it.
const (
	privateKeyFile = "release.key"
	publicKeyFile  = "release.pub"
	manifestFile   = "manifest.json"
	binaryFile     = "agent.bin"
	rolloutsFile   = "rollouts.json"
)

// ErrNotFound means no such release or rollout.
var ErrNotFound = errors.New("not found")

// Manifest describes one stored release.
type Manifest struct {
	Version   string    `json:"version"`
	OS        string    `json:"os"`
	Arch      string    `json:"arch"`
	SHA256    string    `json:"sha256"`
	Size      int64     `json:"size"`
	Signature []byte    `json:"signature"`
	AddedAt   time.Time `json:"added_at"`
}

func releaseDir(root, version, goos, goarch string) string {
	return filepath.Join(root, version+"_"+goos+"_"+goarch)
}

// PublicKeyPath is where the release public key lives under dataDir.
func PublicKeyPath(dataDir string) string { return filepath.Join(dataDir, Dir, publicKeyFile) }

// PrivateKeyPath is where the release signing key lives under dataDir
// unless the school keeps it elsewhere (docs/security.md).
func PrivateKeyPath(dataDir string) string { return filepath.Join(dataDir, Dir, privateKeyFile) }

// EnsureKey creates the release key pair under dataDir on first use,
// owner-only, and returns the public key. A data dir that has the public key
// but not the private one (kept offline) is left as it is.
func EnsureKey(dataDir string) (ed25519.PublicKey, error) {
	root := filepath.Join(dataDir, Dir)
	if err := os.MkdirAll(root, 0o700); err != nil {
		return nil, fmt.Errorf("create releases dir: %w", err)
	}
	if pub, err := LoadPublicKey(PublicKeyPath(dataDir)); err == nil {
		return pub, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	if _, err := os.Stat(PrivateKeyPath(dataDir)); err == nil {
		// The private key without its public half: derive it again.
		key, err := LoadPrivateKey(PrivateKeyPath(dataDir))
		if err != nil {
			return nil, err
		}
		pub := key.Public().(ed25519.PublicKey)
		return pub, writePublic(PublicKeyPath(dataDir), pub)
	}
	pub, key, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return nil, fmt.Errorf("generate release key: %w", err)
	}
	if err := WritePrivateKey(PrivateKeyPath(dataDir), key); err != nil {
		return nil, err
	}
	return pub, writePublic(PublicKeyPath(dataDir), pub)
}

// WritePrivateKey writes an ed25519 key as PKCS#8 PEM, owner-only.
func WritePrivateKey(path string, key ed25519.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return fmt.Errorf("encode release key: %w", err)
	}
	if err := fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write release key %s: %w", path, err)
	}
	return nil
}

func writePublic(path string, pub ed25519.PublicKey) error {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return err
	}
	if err := fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: "PUBLIC KEY", Bytes: der}), 0o600); err != nil {
		return fmt.Errorf("write release public key %s: %w", path, err)
	}
	return nil
}

// LoadPrivateKey reads an ed25519 signing key (PKCS#8 PEM).
func LoadPrivateKey(path string) (ed25519.PrivateKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse release key %s: %w", path, err)
	}
	key, ok := k.(ed25519.PrivateKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an ed25519 key", path)
	}
	return key, nil
}

// LoadPublicKey reads an ed25519 public key (PKIX PEM).
func LoadPublicKey(path string) (ed25519.PublicKey, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM block", path)
	}
	k, err := x509.ParsePKIXPublicKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse release public key %s: %w", path, err)
	}
	pub, ok := k.(ed25519.PublicKey)
	if !ok {
		return nil, fmt.Errorf("%s is not an ed25519 key", path)
	}
	return pub, nil
}

// Add signs the binary at file with key and stores it as (version, os,
// arch). The binary is copied first and hashed as copied, so what is signed
// is exactly what is stored. Adding the same release twice is refused: a
// version names one binary.
func Add(dataDir string, key ed25519.PrivateKey, file, version, goos, goarch string, now time.Time) (Manifest, error) {
	if err := release.ValidVersion(version); err != nil {
		return Manifest{}, err
	}
	if err := release.ValidPlatform(goos, goarch); err != nil {
		return Manifest{}, err
	}
	pub, err := LoadPublicKey(PublicKeyPath(dataDir))
	if err != nil {
		return Manifest{}, fmt.Errorf("read the collector's release public key (start the collector once, or see docs/security.md): %w", err)
	}
	if !pub.Equal(key.Public()) {
		return Manifest{}, fmt.Errorf("the signing key is not the one whose public half agents pin (%s)", PublicKeyPath(dataDir))
	}
	if err := checkNew(dataDir, version, goos, goarch); err != nil {
		return Manifest{}, err
	}
	src, err := os.Open(file)
	if err != nil {
		return Manifest{}, fmt.Errorf("open release binary: %w", err)
	}
	defer src.Close()
	return add(dataDir, key, src, version, goos, goarch, now)
}

// add stores and signs the binary read from src; Add has checked the
// version, platform and key.
func add(dataDir string, key ed25519.PrivateKey, src io.Reader, version, goos, goarch string, now time.Time) (Manifest, error) {
	root := filepath.Join(dataDir, Dir)
	dir := releaseDir(root, version, goos, goarch)
	tmp, err := os.MkdirTemp(root, ".adding-")
	if err != nil {
		return Manifest{}, fmt.Errorf("create release dir: %w", err)
	}
	defer os.RemoveAll(tmp)
	out, err := os.OpenFile(filepath.Join(tmp, binaryFile), os.O_CREATE|os.O_EXCL|os.O_WRONLY, 0o600)
	if err != nil {
		return Manifest{}, err
	}
	h := sha256.New()
	n, err := io.Copy(io.MultiWriter(out, h), io.LimitReader(src, release.MaxBinary+1))
	if err == nil {
		err = out.Sync()
	}
	if cerr := out.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return Manifest{}, fmt.Errorf("copy release binary: %w", err)
	}
	if n > release.MaxBinary {
		return Manifest{}, fmt.Errorf("%w: release binary is larger than %d MiB", ErrBadRelease, release.MaxBinary>>20)
	}
	if n == 0 {
		return Manifest{}, fmt.Errorf("%w: release binary is empty", ErrBadRelease)
	}
	m := Manifest{Version: version, OS: goos, Arch: goarch, SHA256: hex.EncodeToString(h.Sum(nil)), Size: n, AddedAt: now.UTC()}
	m.Signature = release.Sign(key, m.SHA256, version, goos, goarch)
	b, _ := json.MarshalIndent(m, "", "  ")
	if err := fsutil.WriteFileAtomic(filepath.Join(tmp, manifestFile), append(b, '\n'), 0o600); err != nil {
		return Manifest{}, err
	}
	if err := os.Rename(tmp, dir); err != nil {
		if _, serr := os.Stat(dir); serr == nil {
			// Two publishers of one version raced; the first one won.
			return Manifest{}, fmt.Errorf("%w: release %s for %s/%s already exists; publish a new version instead", ErrExists, version, goos, goarch)
		}
		return Manifest{}, fmt.Errorf("store release: %w", err)
	}
	return m, nil
}

// ErrExists means the release (version, os, arch) is already stored.
var ErrExists = errors.New("release exists")

// ErrKeyOffline means the collector does not hold the release signing key
// (the school keeps it offline, docs/security.md), so it cannot publish.
var ErrKeyOffline = errors.New("the release signing key is not on this collector")

// ErrBadRelease means a release's version, platform or binary was refused.
var ErrBadRelease = errors.New("bad release")

func checkNew(dataDir, version, goos, goarch string) error {
	if _, err := os.Stat(releaseDir(filepath.Join(dataDir, Dir), version, goos, goarch)); err == nil {
		return fmt.Errorf("%w: release %s for %s/%s already exists; publish a new version instead", ErrExists, version, goos, goarch)
	}
	return nil
}

// Publish signs and stores the binary read from src with the signing key
// the collector holds (DATA/releases/release.key), as `release add` does
// by default. A collector whose key is kept offline answers ErrKeyOffline:
// those releases are added with `release add --key` where the key is.
func (m *Manager) Publish(src io.Reader, version, goos, goarch string) (Manifest, error) {
	if err := release.ValidVersion(version); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrBadRelease, err)
	}
	if err := release.ValidPlatform(goos, goarch); err != nil {
		return Manifest{}, fmt.Errorf("%w: %v", ErrBadRelease, err)
	}
	key, err := LoadPrivateKey(PrivateKeyPath(m.dataDir))
	if errors.Is(err, os.ErrNotExist) {
		return Manifest{}, ErrKeyOffline
	}
	if err != nil {
		return Manifest{}, err
	}
	if !m.pub.Equal(key.Public()) {
		return Manifest{}, fmt.Errorf("the signing key is not the one whose public half agents pin (%s)", PublicKeyPath(m.dataDir))
	}
	// One publish at a time: the existence check and the rename are then
	// not raced by this collector's own console.
	m.pubMu.Lock()
	defer m.pubMu.Unlock()
	if err := checkNew(m.dataDir, version, goos, goarch); err != nil {
		return Manifest{}, err
	}
	man, err := add(m.dataDir, key, src, version, goos, goarch, m.now())
	if err != nil {
		return Manifest{}, err
	}
	m.log.Info("release published", "version", version, "os", goos, "arch", goarch, "sha256", man.SHA256, "size", man.Size)
	return man, nil
}

// HoldsSigningKey says whether the signing key is in the data dir, so
// Publish can sign (false: it is kept offline).
func (m *Manager) HoldsSigningKey() bool {
	_, err := os.Stat(PrivateKeyPath(m.dataDir))
	return err == nil
}

// List returns every stored release, newest first.
func (m *Manager) List() ([]Manifest, error) { return List(m.dataDir) }

// Rollouts returns every group's rollout.
func (m *Manager) Rollouts() map[string]Rollout {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make(map[string]Rollout, len(m.state.Groups))
	for g, r := range m.state.Groups {
		out[g] = *r
	}
	return out
}

// List returns every stored release, newest first.
func List(dataDir string) ([]Manifest, error) {
	root := filepath.Join(dataDir, Dir)
	entries, err := os.ReadDir(root)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read releases: %w", err)
	}
	var out []Manifest
	for _, e := range entries {
		if !e.IsDir() || e.Name()[0] == '.' {
			continue
		}
		m, err := readManifest(filepath.Join(root, e.Name()))
		if err != nil {
			return nil, err
		}
		out = append(out, m)
	}
	sort.Slice(out, func(i, j int) bool { return out[i].AddedAt.After(out[j].AddedAt) })
	return out, nil
}

func readManifest(dir string) (Manifest, error) {
	var m Manifest
	b, err := os.ReadFile(filepath.Join(dir, manifestFile))
	if err != nil {
		return m, fmt.Errorf("read release manifest: %w", err)
	}
	if err := json.Unmarshal(b, &m); err != nil {
		return m, fmt.Errorf("parse %s: %w", filepath.Join(dir, manifestFile), err)
	}
	return m, nil
}

// Rollout is a group's target version.
type Rollout struct {
	Version string `json:"version"`
	// Percent of the group's devices offered the version (by a stable hash
	// of device and version, so raising it only adds devices).
	Percent   int       `json:"percent"`
	StartedAt time.Time `json:"started_at"`
	// Previous is what rollback returns to (nil: no rollout before).
	Previous *Rollout `json:"previous,omitempty"`
}

// Failure records a device refusing or rolling back a version.
type Failure struct {
	Outcome string    `json:"outcome"`
	Reason  string    `json:"reason"`
	At      time.Time `json:"at"`
}

type rolloutState struct {
	// Minimum is the lowest version any rollout or rollback may target
	// (empty: none). Raised after a release fixes a security problem, it
	// keeps a group from being sent back to a vulnerable build.
	Minimum string              `json:"minimum,omitempty"`
	Groups  map[string]*Rollout `json:"groups"`
	// Failed: device -> version -> what happened. That version is not
	// offered to that device again.
	Failed map[string]map[string]Failure `json:"failed"`
}

// Manager is the running collector's view of releases and rollouts.
type Manager struct {
	dataDir string
	log     *slog.Logger
	pub     ed25519.PublicKey
	now     func() time.Time

	mu    sync.Mutex
	state rolloutState

	pubMu sync.Mutex // one Publish at a time
}

// Open loads the release key (creating it on first use) and the rollouts.
func Open(dataDir string, log *slog.Logger) (*Manager, error) {
	pub, err := EnsureKey(dataDir)
	if err != nil {
		return nil, err
	}
	m := &Manager{dataDir: dataDir, log: log, pub: pub, now: time.Now,
		state: rolloutState{Groups: map[string]*Rollout{}, Failed: map[string]map[string]Failure{}}}
	b, err := os.ReadFile(m.rolloutsPath())
	if err != nil && !errors.Is(err, os.ErrNotExist) {
		return nil, fmt.Errorf("read rollouts: %w", err)
	}
	if err == nil {
		if err := json.Unmarshal(b, &m.state); err != nil {
			return nil, fmt.Errorf("parse %s: %w", m.rolloutsPath(), err)
		}
		if m.state.Groups == nil {
			m.state.Groups = map[string]*Rollout{}
		}
		if m.state.Failed == nil {
			m.state.Failed = map[string]map[string]Failure{}
		}
	}
	return m, nil
}

func (m *Manager) rolloutsPath() string { return filepath.Join(m.dataDir, Dir, rolloutsFile) }

// PublicKey is the release key agents pin at enrollment.
func (m *Manager) PublicKey() ed25519.PublicKey { return m.pub }

// save writes the state; m.mu is held.
func (m *Manager) save() error {
	b, _ := json.MarshalIndent(m.state, "", "  ")
	if err := fsutil.WriteFileAtomic(m.rolloutsPath(), append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("save rollouts: %w", err)
	}
	return nil
}

// StartRollout sets group's target version. The version must have been
// added for at least one platform.
func (m *Manager) StartRollout(group, version string, percent int) (Rollout, error) {
	if group == "" {
		return Rollout{}, errors.New("group is required")
	}
	if percent <= 0 || percent > 100 {
		return Rollout{}, fmt.Errorf("percent %d: want 1 to 100", percent)
	}
	all, err := List(m.dataDir)
	if err != nil {
		return Rollout{}, err
	}
	found := false
	for _, r := range all {
		found = found || r.Version == version
	}
	if !found {
		return Rollout{}, fmt.Errorf("%w: no release %q (add it with `vigil-collector release add`)", ErrNotFound, version)
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if err := belowMinimum(version, m.state.Minimum); err != nil {
		return Rollout{}, err
	}
	r := &Rollout{Version: version, Percent: percent, StartedAt: m.now().UTC()}
	if prev := m.state.Groups[group]; prev != nil {
		if prev.Version == version {
			// Widening the same rollout keeps what rollback returns to.
			r.Previous = prev.Previous
		} else {
			p := *prev
			p.Previous = nil
			r.Previous = &p
		}
	}
	m.state.Groups[group] = r
	if err := m.save(); err != nil {
		return Rollout{}, err
	}
	m.log.Info("release rollout", "group", group, "version", version, "percent", percent)
	return *r, nil
}

// Rollback returns group to its previous rollout, or to none (devices keep
// what they run).
func (m *Manager) Rollback(group string) (*Rollout, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	cur := m.state.Groups[group]
	if cur == nil {
		return nil, fmt.Errorf("%w: group %q has no rollout", ErrNotFound, group)
	}
	if cur.Previous != nil {
		if err := belowMinimum(cur.Previous.Version, m.state.Minimum); err != nil {
			return nil, fmt.Errorf("cannot roll back group %q: %w", group, err)
		}
	}
	if cur.Previous == nil {
		delete(m.state.Groups, group)
	} else {
		m.state.Groups[group] = cur.Previous
	}
	if err := m.save(); err != nil {
		return nil, err
	}
	m.log.Warn("release rollout rolled back", "group", group, "from", cur.Version, "to", m.state.Groups[group])
	return m.state.Groups[group], nil
}

// SetMinimum sets the lowest version rollouts and rollbacks may target;
// existing rollouts below it stop being offered.
func (m *Manager) SetMinimum(version string) error {
	if version != "" {
		if _, ok := parseVersion(version); !ok {
			return fmt.Errorf("minimum %q: want a version starting X.Y.Z", version)
		}
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	m.state.Minimum = version
	if err := m.save(); err != nil {
		return err
	}
	m.log.Info("release minimum set", "minimum", version)
	return nil
}

// Minimum returns the minimum version ("" for none).
func (m *Manager) Minimum() string {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.state.Minimum
}

// parseVersion reads the leading X.Y.Z of a version ("1.4.0-rc1" is 1.4.0).
func parseVersion(v string) ([3]int, bool) {
	var out [3]int
	end := 0
	for end < len(v) && (v[end] == '.' || v[end] >= '0' && v[end] <= '9') {
		end++
	}
	parts := strings.Split(v[:end], ".")
	if len(parts) < 3 {
		return out, false
	}
	for i := 0; i < 3; i++ {
		n, err := strconv.Atoi(parts[i])
		if err != nil || n < 0 {
			return out, false
		}
		out[i] = n
	}
	return out, true
}

// belowMinimum refuses version when a minimum is set and version is lower
// (or cannot be compared).
func belowMinimum(version, minimum string) error {
	if minimum == "" {
		return nil
	}
	mv, _ := parseVersion(minimum)
	v, ok := parseVersion(version)
	if !ok {
		return fmt.Errorf("version %q cannot be compared with the minimum %s (want X.Y.Z...)", version, minimum)
	}
	for i := range v {
		if v[i] != mv[i] {
			if v[i] < mv[i] {
				return fmt.Errorf("version %s is below the minimum %s (vigil-collector release minimum)", version, minimum)
			}
			return nil
		}
	}
	return nil
}

// Rollout returns group's rollout, if any.
func (m *Manager) Rollout(group string) (Rollout, bool) {
	m.mu.Lock()
	defer m.mu.Unlock()
	r := m.state.Groups[group]
	if r == nil {
		return Rollout{}, false
	}
	return *r, true
}

// Failures returns device's failed versions.
func (m *Manager) Failures(device string) map[string]Failure {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := map[string]Failure{}
	for v, f := range m.state.Failed[device] {
		out[v] = f
	}
	return out
}

// inPercent picks a stable share of devices for a partial rollout.
func inPercent(device, version string, percent int) bool {
	if percent >= 100 {
		return true
	}
	h := fnv.New32a()
	h.Write([]byte(device + "\x00" + version))
	return int(h.Sum32()%100) < percent
}

// Policy is what decides offers: the minimum, each group's rollout and
// the versions each device refused or rolled back. The store-owning
// collector hands it to stream front-ends (collector/bus), which decide
// offers with OfferFrom exactly as the Manager does.
type Policy struct {
	Minimum string                        `json:"minimum,omitempty"`
	Groups  map[string]*Rollout           `json:"groups"`
	Failed  map[string]map[string]Failure `json:"failed"`
}

// Policy returns a copy of the current policy.
func (m *Manager) Policy() Policy {
	m.mu.Lock()
	defer m.mu.Unlock()
	p := Policy{Minimum: m.state.Minimum, Groups: map[string]*Rollout{}, Failed: map[string]map[string]Failure{}}
	for g, r := range m.state.Groups {
		c := *r
		p.Groups[g] = &c
	}
	for d, vs := range m.state.Failed {
		p.Failed[d] = map[string]Failure{}
		for v, f := range vs {
			p.Failed[d][v] = f
		}
	}
	return p
}

// OfferFrom is the offer policy decides for device (in group, running a
// version, on goos/goarch), with manifest looking up the release built for
// a platform; nil when nothing is to be offered.
func OfferFrom(p Policy, manifest func(version, goos, goarch string) (Manifest, bool), device, group, running, goos, goarch string) *vigilv1.UpgradeOffer {
	r := p.Groups[group]
	if r == nil || belowMinimum(r.Version, p.Minimum) != nil {
		return nil
	}
	target := r.Version
	if _, failed := p.Failed[device][target]; failed || running == target || !inPercent(device, target, r.Percent) {
		return nil
	}
	man, ok := manifest(target, goos, goarch)
	if !ok {
		// No build for this platform: nothing to offer, and nothing wrong
		// with the device.
		return nil
	}
	return &vigilv1.UpgradeOffer{Version: man.Version, Os: man.OS, Arch: man.Arch, Sha256: man.SHA256, Size: man.Size, Signature: man.Signature}
}

// Offer returns what device (in group, running version on goos/goarch)
// should be offered, or nil.
func (m *Manager) Offer(device, group, running, goos, goarch string) *vigilv1.UpgradeOffer {
	// Only what this device's offer reads, copied under the lock.
	m.mu.Lock()
	p := Policy{Minimum: m.state.Minimum, Failed: map[string]map[string]Failure{device: {}}}
	if r := m.state.Groups[group]; r != nil {
		c := *r
		p.Groups = map[string]*Rollout{group: &c}
	}
	for v, f := range m.state.Failed[device] {
		p.Failed[device][v] = f
	}
	m.mu.Unlock()
	return OfferFrom(p, m.manifest, device, group, running, goos, goarch)
}

// manifest reads the manifest of a release built for a platform.
func (m *Manager) manifest(version, goos, goarch string) (Manifest, bool) {
	man, err := readManifest(releaseDir(filepath.Join(m.dataDir, Dir), version, goos, goarch))
	return man, err == nil
}

// BinaryPath is where the binary of an added release is (for the bus to
// carry it to front-ends).
func (m *Manager) BinaryPath(man Manifest) string {
	return filepath.Join(releaseDir(filepath.Join(m.dataDir, Dir), man.Version, man.OS, man.Arch), binaryFile)
}

// OpenOffered opens the release binary currently offered to device, for
// download. Only the offered release is served: a device cannot fetch
// arbitrary files or versions.
func (m *Manager) OpenOffered(device, group, running string, req *vigilv1.DownloadRequest) (*os.File, int64, error) {
	o := m.Offer(device, group, running, req.GetOs(), req.GetArch())
	if o == nil || o.Version != req.GetVersion() {
		return nil, 0, fmt.Errorf("%w: release %s for %s/%s is not offered to this device", ErrNotFound, req.GetVersion(), req.GetOs(), req.GetArch())
	}
	f, err := os.Open(filepath.Join(releaseDir(filepath.Join(m.dataDir, Dir), o.Version, o.Os, o.Arch), binaryFile))
	if err != nil {
		return nil, 0, fmt.Errorf("open release binary: %w", err)
	}
	return f, o.Size, nil
}

// Record notes what device reports about an offer. Refusals and rollbacks
// stop that version being offered to that device.
func (m *Manager) Record(device string, rep *vigilv1.UpgradeReport) {
	switch rep.GetOutcome() {
	case vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_REFUSED, vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_ROLLED_BACK:
	default:
		m.log.Info("agent upgraded", "device", device, "version", rep.GetVersion(), "running", rep.GetRunningVersion())
		return
	}
	if release.ValidVersion(rep.GetVersion()) != nil {
		return
	}
	reason := rep.GetReason()
	if len(reason) > 512 {
		reason = reason[:512]
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.state.Failed[device] == nil {
		m.state.Failed[device] = map[string]Failure{}
	}
	if _, known := m.state.Failed[device][rep.GetVersion()]; known {
		// The first report says what happened; a later "refused, failed
		// before" only repeats it.
		return
	}
	outcome := "refused"
	if rep.GetOutcome() == vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_ROLLED_BACK {
		outcome = "rolled_back"
	}
	m.state.Failed[device][rep.GetVersion()] = Failure{Outcome: outcome, Reason: reason, At: m.now().UTC()}
	m.log.Warn("agent upgrade failed; version no longer offered to this device", "device", device, "version", rep.GetVersion(),
		"outcome", outcome, "reason", reason)
	if err := m.save(); err != nil {
		m.log.Error("record failed upgrade", "err", err)
	}
}

// DeviceStatus is one row of `release status`.
type DeviceStatus struct {
	DeviceID  string   `json:"device_id"`
	Hostname  string   `json:"hostname"`
	Version   string   `json:"version"`
	Connected bool     `json:"connected"`
	Failed    *Failure `json:"failed,omitempty"`
	State     string   `json:"state"` // current | pending | failed | not_targeted | no_rollout
}

// GroupStatus answers `release status --group G`.
type GroupStatus struct {
	Group    string         `json:"group"`
	Rollout  *Rollout       `json:"rollout,omitempty"`
	Versions map[string]int `json:"versions"`
	Devices  []DeviceStatus `json:"devices"`
}

// DeviceInfo is what Status needs of a device record.
type DeviceInfo struct {
	ID, Group, Hostname, Version string
	Connected                    bool
}

// Status says which devices of group run which version.
func (m *Manager) Status(group string, devices []DeviceInfo) GroupStatus {
	gs := GroupStatus{Group: group, Versions: map[string]int{}}
	r, ok := m.Rollout(group)
	if ok {
		gs.Rollout = &r
	}
	for _, d := range devices {
		if d.Group != group {
			continue
		}
		gs.Versions[d.Version]++
		ds := DeviceStatus{DeviceID: d.ID, Hostname: d.Hostname, Version: d.Version, Connected: d.Connected}
		switch {
		case !ok:
			ds.State = "no_rollout"
		case d.Version == r.Version:
			ds.State = "current"
		default:
			if f, failed := m.Failures(d.ID)[r.Version]; failed {
				ds.State, ds.Failed = "failed", &f
			} else if inPercent(d.ID, r.Version, r.Percent) {
				ds.State = "pending"
			} else {
				ds.State = "not_targeted"
			}
		}
		gs.Devices = append(gs.Devices, ds)
	}
	sort.Slice(gs.Devices, func(i, j int) bool { return gs.Devices[i].DeviceID < gs.Devices[j].DeviceID })
	return gs
}
