// Package pki owns the collector's certificate authority: created on first
// start in the data dir, it signs the server certificate and every enrolled
// device's client certificate.
package pki

import (
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"errors"
	"fmt"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"strings"
	"time"

	"github.com/vigil-safeguarding/vigil/internal/fsutil"
	"github.com/vigil-safeguarding/vigil/internal/identity"
)

// DeviceCertValidity is long because school devices may stay offline for a
// whole holiday; revocation is by device state on the collector, which is
// checked on every connection.
const DeviceCertValidity = 5 * 365 * 24 * time.Hour

// Authority is a loaded CA plus the server's key pair.
type Authority struct {
	CACert     *x509.Certificate
	caKey      crypto.Signer
	ServerCert tls.Certificate
}

// Files in the data dir, all owner-only.
const (
	caCertFile     = "ca.pem"
	caKeyFile      = "ca.key"
	serverCertFile = "server.pem"
	serverKeyFile  = "server.key"
)

// LoadOrCreate loads the CA from dir, creating it and a server certificate
// for hosts (names or IPs, plus localhost and loopback) on first start.
func LoadOrCreate(dir string, hosts []string) (*Authority, error) {
	if _, err := os.Stat(filepath.Join(dir, caKeyFile)); errors.Is(err, os.ErrNotExist) {
		if err := create(dir, hosts); err != nil {
			return nil, fmt.Errorf("create certificate authority in %s: %w", dir, err)
		}
	}
	caCert, caKey, err := loadPair(filepath.Join(dir, caCertFile), filepath.Join(dir, caKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load CA: %w", err)
	}
	srv, err := tls.LoadX509KeyPair(filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	// Send the CA after the leaf: agents pin the CA by fingerprint and have
	// nothing else to verify the chain with.
	srv.Certificate = append(srv.Certificate, caCert.Raw)
	return &Authority{CACert: caCert, caKey: caKey, ServerCert: srv}, nil
}

// LoadServing loads the CA certificate and the server certificate from dir,
// without the CA key: what a stream front-end needs to terminate agents'
// mTLS. Its Authority cannot sign (SignDevice fails), so a front-end's
// compromise mints no device certificates. dir needs ca.pem, server.pem
// and server.key copied from the store-owning collector.
func LoadServing(dir string) (*Authority, error) {
	b, err := os.ReadFile(filepath.Join(dir, caCertFile))
	if err != nil {
		return nil, fmt.Errorf("load CA certificate: %w", err)
	}
	blk, _ := pem.Decode(b)
	if blk == nil {
		return nil, fmt.Errorf("%s holds no PEM block", filepath.Join(dir, caCertFile))
	}
	caCert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		return nil, fmt.Errorf("parse CA certificate: %w", err)
	}
	srv, err := tls.LoadX509KeyPair(filepath.Join(dir, serverCertFile), filepath.Join(dir, serverKeyFile))
	if err != nil {
		return nil, fmt.Errorf("load server certificate: %w", err)
	}
	srv.Certificate = append(srv.Certificate, caCert.Raw)
	return &Authority{CACert: caCert, ServerCert: srv}, nil
}

// Fingerprint of the CA, carried in every enrollment token.
func (a *Authority) Fingerprint() string { return identity.Fingerprint(a.CACert.Raw) }

// Pool returns a pool holding just the CA.
func (a *Authority) Pool() *x509.CertPool {
	p := x509.NewCertPool()
	p.AddCert(a.CACert)
	return p
}

// CheckCSR parses a device's certificate request, checks its signature and
// derives the device ID from its key. Any subject it asks for is ignored.
func CheckCSR(csrDER []byte) (deviceID string, csr *x509.CertificateRequest, err error) {
	csr, err = x509.ParseCertificateRequest(csrDER)
	if err != nil {
		return "", nil, fmt.Errorf("parse certificate request: %w", err)
	}
	if err := csr.CheckSignature(); err != nil {
		return "", nil, fmt.Errorf("certificate request signature: %w", err)
	}
	deviceID, err = identity.DeviceID(csr.PublicKey)
	if err != nil {
		return "", nil, err
	}
	return deviceID, csr, nil
}

// SignDevice issues the client certificate for a request CheckCSR accepted.
func (a *Authority) SignDevice(deviceID string, csr *x509.CertificateRequest, group string) (certDER []byte, err error) {
	if a.caKey == nil {
		return nil, errors.New("this collector holds no CA key (a stream front-end): devices enroll at the store-owning collector")
	}
	serial, err := randSerial()
	if err != nil {
		return nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: deviceID, OrganizationalUnit: []string{group}, Organization: []string{"Vigil device"}},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(DeviceCertValidity),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth},
	}
	certDER, err = x509.CreateCertificate(rand.Reader, tmpl, a.CACert, csr.PublicKey, a.caKey)
	if err != nil {
		return nil, fmt.Errorf("sign device certificate: %w", err)
	}
	return certDER, nil
}

