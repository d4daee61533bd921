// Package enroll performs the agent's one-time enrollment: make a key pair,
// present the token over TLS pinned to the CA fingerprint the token carries,
// and keep the signed certificate in the state dir.
package enroll

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/status"

	"github.com/vigil-safeguarding/vigil/agent/hostinfo"
	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	"github.com/vigil-safeguarding/vigil/internal/version"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// ErrUnreachable means no collector answered at the address (down, wrong
// network, DNS not up yet), as opposed to one that refused the token.
var ErrUnreachable = errors.New("collector unreachable")

// Result of a successful enrollment.
type Result struct {
	DeviceID string
	Group    string
}

// Enroll enrolls the device in dir with the collector at addr.
func Enroll(ctx context.Context, dir state.Dir, addr, token string) (Result, error) {
	return EnrollPinned(ctx, dir, addr, token, nil)
}

// EnrollPinned is Enroll, and when releaseKey is set (a package's) the
// collector's release key must be that one.
func EnrollPinned(ctx context.Context, dir state.Dir, addr, token string, releaseKey []byte) (Result, error) {
	tok, err := identity.ParseToken(token)
	if err != nil {
		return Result{}, err
	}
	if err := dir.Ensure(); err != nil {
		return Result{}, err
	}
	// A new key for every enrollment: re-enrolling a cloned image must give
	// it an identity of its own.
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return Result{}, fmt.Errorf("generate device key: %w", err)
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "vigil-agent"}}, key)
	if err != nil {
		return Result{}, fmt.Errorf("create certificate request: %w", err)
	}
	// A collector whose CA is not the pinned one fails the handshake, which
	// gRPC reports as Unavailable like a collector that is down; the pin's
	// own error is kept so it is reported as what it is (wrong collector or
	// token), not as "not reachable yet".
	pinned := identity.PinnedVerifier(tok.CAFingerprint)
	var pinErr atomic.Pointer[error]
	creds := credentials.NewTLS(&tls.Config{
		MinVersion:         tls.VersionTLS13,
		InsecureSkipVerify: true, // verified by the pin
		VerifyPeerCertificate: func(raw [][]byte, chains [][]*x509.Certificate) error {
			err := pinned(raw, chains)
			if err != nil {
				pinErr.Store(&err)
			}
			return err
		},
	})
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(creds))
	if err != nil {
		return Result{}, fmt.Errorf("connect to collector %s: %w", addr, err)
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, 30*time.Second)
	defer cancel()
	hostname, _ := os.Hostname()
	resp, err := vigilv1.NewEnrollmentClient(conn).Enroll(ctx, &vigilv1.EnrollRequest{
		Token: token, CsrDer: csr, Hostname: hostname, Os: runtime.GOOS, Arch: runtime.GOARCH,
		HostFingerprint: hostinfo.Fingerprint(), AgentVersion: version.Version,
	})
	if err != nil {
		if perr := pinErr.Load(); perr != nil {
			return Result{}, fmt.Errorf("collector at %s is not the one the token was issued by: %w", addr, *perr)
		}
		if st, ok := status.FromError(err); ok {
			// gRPC reports a collector it cannot reach as a status too; that
			// is not a refusal, and callers retry it quietly.
			if c := st.Code(); c == codes.Unavailable || c == codes.DeadlineExceeded {
				return Result{}, fmt.Errorf("%w: %s: %s", ErrUnreachable, addr, st.Message())
			}
			return Result{}, fmt.Errorf("collector refused enrollment: %s", st.Message())
		}
		return Result{}, fmt.Errorf("enroll with %s: %w", addr, err)
	}
	if identity.Fingerprint(resp.CaCertDer) != tok.CAFingerprint {
		return Result{}, errors.New("collector returned a CA that does not match the token's fingerprint")
	}
	if want, _ := identity.DeviceID(&key.PublicKey); want != resp.DeviceId {
		return Result{}, fmt.Errorf("collector assigned device ID %s, expected %s", resp.DeviceId, want)
	}
	if k := resp.ReleasePublicKey; len(k) != 0 && len(k) != ed25519.PublicKeySize {
		return Result{}, fmt.Errorf("collector sent a release key of %d bytes, want %d", len(k), ed25519.PublicKeySize)
	}
	if len(releaseKey) > 0 && !bytes.Equal(releaseKey, resp.ReleasePublicKey) {
		return Result{}, errors.New("collector's release key differs from the one in this package's enrollment configuration")
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return Result{}, err
	}
	// Key and certs first, config last: config.json is what marks the
	// state dir as enrolled.
	if err := dir.WritePEM(dir.KeyPath(), "PRIVATE KEY", keyDER); err != nil {
		return Result{}, fmt.Errorf("write device key: %w", err)
	}
	if err := dir.WritePEM(dir.CertPath(), "CERTIFICATE", resp.ClientCertDer); err != nil {
		return Result{}, fmt.Errorf("write device certificate: %w", err)
	}
	if err := dir.WritePEM(dir.CAPath(), "CERTIFICATE", resp.CaCertDer); err != nil {
		return Result{}, fmt.Errorf("write CA certificate: %w", err)
	}
	cfg, _ := dir.LoadConfig() // keep local settings across re-enrollment
	cfg.Collector, cfg.DeviceID, cfg.Group = addr, resp.DeviceId, resp.Group
	cfg.CAFingerprint, cfg.EvidenceRecipient = tok.CAFingerprint, resp.EvidenceRecipient
	// The release key arrives over the connection pinned to the token's
	// CA, so it is as trustworthy as the CA pin.
	cfg.ReleaseKey = resp.ReleasePublicKey
	if err := dir.SaveConfig(cfg); err != nil {
		return Result{}, fmt.Errorf("write agent config: %w", err)
	}
	return Result{DeviceID: resp.DeviceId, Group: resp.Group}, nil
}
