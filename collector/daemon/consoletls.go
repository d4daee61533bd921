package daemon

import (
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"path/filepath"

	"github.com/vigil-safeguarding/vigil/collector/pki"
)

// consoleTLS is the console listener's TLS configuration (nil when
// cfg.HTTPPlain): the technician's own certificate, or one issued by the
// collector's CA. Its fingerprint and the CA's are logged, for a technician
// to compare with what the browser shows before trusting it.
func consoleTLS(cfg Config, ca *pki.Authority, addr net.Addr, log *slog.Logger) (*tls.Config, error) {
	host := listenHost(cfg.HTTPListen, addr)
	if cfg.HTTPPlain {
		if ip := net.ParseIP(host); !(host == "localhost" || ip != nil && ip.IsLoopback()) {
			return nil, fmt.Errorf("--http-tls=false serves sign-in passwords and session cookies in clear: only on a loopback --http-listen (here %q); put a TLS-terminating proxy on this host in front of it, or keep TLS on", cfg.HTTPListen)
		}
		log.Warn("console: plain HTTP on loopback (--http-tls=false); browsers must reach it through a TLS proxy on this host")
		return nil, nil
	}
	var cert tls.Certificate
	switch {
	case cfg.HTTPCertFile != "" || cfg.HTTPKeyFile != "":
		if cfg.HTTPCertFile == "" || cfg.HTTPKeyFile == "" {
			return nil, errors.New("--http-cert and --http-key go together")
		}
		c, err := tls.LoadX509KeyPair(cfg.HTTPCertFile, cfg.HTTPKeyFile)
		if err != nil {
			return nil, fmt.Errorf("load console certificate --http-cert %s --http-key %s: %w", cfg.HTTPCertFile, cfg.HTTPKeyFile, err)
		}
		if c.Leaf, err = x509.ParseCertificate(c.Certificate[0]); err != nil {
			return nil, fmt.Errorf("parse console certificate %s: %w", cfg.HTTPCertFile, err)
		}
		cert = c
		log.Info("console: HTTPS with the given certificate", "cert", cfg.HTTPCertFile, "subject", c.Leaf.Subject.String(),
			"names", append(append([]string{}, c.Leaf.DNSNames...), ipStrings(c.Leaf.IPAddresses)...),
			"not_after", c.Leaf.NotAfter.UTC().Format("2006-01-02"), "sha256_fingerprint", pki.CertFingerprint(c.Certificate[0]))
	default:
		hosts := append([]string{}, cfg.ServerNames...)
		if host != "" {
			hosts = append(hosts, host)
		}
		if h, err := os.Hostname(); err == nil {
			hosts = append(hosts, h)
		}
		if ip := net.ParseIP(host); host == "" || ip != nil && ip.IsUnspecified() {
			// Listening on every address: the certificate names them all,
			// so https://<the server's LAN address> verifies.
			hosts = append(hosts, localAddrs()...)
		}
		c, issued, err := ca.ConsoleCertificate(filepath.Join(cfg.DataDir, pkiDir), hosts)
		if err != nil {
			return nil, fmt.Errorf("console certificate: %w", err)
		}
		cert = c
		msg := "console: HTTPS with the certificate the collector's CA issued"
		if issued {
			msg = "console: HTTPS with a NEWLY issued certificate from the collector's CA (names changed or first start)"
		}
		log.Info(msg, "names", append(append([]string{}, c.Leaf.DNSNames...), ipStrings(c.Leaf.IPAddresses)...),
			"not_after", c.Leaf.NotAfter.UTC().Format("2006-01-02"),
			"sha256_fingerprint", pki.CertFingerprint(c.Certificate[0]),
			"ca_sha256_fingerprint", pki.CertFingerprint(ca.CACert.Raw),
			"ca_cert", filepath.Join(cfg.DataDir, pkiDir, "ca.pem"))
	}
	return &tls.Config{MinVersion: tls.VersionTLS12, Certificates: []tls.Certificate{cert}}, nil
}

// listenHost is the host part of the listen address ("" for ":7080").
func listenHost(listen string, bound net.Addr) string {
	if h, _, err := net.SplitHostPort(listen); err == nil {
		return h
	}
	if h, _, err := net.SplitHostPort(bound.String()); err == nil {
		return h
	}
	return ""
}

func localAddrs() []string {
	addrs, err := net.InterfaceAddrs()
	if err != nil {
		return nil
	}
	var out []string
	for _, a := range addrs {
		if n, ok := a.(*net.IPNet); ok && !n.IP.IsLinkLocalUnicast() {
			out = append(out, n.IP.String())
		}
	}
	return out
}

func ipStrings(ips []net.IP) []string {
	out := make([]string, len(ips))
	for i, ip := range ips {
		out[i] = ip.String()
	}
	return out
}
