package bus

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"path/filepath"

	"github.com/vigil-safeguarding/vigil/collector/pki"
)

// TLS is a bus member's mutual TLS: every NATS connection of the member
// (clients to its listener, routes in and out, its own connection to the
// nodes) presents a certificate of the bus CA and accepts only peers that
// present one too (pki.IssueBusMember). With it, listeners and routes may
// be on other machines; without it they stay on loopback.
type TLS struct {
	cert tls.Certificate
	pool *x509.CertPool
}

// LoadTLS reads a bus member's folder: ca.pem, cert.pem, key.pem
// (`vigil-collector nats-cert`).
func LoadTLS(dir string) (*TLS, error) {
	caPEM, err := os.ReadFile(filepath.Join(dir, pki.BusCAFile))
	if err != nil {
		return nil, fmt.Errorf("bus TLS: %w", err)
	}
	pool := x509.NewCertPool()
	if !pool.AppendCertsFromPEM(caPEM) {
		return nil, fmt.Errorf("bus TLS: %s holds no certificate", filepath.Join(dir, pki.BusCAFile))
	}
	cert, err := tls.LoadX509KeyPair(filepath.Join(dir, pki.BusCertFile), filepath.Join(dir, pki.BusKeyFile))
	if err != nil {
		return nil, fmt.Errorf("bus TLS: %s: %w", dir, err)
	}
	leaf, err := x509.ParseCertificate(cert.Certificate[0])
	if err != nil {
		return nil, fmt.Errorf("bus TLS: %w", err)
	}
	// A member's certificate from another bus CA would be refused by every
	// peer; say so here rather than as a handshake failure on each route.
	if _, err := leaf.Verify(x509.VerifyOptions{Roots: pool, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth, x509.ExtKeyUsageServerAuth}}); err != nil {
		return nil, fmt.Errorf("bus TLS: %s is not signed by %s: %w", pki.BusCertFile, pki.BusCAFile, err)
	}
	return &TLS{cert: cert, pool: pool}, nil
}

// server is for the client and route listeners: a peer without a bus
// certificate is refused in the handshake.
func (t *TLS) server() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{t.cert},
		ClientCAs: t.pool, ClientAuth: tls.RequireAndVerifyClientCert}
}

// cluster serves route listeners and dials routes out (NATS uses one
// config for both sides of a route).
func (t *TLS) cluster() *tls.Config {
	c := t.server()
	c.RootCAs = t.pool
	return c
}

// client is a member's own connection to the nodes.
func (t *TLS) client() *tls.Config {
	return &tls.Config{MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{t.cert}, RootCAs: t.pool}
}

var errNoTLS = errors.New("routes and client listeners without bus TLS are unauthenticated, so they stay on this machine (give --nats-tls / --tls a folder from `vigil-collector nats-cert`)")
