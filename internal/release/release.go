// Package release is the one definition of what a release signature covers,
// shared by the collector (which signs) and the agent (which verifies): an
// ed25519 signature over the binary's SHA-256, its version and its platform,
// so a signed binary cannot be replayed as another version or for another
// OS/arch.
package release

import (
	"crypto/ed25519"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// MaxBinary bounds a release binary (agents refuse larger offers; the
// collector refuses to add larger files). The agent is ~30 MiB; the margin
// allows for race-detector and debug builds without letting an offer fill a
// device's disk.
const MaxBinary = 256 << 20

// SigningMessage is the byte string the release key signs. The domain
// prefix keeps these signatures from meaning anything in another protocol.
func SigningMessage(sha256Hex, version, goos, goarch string) []byte {
	return []byte("vigil-release-v1\n" + strings.ToLower(sha256Hex) + "\n" + version + "\n" + goos + "/" + goarch + "\n")
}

// Sign signs a release with key.
func Sign(key ed25519.PrivateKey, sha256Hex, version, goos, goarch string) []byte {
	return ed25519.Sign(key, SigningMessage(sha256Hex, version, goos, goarch))
}

// ErrBadSignature means the signature does not verify under the pinned key.
var ErrBadSignature = errors.New("release signature does not verify with the pinned release key")

// Verify checks sig under pub. A missing or malformed key is an error of its
// own, so that "no key pinned" is never mistaken for "any key accepted".
func Verify(pub ed25519.PublicKey, sig []byte, sha256Hex, version, goos, goarch string) error {
	if len(pub) != ed25519.PublicKeySize {
		return fmt.Errorf("no usable release key pinned (%d bytes, want %d)", len(pub), ed25519.PublicKeySize)
	}
	if len(sig) != ed25519.SignatureSize {
		return fmt.Errorf("%w: signature of %d bytes", ErrBadSignature, len(sig))
	}
	if b, err := hex.DecodeString(sha256Hex); err != nil || len(b) != 32 {
		return fmt.Errorf("release sha256 %q is not 64 hex digits", sha256Hex)
	}
	if !ed25519.Verify(pub, SigningMessage(sha256Hex, version, goos, goarch), sig) {
		return ErrBadSignature
	}
	return nil
}

// ValidVersion says whether v may name a release: it ends up in file names
// and log lines.
func ValidVersion(v string) error {
	if v == "" || len(v) > 64 {
		return errors.New("version must be 1 to 64 characters")
	}
	for _, r := range v {
		if !(r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9' || r == '.' || r == '-' || r == '_' || r == '+') {
			return fmt.Errorf("version %q: only letters, digits and . - _ + are allowed", v)
		}
	}
	return nil
}

// ValidPlatform checks an os/arch pair names one agents are built for.
func ValidPlatform(goos, goarch string) error {
	switch goos {
	case "linux", "windows", "darwin":
	default:
		return fmt.Errorf("os %q: want linux, windows or darwin", goos)
	}
	switch goarch {
	case "amd64", "arm64":
	default:
		return fmt.Errorf("arch %q: want amd64 or arm64", goarch)
	}
	return nil
}
