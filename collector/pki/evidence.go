package pki

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/internal/fsutil"
)

const evidenceKeyFile = "evidence.key"

// LoadOrCreateEvidenceKey returns the collector's evidence identity (age
// X25519), created owner-only on first start. Agents encrypt screenshots to
// its recipient on the device, so only this collector can read them.
func LoadOrCreateEvidenceKey(dir string) (*age.X25519Identity, error) {
	path := filepath.Join(dir, evidenceKeyFile)
	b, err := os.ReadFile(path)
	if errors.Is(err, os.ErrNotExist) {
		id, err := age.GenerateX25519Identity()
		if err != nil {
			return nil, fmt.Errorf("generate evidence key: %w", err)
		}
		if err := os.MkdirAll(dir, 0o700); err != nil {
			return nil, err
		}
		if err := fsutil.WriteFileAtomic(path, []byte(id.String()+"\n"), 0o600); err != nil {
			return nil, fmt.Errorf("write evidence key: %w", err)
		}
		return id, nil
	}
	if err != nil {
		return nil, fmt.Errorf("read evidence key: %w", err)
	}
	id, err := age.ParseX25519Identity(strings.TrimSpace(string(b)))
	if err != nil {
		return nil, fmt.Errorf("parse evidence key %s: %w", path, err)
	}
	return id, nil
}
