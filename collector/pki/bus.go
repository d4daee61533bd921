package pki

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"time"
)

// The bus (NATS JetStream between front-ends, nodes and the storer) has a
// CA of its own, apart from the collector CA that signs devices: every
// enrolled device holds a certificate of the collector CA, and none of
// them may join the bus. A node or front-end presents a certificate of
// the bus CA both as a server (its client listener, its route listener)
// and as a client (its routes out, its connection to the nodes).
const (
	busCACertFile = "bus-ca.pem"
	busCAKeyFile  = "bus-ca.key"

	// Files of a bus member's folder (IssueBusMember, bus.LoadTLS).
	BusCAFile   = "ca.pem"
	BusCertFile = "cert.pem"
	BusKeyFile  = "key.pem"
)

// busCA loads the bus CA under dir, created on first use.
func busCA(dir string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	certPath, keyPath := filepath.Join(dir, busCACertFile), filepath.Join(dir, busCAKeyFile)
	if _, err := os.Stat(keyPath); err == nil {
		cert, signer, err := loadPair(certPath, keyPath)
		if err != nil {
			return nil, nil, fmt.Errorf("bus CA: %w", err)
		}
		key, ok := signer.(*ecdsa.PrivateKey)
		if !ok {
			return nil, nil, errors.New("bus CA: not an ECDSA key")
		}
		return cert, key, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, nil, fmt.Errorf("bus CA: %w", err)
	}
	cert, key, err := newCA("Vigil bus CA")
	if err != nil {
		return nil, nil, fmt.Errorf("bus CA: %w", err)
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, nil, err
	}
	// The key last: busCA keys off the key file, so a crash in between
	// leaves a certificate that is simply made again.
	if err := writePEM(certPath, "CERTIFICATE", cert.Raw); err != nil {
		return nil, nil, err
	}
	if err := writeKey(keyPath, key); err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

// IssueBusMember writes into outDir (created owner-only) what one member
// of the bus needs: the bus CA's certificate, and a certificate and key of
// its own for name, valid for hosts (names or IPs its peers dial it by;
// localhost and the loopback addresses are always included) for two years.
// pkiDir is the store-owning collector's pki folder, where the bus CA is
// created the first time.
func IssueBusMember(pkiDir, name string, hosts []string, outDir string) error {
	if name == "" {
		return errors.New("bus member: a name is required")
	}
	caCert, caKey, err := busCA(pkiDir)
	if err != nil {
		return err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := randSerial()
	if err != nil {
		return err
	}
	dns, ips := splitHosts(append([]string{"localhost", "127.0.0.1", "::1"}, hosts...))
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: name, Organization: []string{"Vigil bus"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(2 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		// Both: a node serves clients and routes, and dials routes out.
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth, x509.ExtKeyUsageClientAuth},
		DNSNames:    dns,
		IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		return fmt.Errorf("bus member %s: %w", name, err)
	}
	if err := os.MkdirAll(outDir, 0o700); err != nil {
		return err
	}
	if err := writeKey(filepath.Join(outDir, BusKeyFile), key); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(outDir, BusCertFile), "CERTIFICATE", der); err != nil {
		return err
	}
	return writePEM(filepath.Join(outDir, BusCAFile), "CERTIFICATE", caCert.Raw)
}
