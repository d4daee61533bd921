package store

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"

	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// A school's findings and the triage records of its alerts (what its
// devices saw and what its DSL wrote about a pupil) are sealed, inside the
// store, under a data key of the school's own, kept outside the store
// (DataKeys). Badger's at-rest key is one for the installation, and a
// deleted record stays in Badger's files until compaction and in every
// backup taken before: destroying the school's data key when the school
// is deleted (DeleteSchool) makes every such copy unreadable at once,
// without touching another school's key or record (crypto-shredding).
//
// The default school's records are not sealed: it is the installation
// itself and cannot be deleted. Records written before a school had a key
// stay as they were (readable, removed logically only); docs/security.md
// says so.
//
// A sealed value is
//
//	0x00 'S' <len(school):1> <school> <nonce:12> <AES-256-GCM(plain, aad = Badger key)>
//
// A protobuf message never starts with 0x00 (field number 0 is invalid)
// and JSON starts with '{', so a value stored before sealing is told apart
// by its first byte. The Badger key is the additional data, so a sealed
// value copied under another record's key does not open.

// ErrDataKeyDestroyed means a sealed record's school key is gone: the
// school was deleted and this is a copy that outlived it (a backup, a
// table not yet compacted). Readers skip such records.
var ErrDataKeyDestroyed = errors.New("store: the school's data key is destroyed")

const (
	sealMagic0, sealMagic1 = 0x00, 'S'
	dataKeyLen             = 32
)

// DataKeys holds each school's data key, one owner-only file a school
// (<dir>/<school>.key, 32 random bytes), created the first time the school
// writes a sealed record. Keep dir out of the store's own folder: a backup
// of the store must not carry the keys that open it.
type DataKeys struct {
	dir string

	mu    sync.RWMutex
	aeads map[string]cipher.AEAD
}

// OpenDataKeys reads the school data keys under dir (created if missing).
func OpenDataKeys(dir string) (*DataKeys, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("store: school data keys: %w", err)
	}
	k := &DataKeys{dir: dir, aeads: map[string]cipher.AEAD{}}
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("store: school data keys: read %s: %w", dir, err)
	}
	for _, e := range ents {
		school, ok := strings.CutSuffix(e.Name(), ".key")
		if !ok || !ValidSchoolID(school) {
			continue // a temporary file of an interrupted write, or not ours
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			return nil, fmt.Errorf("store: school data keys: %w", err)
		}
		a, err := newAEAD(b)
		if err != nil {
			return nil, fmt.Errorf("store: school data key %s: %w", e.Name(), err)
		}
		k.aeads[school] = a
	}
	return k, nil
}

