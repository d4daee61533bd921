// Package evidencekeys owns the age identities evidence is sealed to, one
// per school. Agents seal screenshots on the device to their school's
// recipient, so a school's evidence can be read only with that school's
// key, and deleting the school destroys the key: evidence of it that
// survives anywhere else (a backup of the store, a copy of an export, an
// agent's spool) can no longer be opened. That is the proof a school that
// leaves a trust is given, and it touches no other school's key.
//
// The installation's key (pki/evidence.key) is the default school's, and
// it still opens evidence a school's devices sealed before the school had
// a key of its own (collectors before per-school keys, an agent that has
// not yet been told its school's recipient): Identities offers it after
// the school's.
package evidencekeys

import (
	"crypto/rand"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/fsutil"
)

// Dir is where the school keys live, under the collector's pki folder.
const Dir = "schools"

// Keyring holds the installation's identity and the schools'.
type Keyring struct {
	dir  string
	base *age.X25519Identity

	mu      sync.Mutex
	schools map[string]*age.X25519Identity
}

// Open reads the school keys under pkiDir/schools; base is the
// installation's identity (pki.LoadOrCreateEvidenceKey).
func Open(pkiDir string, base *age.X25519Identity) (*Keyring, error) {
	if base == nil {
		return nil, errors.New("evidence keys: no installation key")
	}
	k := &Keyring{dir: filepath.Join(pkiDir, Dir), base: base, schools: map[string]*age.X25519Identity{}}
	ents, err := os.ReadDir(k.dir)
	if errors.Is(err, os.ErrNotExist) {
		return k, nil
	}
	if err != nil {
		return nil, fmt.Errorf("evidence keys: read %s: %w", k.dir, err)
	}
	for _, e := range ents {
		school, ok := strings.CutSuffix(e.Name(), ".key")
		if !ok || !store.ValidSchoolID(school) {
			continue // a temporary file of an interrupted write, or not ours
		}
		id, err := readKey(filepath.Join(k.dir, e.Name()))
		if err != nil {
			return nil, err
		}
		k.schools[school] = id
	}
	return k, nil
}

func readKey(path string) (*age.X25519Identity, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("evidence keys: read %s: %w", path, err)
	}
	id, err := age.ParseX25519Identity(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("evidence keys: parse %s: %w", path, err)
	}
	return id, nil
}

// path is inside Dir: school IDs are store.ValidSchoolID, checked first.
func (k *Keyring) path(school string) string { return filepath.Join(k.dir, school+".key") }

func isDefault(school string) bool { return school == "" || school == store.DefaultSchool }

// Recipient is the age recipient the school's devices seal evidence to,
// its key created (owner-only) the first time it is asked for.
func (k *Keyring) Recipient(school string) (string, error) {
	if isDefault(school) {
		return k.base.Recipient().String(), nil
	}
	if !store.ValidSchoolID(school) {
		return "", fmt.Errorf("evidence keys: bad school id %q", school)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if id := k.schools[school]; id != nil {
		return id.Recipient().String(), nil
	}
	id, err := age.GenerateX25519Identity()
	if err != nil {
		return "", fmt.Errorf("evidence keys: generate the key of school %s: %w", school, err)
	}
	if err := os.MkdirAll(k.dir, 0o700); err != nil {
		return "", fmt.Errorf("evidence keys: %w", err)
	}
	if err := fsutil.WriteFileAtomic(k.path(school), []byte(id.String()+"\n"), 0o600); err != nil {
		return "", fmt.Errorf("evidence keys: write the key of school %s: %w", school, err)
	}
	k.schools[school] = id
	return id.Recipient().String(), nil
}

// Identities are the keys that may open the school's evidence: its own
// (if it has one), then the installation's.
func (k *Keyring) Identities(school string) []age.Identity {
	if isDefault(school) {
		return []age.Identity{k.base}
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if id := k.schools[school]; id != nil {
		return []age.Identity{id, k.base}
	}
	return []age.Identity{k.base}
}

// ErrNoKey: the school has no key of its own (its devices have sealed
// nothing to one yet, or it was destroyed).
var ErrNoKey = errors.New("evidence keys: the school has no key of its own")

// Secret is the school's identity (AGE-SECRET-KEY-1...), for a school that
// leaves with its export and must be able to open its evidence. Never the
// installation's.
func (k *Keyring) Secret(school string) (string, error) {
	if isDefault(school) {
		return "", errors.New("evidence keys: the installation's key is not a school's to hand over")
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	id := k.schools[school]
	if id == nil {
		return "", ErrNoKey
	}
	return id.String(), nil
}

// Has reports whether the school has a key of its own.
func (k *Keyring) Has(school string) bool {
	k.mu.Lock()
	defer k.mu.Unlock()
	return k.schools[school] != nil
}

// Destroy deletes the school's key: its file is overwritten with random
// bytes and synced before it is removed, so that the key is not left in
// the file's blocks for an undelete (what a journaling or copy-on-write
// file system or an SSD keeps elsewhere is beyond a program's reach; a
// backup of the key folder is the operator's to destroy, docs/security.md).
// It reports whether there was a key. The installation's key is not a
// school's to destroy.
func (k *Keyring) Destroy(school string) (bool, error) {
	if isDefault(school) {
		return false, errors.New("evidence keys: the installation's key is not a school's to destroy")
	}
	if !store.ValidSchoolID(school) {
		return false, fmt.Errorf("evidence keys: bad school id %q", school)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	path := k.path(school)
	fi, err := os.Stat(path)
	if errors.Is(err, os.ErrNotExist) {
		delete(k.schools, school)
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("evidence keys: %w", err)
	}
	if err := overwrite(path, fi.Size()); err != nil {
		return false, fmt.Errorf("evidence keys: overwrite the key of school %s: %w", school, err)
	}
	if err := os.Remove(path); err != nil {
		return false, fmt.Errorf("evidence keys: remove the key of school %s: %w", school, err)
	}
	if d, err := os.Open(k.dir); err == nil { // the removal itself made durable
		d.Sync()
		d.Close()
	}
	delete(k.schools, school)
	return true, nil
}

func overwrite(path string, size int64) error {
	f, err := os.OpenFile(path, os.O_WRONLY, 0)
	if err != nil {
		return err
	}
	junk := make([]byte, size)
	rand.Read(junk)
	if _, err := f.WriteAt(junk, 0); err != nil {
		f.Close()
		return err
	}
	if err := f.Sync(); err != nil {
		f.Close()
		return err
	}
	return f.Close()
}
