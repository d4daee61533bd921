package spool

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// Record payloads are sealed with AES-256-GCM under a device key kept in a
// root-only file beside the spool. Window titles, matched terms and user
// names are then unreadable in a copied disk image or to a user without
// root; root on the running device can read the key, which is the limit of
// a key held by the OS (see docs/storage.md).
//
// Stored value: severity(1) | nonce(12) | ciphertext+tag. The severity stays
// clear because eviction reads it without decrypting; it is bound to the
// ciphertext through the associated data seq(8)|severity(1), so neither a
// record moved to another seq nor a changed severity decrypts.

const (
	// KeySize is the length of the spool key file (AES-256).
	KeySize = 32

	nonceSize    = 12
	tagSize      = 16
	sealOverhead = nonceSize + tagSize

	// cipherName marks a file whose records are all sealed (meta bucket).
	cipherName = "aes-256-gcm/1"
)

var keyCipher = []byte("cipher")

// ErrBadKey means the key file exists but is not a spool key. Open treats it
// like damage: the key is moved aside, a new one made, and the spool, which
// the new key cannot read, is quarantined and reported.
var ErrBadKey = errors.New("spool key file is not a 32-byte key")

// errUnsealed means a record failed authentication: damaged bytes or the
// wrong key.
var errUnsealed = errors.New("record does not authenticate (damaged, or sealed under another key)")

type sealer struct{ aead cipher.AEAD }

func newSealer(key []byte) (*sealer, error) {
	blk, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	g, err := cipher.NewGCM(blk)
	if err != nil {
		return nil, err
	}
	return &sealer{aead: g}, nil
}

func recordAD(seq uint64, sev uint8) []byte {
	ad := make([]byte, 9)
	binary.BigEndian.PutUint64(ad, seq)
	ad[8] = sev
	return ad
}

// seal returns the stored value for payload at seq.
func (c *sealer) seal(seq uint64, sev uint8, payload []byte) []byte {
	v := make([]byte, 1+nonceSize, 1+sealOverhead+len(payload))
	v[0] = sev
	// crypto/rand.Read never fails (Go 1.24+): it aborts the process
	// rather than hand out a reusable nonce.
	_, _ = rand.Read(v[1 : 1+nonceSize])
	return c.aead.Seal(v, v[1:1+nonceSize], payload, recordAD(seq, sev))
}

// open returns the severity and payload of a stored value.
func (c *sealer) open(seq uint64, v []byte) (uint8, []byte, error) {
	if len(v) < 1+sealOverhead {
		return 0, nil, fmt.Errorf("record %d: %d bytes, shorter than a sealed record", seq, len(v))
	}
	p, err := c.aead.Open(nil, v[1:1+nonceSize], v[1+nonceSize:], recordAD(seq, v[0]))
	if err != nil {
		return 0, nil, fmt.Errorf("record %d: %w", seq, errUnsealed)
	}
	return v[0], p, nil
}

// storedPayloadLen is the plaintext payload length of a sealed stored value,
// which is what the byte bound charges.
func storedPayloadLen(v []byte) int {
	if n := len(v) - 1 - sealOverhead; n > 0 {
		return n
	}
	return 0
}

// loadKey reads the key file, creating it (0600) if absent. A key file of
// the wrong size is ErrBadKey.
func loadKey(path string) ([]byte, error) {
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return createKey(path)
	}
	if err != nil {
		return nil, fmt.Errorf("read spool key %s: %w", path, err)
	}
	if len(b) != KeySize {
		return nil, fmt.Errorf("%s (%d bytes): %w", path, len(b), ErrBadKey)
	}
	if fi, err := os.Stat(path); err == nil && fi.Mode().Perm()&0o077 != 0 {
		// Tighten rather than refuse: refusing would stop monitoring.
		_ = os.Chmod(path, 0o600)
	}
	return b, nil
}

// createKey writes a new random key through a synced temp file and a link,
// so a crash leaves no half key and two racing creators agree on one.
func createKey(path string) ([]byte, error) {
	key := make([]byte, KeySize)
	if _, err := rand.Read(key); err != nil {
		return nil, fmt.Errorf("generate spool key: %w", err)
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), ".spool-key-*")
	if err != nil {
		return nil, fmt.Errorf("create spool key: %w", err)
	}
	defer os.Remove(tmp.Name())
	if err := tmp.Chmod(0o600); err == nil {
		if _, err = tmp.Write(key); err == nil {
			err = tmp.Sync()
		}
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return nil, fmt.Errorf("write spool key %s: %w", path, err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return loadKey(path)
		}
		return nil, fmt.Errorf("install spool key %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		_ = d.Sync()
		_ = d.Close()
	}
	return key, nil
}

// quarantineName is where a damaged file is moved for support.
func quarantineName(path string, now time.Time) string {
	base := path + ".damaged-" + now.UTC().Format("20060102T150405Z")
	name := base
	for i := 1; ; i++ {
		if _, err := os.Lstat(name); errors.Is(err, fs.ErrNotExist) {
			return name
		}
		name = fmt.Sprintf("%s-%d", base, i)
	}
}