func newAEAD(key []byte) (cipher.AEAD, error) {
	if len(key) != dataKeyLen {
		return nil, fmt.Errorf("a data key is %d bytes, this one %d", dataKeyLen, len(key))
	}
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

func (k *DataKeys) path(school string) string { return filepath.Join(k.dir, school+".key") }

// aead is the school's cipher; create makes its key if it has none.
func (k *DataKeys) aead(school string, create bool) (cipher.AEAD, error) {
	k.mu.RLock()
	a := k.aeads[school]
	k.mu.RUnlock()
	if a != nil {
		return a, nil
	}
	if !create {
		return nil, fmt.Errorf("%w (school %s)", ErrDataKeyDestroyed, school)
	}
	if !ValidSchoolID(school) {
		return nil, fmt.Errorf("%w: %q", ErrBadSchool, school)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if a := k.aeads[school]; a != nil {
		return a, nil
	}
	key := make([]byte, dataKeyLen)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("store: generate the data key of school %s: %w", school, err)
	}
	// Durable before anything is sealed with it: a key lost in a crash
	// would make what was sealed with it unreadable.
	if err := fsutil.WriteFileAtomic(k.path(school), key, 0o600); err != nil {
		return nil, fmt.Errorf("store: write the data key of school %s: %w", school, err)
	}
	a, err := newAEAD(key)
	if err != nil {
		return nil, err
	}
	k.aeads[school] = a
	return a, nil
}

// Has reports whether the school has a data key.
func (k *DataKeys) Has(school string) bool {
	k.mu.RLock()
	defer k.mu.RUnlock()
	return k.aeads[school] != nil
}

// Destroy removes the school's data key (true if there was one). The file
// is overwritten in place and synced before it is removed, so the key is
// not left in a freed block on a filesystem that writes in place.
func (k *DataKeys) Destroy(school string) (bool, error) {
	if !ValidSchoolID(school) {
		return false, fmt.Errorf("%w: %q", ErrBadSchool, school)
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	_, had := k.aeads[school]
	p := k.path(school)
	if f, err := os.OpenFile(p, os.O_WRONLY, 0); err == nil {
		had = true
		_, werr := f.Write(make([]byte, dataKeyLen))
		serr := f.Sync()
		f.Close()
		if err := errors.Join(werr, serr); err != nil {
			return had, fmt.Errorf("store: overwrite the data key of school %s: %w", school, err)
		}
		if err := os.Remove(p); err != nil {
			return had, fmt.Errorf("store: remove the data key of school %s: %w", school, err)
		}
		if d, err := os.Open(k.dir); err == nil {
			d.Sync()
			d.Close()
		}
	} else if !errors.Is(err, os.ErrNotExist) {
		return had, fmt.Errorf("store: the data key of school %s: %w", school, err)
	}
	delete(k.aeads, school)
	return had, nil
}

// sealFor seals plain, to be stored under key, for the school of device
// (plain as it is for the default school, or without DataKeys).
func (s *Store) sealFor(device string, key, plain []byte) ([]byte, error) {
	if s.opts.DataKeys == nil {
		return plain, nil
	}
	school, ok := s.DeviceSchool(device)
	return s.sealIn(school, ok, key, plain)
}

// sealIn is sealFor for a device whose school was looked up (known: the
// device is in the cache; unknown ones are not sealed).
func (s *Store) sealIn(school string, known bool, key, plain []byte) ([]byte, error) {
	if s.opts.DataKeys == nil || !known || school == DefaultSchool {
		return plain, nil
	}
	a, err := s.opts.DataKeys.aead(school, true)
	if err != nil {
		return nil, err
	}
	out := make([]byte, 0, 3+len(school)+a.NonceSize()+len(plain)+a.Overhead())
	out = append(out, sealMagic0, sealMagic1, byte(len(school)))
	out = append(out, school...)
	nonce := make([]byte, a.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return nil, fmt.Errorf("store: seal: %w", err)
	}
	out = append(out, nonce...)
	return a.Seal(out, nonce, plain, key), nil
}

// unseal returns the plain value of a record stored under key.
func (s *Store) unseal(key, v []byte) ([]byte, error) {
	if len(v) < 3 || v[0] != sealMagic0 || v[1] != sealMagic1 {
		return v, nil
	}
	n := int(v[2])
	if len(v) < 3+n {
		return nil, errors.New("store: a sealed record cut short")
	}
	school := string(v[3 : 3+n])
	if s.opts.DataKeys == nil {
		return nil, fmt.Errorf("%w (school %s; the store was opened without its school keys)", ErrDataKeyDestroyed, school)
	}
	a, err := s.opts.DataKeys.aead(school, false)
	if err != nil {
		return nil, err
	}
	rest := v[3+n:]
	if len(rest) < a.NonceSize() {
		return nil, errors.New("store: a sealed record cut short")
	}
	plain, err := a.Open(nil, rest[:a.NonceSize()], rest[a.NonceSize():], key)
	if err != nil {
		return nil, fmt.Errorf("store: open a record of school %s: %w", school, err)
	}
	return plain, nil
}

// SealedSchool names the school a stored value is sealed to ("" if it is
// not sealed); for tests and the store's own checks.
func SealedSchool(v []byte) string {
	if len(v) < 3 || v[0] != sealMagic0 || v[1] != sealMagic1 || len(v) < 3+int(v[2]) {
		return ""
	}
	return string(v[3 : 3+int(v[2])])
}

// decodeFinding decodes a finding value stored under key.
func (s *Store) decodeFinding(key, v []byte, f *vigilv1.Finding) error {
	plain, err := s.unseal(key, v)
	if err != nil {
		return err
	}
	if err := proto.Unmarshal(plain, f); err != nil {
		return fmt.Errorf("decode stored finding: %w", err)
	}
	return nil
}

// decodeState decodes an alert's triage record stored under key.
func (s *Store) decodeState(key, v []byte, st *AlertState) error {
	plain, err := s.unseal(key, v)
	if err != nil {
		return err
	}
	if err := json.Unmarshal(plain, st); err != nil {
		return fmt.Errorf("decode alert state: %w", err)
	}
	return nil
}
