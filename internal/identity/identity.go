// Package identity holds what agent and collector must agree on about
// identities: how a device ID is derived from a key, how the CA is
// fingerprinted, and the enrollment token's wire form.
package identity

import (
	"crypto"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base32"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
)

// DeviceID derives the device's ID from its public key, so an identity
// cannot be claimed without the private key: lowercase base32 of the first
// 16 bytes of SHA-256 over the SubjectPublicKeyInfo.
func DeviceID(pub crypto.PublicKey) (string, error) {
	der, err := x509.MarshalPKIXPublicKey(pub)
	if err != nil {
		return "", fmt.Errorf("device id: marshal public key: %w", err)
	}
	sum := sha256.Sum256(der)
	return strings.ToLower(base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(sum[:16])), nil
}

// DeviceIDLen is the length of every DeviceID string; store keys rely on it.
const DeviceIDLen = 26

// ValidDeviceID reports whether s has the shape DeviceID produces.
func ValidDeviceID(s string) bool {
	if len(s) != DeviceIDLen {
		return false
	}
	for _, c := range s {
		if !(c >= 'a' && c <= 'z' || c >= '2' && c <= '7') {
			return false
		}
	}
	return true
}

// Fingerprint is the SHA-256 of a certificate's DER, hex encoded.
func Fingerprint(certDER []byte) string {
	sum := sha256.Sum256(certDER)
	return hex.EncodeToString(sum[:])
}

// Token is an enrollment token as handed to technicians. The collector keeps
// only a hash of Secret; CAFingerprint lets the agent pin the collector's CA
// with nothing else distributed.
type Token struct {
	ID            string // 16 hex chars, the store key
	Secret        []byte // 24 random bytes
	CAFingerprint string // hex SHA-256 of the CA certificate
}

const tokenPrefix = "vgl1"

var errTokenFormat = errors.New("enrollment token is malformed (expected vgl1.<id>.<secret>.<ca-fingerprint>, as printed by `vigil-collector token create`)")

// String renders the token: vgl1.<id>.<secret b64url>.<fingerprint b64url>.
func (t Token) String() string {
	fp, _ := hex.DecodeString(t.CAFingerprint)
	return strings.Join([]string{tokenPrefix, t.ID,
		base64.RawURLEncoding.EncodeToString(t.Secret),
		base64.RawURLEncoding.EncodeToString(fp)}, ".")
}

// ParseToken parses what Token.String produced.
func ParseToken(s string) (Token, error) {
	parts := strings.Split(strings.TrimSpace(s), ".")
	if len(parts) != 4 || parts[0] != tokenPrefix || len(parts[1]) != 16 {
		return Token{}, errTokenFormat
	}
	if _, err := hex.DecodeString(parts[1]); err != nil {
		return Token{}, errTokenFormat
	}
	secret, err := base64.RawURLEncoding.DecodeString(parts[2])
	if err != nil || len(secret) < 16 {
		return Token{}, errTokenFormat
	}
	fp, err := base64.RawURLEncoding.DecodeString(parts[3])
	if err != nil || len(fp) != sha256.Size {
		return Token{}, errTokenFormat
	}
	return Token{ID: parts[1], Secret: secret, CAFingerprint: hex.EncodeToString(fp)}, nil
}

// SecretHash is what the collector stores in place of the secret.
func SecretHash(secret []byte) string {
	sum := sha256.Sum256(secret)
	return hex.EncodeToString(sum[:])
}

// PinnedVerifier returns a tls.Config.VerifyPeerCertificate that accepts a
// server chain only when it contains the CA with the pinned fingerprint and
// the leaf verifies against that CA. Host names are not checked: the CA is
// private to one collector, and technicians reach it by whatever name or
// address the school network gives.
func PinnedVerifier(caFingerprint string) func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
	return func(rawCerts [][]byte, _ [][]*x509.Certificate) error {
		if len(rawCerts) == 0 {
			return errors.New("collector sent no certificate")
		}
		var ca *x509.Certificate
		for _, raw := range rawCerts[1:] {
			if Fingerprint(raw) == caFingerprint {
				c, err := x509.ParseCertificate(raw)
				if err != nil {
					return fmt.Errorf("parse pinned CA: %w", err)
				}
				ca = c
			}
		}
		if ca == nil {
			return fmt.Errorf("collector's CA does not match the pinned fingerprint %s…: wrong collector or token", caFingerprint[:16])
		}
		leaf, err := x509.ParseCertificate(rawCerts[0])
		if err != nil {
			return fmt.Errorf("parse collector certificate: %w", err)
		}
		roots := x509.NewCertPool()
		roots.AddCert(ca)
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: roots, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			return fmt.Errorf("collector certificate not signed by the pinned CA: %w", err)
		}
		return nil
	}
}
