// Package state owns the agent's state directory: key, certificates,
// configuration, spool and the last good rules, all owner-only.
package state

import (
	"crypto"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"encoding/pem"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	"github.com/vigil-safeguarding/vigil/internal/identity"
)

// Dir is an agent state directory.
type Dir string

// File names inside the state dir.
func (d Dir) KeyPath() string       { return filepath.Join(string(d), "device.key") }
func (d Dir) CertPath() string      { return filepath.Join(string(d), "device.pem") }
func (d Dir) CAPath() string        { return filepath.Join(string(d), "ca.pem") }
func (d Dir) ConfigPath() string    { return filepath.Join(string(d), "config.json") }
func (d Dir) SpoolPath() string     { return filepath.Join(string(d), "spool.db") }
func (d Dir) SpoolKeyPath() string  { return filepath.Join(string(d), "spool.key") }
func (d Dir) RulesDir() string      { return filepath.Join(string(d), "rules") }
func (d Dir) GoodRulesDir() string  { return filepath.Join(string(d), "rules.good") }
func (d Dir) ControlSocket() string { return filepath.Join(string(d), "control.sock") }
func (d Dir) PosturePath() string   { return filepath.Join(string(d), "posture.json") }
func (d Dir) SessionSocket() string { return filepath.Join(string(d), "session.sock") }
func (d Dir) QuarantineDir() string { return filepath.Join(string(d), "quarantine") }
func (d Dir) UpgradePath() string   { return filepath.Join(string(d), "upgrade.json") }
func (d Dir) PendingUpgradePath() string {
	return filepath.Join(string(d), "upgrade-pending.json")
}
func (d Dir) RunRecordPath() string { return filepath.Join(string(d), "run.json") }

// Config is what enrollment leaves behind for `run`.
type Config struct {
	Collector string `json:"collector"`
	// Collectors, when set, are the stream addresses (a trust's stateless
	// front-ends, docs/scale.md) used instead of Collector, which stays
	// the address enrolment was done at: the agent holds its stream to one
	// of them, picked at random, and moves to another when it is lost.
	Collectors        []string `json:"collectors,omitempty"`
	DeviceID          string   `json:"device_id"`
	Group             string   `json:"group"`
	CAFingerprint     string   `json:"ca_fingerprint"`
	EvidenceRecipient string   `json:"evidence_recipient,omitempty"`
	// SpoolMaxBytes bounds the on-disk spool; 0 takes the default.
	SpoolMaxBytes int64 `json:"spool_max_bytes,omitempty"`
	// Role of the device's users for rule scoping (pupil, staff, ...).
	Role string `json:"role,omitempty"`
	// ReleaseKey is the collector's ed25519 release public key, pinned at
	// enrollment: only binaries signed by it are installed as upgrades.
	ReleaseKey []byte `json:"release_key,omitempty"`
}

// StreamAddrs are the addresses the agent may hold its stream to.
func (c Config) StreamAddrs() []string {
	if len(c.Collectors) > 0 {
		return c.Collectors
	}
	return []string{c.Collector}
}

// Ensure creates the directory owner-only (and tightens an existing one).
func (d Dir) Ensure() error {
	if err := os.MkdirAll(string(d), 0o700); err != nil {
		return fmt.Errorf("create state dir: %w", err)
	}
	return os.Chmod(string(d), 0o700)
}

// LoadConfig reads config.json; a missing file means not enrolled.
func (d Dir) LoadConfig() (Config, error) {
	var c Config
	b, err := os.ReadFile(d.ConfigPath())
	if errors.Is(err, os.ErrNotExist) {
		return c, fmt.Errorf("%s is not enrolled: run `vigil-agent enroll --collector ADDR --token TOKEN --state %s` first", d, d)
	}
	if err != nil {
		return c, fmt.Errorf("read agent config: %w", err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("parse %s: %w", d.ConfigPath(), err)
	}
	return c, nil
}

// SaveConfig writes config.json atomically.
func (d Dir) SaveConfig(c Config) error {
	b, _ := json.MarshalIndent(c, "", "  ")
	return fsutil.WriteFileAtomic(d.ConfigPath(), append(b, '\n'), 0o600)
}

// WritePEM writes a PEM file owner-only.
func (d Dir) WritePEM(path, typ string, der []byte) error {
	return fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

// ClientTLS builds the mTLS configuration: the device certificate, and the
// collector verified against the pinned CA.
func (d Dir) ClientTLS(c Config) (*tls.Config, error) {
	pair, err := tls.LoadX509KeyPair(d.CertPath(), d.KeyPath())
	if err != nil {
		return nil, fmt.Errorf("load device certificate: %w", err)
	}
	return &tls.Config{
		MinVersion:   tls.VersionTLS13,
		Certificates: []tls.Certificate{pair},
		// Verification is done by the pin below: the CA is private to the
		// collector and host names vary by school network.
		InsecureSkipVerify:    true,
		VerifyPeerCertificate: identity.PinnedVerifier(c.CAFingerprint),
	}, nil
}

// LoadKey reads the device's private key.
func (d Dir) LoadKey() (crypto.Signer, error) {
	b, err := os.ReadFile(d.KeyPath())
	if err != nil {
		return nil, err
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM block", d.KeyPath())
	}
	k, err := x509.ParsePKCS8PrivateKey(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse device key: %w", err)
	}
	s, ok := k.(crypto.Signer)
	if !ok {
		return nil, errors.New("device key cannot sign")
	}
	return s, nil
}