func create(dir string, hosts []string) error {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	caCert, caKey, err := newCA("Vigil collector CA")
	if err != nil {
		return err
	}
	caDER := caCert.Raw
	now := time.Now()

	srvKey, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return err
	}
	serial, err := randSerial()
	if err != nil {
		return err
	}
	srvTmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Vigil collector"},
		NotBefore:    now.Add(-time.Hour),
		NotAfter:     now.Add(10 * 365 * 24 * time.Hour),
		KeyUsage:     x509.KeyUsageDigitalSignature,
		ExtKeyUsage:  []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:     []string{"localhost"},
		IPAddresses:  []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
	}
	if h, err := os.Hostname(); err == nil {
		srvTmpl.DNSNames = append(srvTmpl.DNSNames, h)
	}
	for _, h := range hosts {
		if ip := net.ParseIP(h); ip != nil {
			srvTmpl.IPAddresses = append(srvTmpl.IPAddresses, ip)
		} else if h != "" {
			srvTmpl.DNSNames = append(srvTmpl.DNSNames, h)
		}
	}
	srvDER, err := x509.CreateCertificate(rand.Reader, srvTmpl, caCert, &srvKey.PublicKey, caKey)
	if err != nil {
		return err
	}
	// Keys first, so a crash in between leaves no CA cert without its key
	// (LoadOrCreate keys off the CA key file).
	if err := writeKey(filepath.Join(dir, serverKeyFile), srvKey); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, serverCertFile), "CERTIFICATE", srvDER); err != nil {
		return err
	}
	if err := writePEM(filepath.Join(dir, caCertFile), "CERTIFICATE", caDER); err != nil {
		return err
	}
	return writeKey(filepath.Join(dir, caKeyFile), caKey)
}

// newCA makes a self-signed P-256 CA named cn, valid for 20 years, that
// signs end certificates only (no intermediates).
func newCA(cn string) (*x509.Certificate, *ecdsa.PrivateKey, error) {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return nil, nil, err
	}
	serial, err := randSerial()
	if err != nil {
		return nil, nil, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber:          serial,
		Subject:               pkix.Name{CommonName: cn, Organization: []string{"Vigil"}},
		NotBefore:             now.Add(-time.Hour),
		NotAfter:              now.Add(20 * 365 * 24 * time.Hour),
		KeyUsage:              x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
		BasicConstraintsValid: true,
		IsCA:                  true,
		MaxPathLenZero:        true,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		return nil, nil, fmt.Errorf("create CA %s: %w", cn, err)
	}
	cert, err := x509.ParseCertificate(der)
	if err != nil {
		return nil, nil, err
	}
	return cert, key, nil
}

func randSerial() (*big.Int, error) {
	return rand.Int(rand.Reader, new(big.Int).Lsh(big.NewInt(1), 127))
}

func writeKey(path string, k *ecdsa.PrivateKey) error {
	der, err := x509.MarshalPKCS8PrivateKey(k)
	if err != nil {
		return err
	}
	return writePEM(path, "PRIVATE KEY", der)
}

// writePEM writes one PEM block to path, owner-only, fsynced.
func writePEM(path, typ string, der []byte) error {
	return fsutil.WriteFileAtomic(path, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600)
}

func loadPair(certPath, keyPath string) (*x509.Certificate, crypto.Signer, error) {
	certPEM, err := os.ReadFile(certPath)
	if err != nil {
		return nil, nil, err
	}
	keyPEM, err := os.ReadFile(keyPath)
	if err != nil {
		return nil, nil, err
	}
	cb, _ := pem.Decode(certPEM)
	kb, _ := pem.Decode(keyPEM)
	if cb == nil || kb == nil {
		return nil, nil, fmt.Errorf("%s or %s holds no PEM block", certPath, keyPath)
	}
	cert, err := x509.ParseCertificate(cb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	key, err := x509.ParsePKCS8PrivateKey(kb.Bytes)
	if err != nil {
		return nil, nil, err
	}
	signer, ok := key.(crypto.Signer)
	if !ok {
		return nil, nil, fmt.Errorf("%s: not a signing key", keyPath)
	}
	// A key restored from another backup than its certificate would sign
	// device certificates no agent or collector accepts: refuse it here.
	if pub, ok := cert.PublicKey.(interface{ Equal(crypto.PublicKey) bool }); !ok || !pub.Equal(signer.Public()) {
		return nil, nil, fmt.Errorf("%s is not the key of the certificate in %s (restored from different backups?)", keyPath, certPath)
	}
	return cert, signer, nil
}

// SelfDeviceID is the collector's own device ID, derived from its CA key the
// way devices' IDs are derived from theirs, so findings the collector raises
// itself (identity conflicts, silent agents) fit the same model.
func (a *Authority) SelfDeviceID() string {
	id, _ := identity.DeviceID(a.CACert.PublicKey)
	return id
}

// Console certificate files, beside the agent-port server certificate: the
// console may listen on other names than the agent port and its
// certificate is reissued when they change, which must not touch the
// certificate agents already know.
const (
	consoleCertFile = "console.pem"
	consoleKeyFile  = "console.key"
)

// consoleRenewBefore: a console certificate this close to expiry is
// reissued at start.
const consoleRenewBefore = 30 * 24 * time.Hour

// ConsoleCertificate returns the console's HTTPS certificate, issued by this
// CA for hosts (names or IPs; localhost and loopback are always added). The
// one on disk in dir is kept while it covers every host and is not near
// expiry, so its fingerprint stays what technicians were told; otherwise a
// new one is issued and saved. issued says which happened.
func (a *Authority) ConsoleCertificate(dir string, hosts []string) (cert tls.Certificate, issued bool, err error) {
	dns, ips := splitHosts(append([]string{"localhost", "127.0.0.1", "::1"}, hosts...))
	certPath, keyPath := filepath.Join(dir, consoleCertFile), filepath.Join(dir, consoleKeyFile)
	if c, err := tls.LoadX509KeyPair(certPath, keyPath); err == nil {
		if leaf, err := x509.ParseCertificate(c.Certificate[0]); err == nil && covers(leaf, dns, ips) &&
			time.Until(leaf.NotAfter) > consoleRenewBefore && leaf.CheckSignatureFrom(a.CACert) == nil {
			c.Leaf = leaf
			c.Certificate = append(c.Certificate, a.CACert.Raw)
			return c, false, nil
		}
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return tls.Certificate{}, false, err
	}
	serial, err := randSerial()
	if err != nil {
		return tls.Certificate{}, false, err
	}
	now := time.Now()
	tmpl := &x509.Certificate{
		SerialNumber: serial,
		Subject:      pkix.Name{CommonName: "Vigil console", Organization: []string{"Vigil"}},
		NotBefore:    now.Add(-time.Hour),
		// Browsers refuse server certificates valid for more than 398 days
		// only when they chain to a public root; a private CA's may be
		// longer, but a year keeps a stale name from lingering.
		NotAfter:    now.Add(397 * 24 * time.Hour),
		KeyUsage:    x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames:    dns,
		IPAddresses: ips,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, a.CACert, &key.PublicKey, a.caKey)
	if err != nil {
		return tls.Certificate{}, false, fmt.Errorf("issue console certificate: %w", err)
	}
	if err := writeKey(keyPath, key); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("write console key: %w", err)
	}
	if err := writePEM(certPath, "CERTIFICATE", der); err != nil {
		return tls.Certificate{}, false, fmt.Errorf("write console certificate: %w", err)
	}
	leaf, _ := x509.ParseCertificate(der)
	return tls.Certificate{Certificate: [][]byte{der, a.CACert.Raw}, PrivateKey: key, Leaf: leaf}, true, nil
}

// splitHosts sorts hosts into DNS names and IPs, dropping duplicates and
// empty or unspecified (0.0.0.0, ::) entries.
func splitHosts(hosts []string) (dns []string, ips []net.IP) {
	seen := map[string]bool{}
	for _, h := range hosts {
		h = strings.TrimSpace(strings.Trim(h, "[]"))
		if h == "" {
			continue
		}
		if ip := net.ParseIP(h); ip != nil {
			if ip.IsUnspecified() || seen[ip.String()] {
				continue
			}
			seen[ip.String()] = true
			ips = append(ips, ip)
			continue
		}
		h = strings.ToLower(h)
		if !seen[h] {
			seen[h] = true
			dns = append(dns, h)
		}
	}
	return dns, ips
}

// covers reports whether cert is valid for every name and IP.
func covers(cert *x509.Certificate, dns []string, ips []net.IP) bool {
	for _, d := range dns {
		if cert.VerifyHostname(d) != nil {
			return false
		}
	}
	for _, ip := range ips {
		if cert.VerifyHostname(ip.String()) != nil {
			return false
		}
	}
	return true
}

// CertFingerprint is the SHA-256 of a certificate in the form browsers show
// it (upper-case hex pairs joined by colons), for a technician to compare.
func CertFingerprint(der []byte) string {
	sum := sha256.Sum256(der)
	var b strings.Builder
	for i, x := range sum {
		if i > 0 {
			b.WriteByte(':')
		}
		fmt.Fprintf(&b, "%02X", x)
	}
	return b.String()
}
