package daemon_test

import (
	"bufio"
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/console"
	"github.com/vigil-safeguarding/vigil/collector/daemon"
	"github.com/vigil-safeguarding/vigil/collector/pki"
)

// TestConsoleHTTPSDefaultCertificate: by default the console is HTTPS with
// a certificate the collector's CA issued, valid for the --server-names,
// localhost and loopback and for nothing else, whose fingerprint (and the
// CA's) is in the log for a technician to compare; every response carries
// HSTS.
func TestConsoleHTTPSDefaultCertificate(t *testing.T) {
	c := startCollector(t, daemon.Config{ServerNames: []string{"vigil.school.example", "10.9.8.7"}})
	base, err := c.consoleTLS()
	if err != nil {
		t.Fatal(err)
	}
	var leaf *x509.Certificate
	for _, name := range []string{"vigil.school.example", "10.9.8.7", "localhost", "127.0.0.1"} {
		cfg := base.Clone()
		cfg.ServerName = name
		conn, err := tls.DialWithDialer(&net.Dialer{Timeout: 10 * time.Second}, "tcp", c.httpAddr, cfg)
		if err != nil {
			t.Errorf("HTTPS as %s, trusting only the collector CA: %v", name, err)
			continue
		}
		leaf = conn.ConnectionState().PeerCertificates[0]
		conn.Close()
	}
	cfg := base.Clone()
	cfg.ServerName = "intruder.example"
	if conn, err := tls.Dial("tcp", c.httpAddr, cfg); err == nil {
		conn.Close()
		t.Error("the console certificate verified for a name it was not issued for")
	}
	if leaf == nil {
		t.Fatal("no TLS connection")
	}
	logs := c.logs.String()
	if fp := pki.CertFingerprint(leaf.Raw); !strings.Contains(logs, "sha256_fingerprint="+fp) {
		t.Errorf("the served certificate's fingerprint %s is not in the log:\n%s", fp, logs)
	}
	ca, _ := os.ReadFile(filepath.Join(c.dir, "pki", "ca.pem"))
	blk, _ := pem.Decode(ca)
	if fp := pki.CertFingerprint(blk.Bytes); !strings.Contains(logs, "ca_sha256_fingerprint="+fp) {
		t.Errorf("the CA fingerprint %s is not in the log", fp)
	}
	resp := c.do(t, &http.Client{Timeout: 30 * time.Second, Transport: &http.Transport{TLSClientConfig: base}}, "GET", "/healthz", "")
	if resp.StatusCode != 200 || resp.Header.Get("Strict-Transport-Security") != "max-age=31536000" {
		t.Errorf("/healthz over HTTPS: %d, HSTS %q", resp.StatusCode, resp.Header.Get("Strict-Transport-Security"))
	}
	if !strings.Contains(logs, "console_url=https://"+c.httpAddr) {
		t.Errorf("the log does not give the https URL")
	}
}

// TestConsoleCookiesOverTLS: signing in over HTTPS sets the session cookie
// Secure, HttpOnly and SameSite=Strict, and signing out clears it the same way.
func TestConsoleCookiesOverTLS(t *testing.T) {
	c := startCollector(t, daemon.Config{})
	pw, err := os.ReadFile(filepath.Join(c.dir, console.InitialPasswordFile))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := c.consoleTLS()
	if err != nil {
		t.Fatal(err)
	}
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 60 * time.Second, Transport: &http.Transport{TLSClientConfig: cfg}}
	resp := c.do(t, hc, "POST", "/api/v1/session", `{"username":"admin","password":"`+strings.TrimSpace(string(pw))+`"}`)
	if resp.StatusCode != 200 {
		t.Fatalf("sign in: %d", resp.StatusCode)
	}
	checkCookie := func(when string, resp *http.Response) {
		t.Helper()
		var sc string
		for _, h := range resp.Header.Values("Set-Cookie") {
			if strings.HasPrefix(h, console.CookieName+"=") {
				sc = h
			}
		}
		for _, want := range []string{"; Secure", "; HttpOnly", "; SameSite=Strict", "; Path=/"} {
			if !strings.Contains(sc, want) {
				t.Errorf("%s: Set-Cookie %q lacks %q", when, sc, want)
			}
		}
		if resp.Header.Get("Strict-Transport-Security") != "max-age=31536000" {
			t.Errorf("%s: no HSTS", when)
		}
	}
	checkCookie("sign in", resp)
	var me struct {
		CSRF string `json:"csrf_token"`
	}
	resp = c.do(t, hc, "GET", "/api/v1/me", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/api/v1/me with the cookie: %d", resp.StatusCode)
	}
	decodeJSON(t, resp, &me)
	req, _ := http.NewRequest("DELETE", "https://"+c.httpAddr+"/api/v1/session", nil)
	req.Header.Set("X-CSRF-Token", me.CSRF)
	resp, err = hc.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("sign out: %d", resp.StatusCode)
	}
	checkCookie("sign out", resp)
}

// TestConsolePlainHTTPRefused: plain HTTP to the console port gets a 400
// and no content, not the console.
func TestConsolePlainHTTPRefused(t *testing.T) {
	c := startCollector(t, daemon.Config{})
	conn, err := net.DialTimeout("tcp", c.httpAddr, 10*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(30 * time.Second))
	io.WriteString(conn, "GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatalf("plain HTTP to the TLS port: no HTTP answer: %v", err)
	}
	body, _ := io.ReadAll(resp.Body)
	if resp.StatusCode != http.StatusBadRequest || bytes.Contains(body, []byte("status")) {
		t.Errorf("plain HTTP to the TLS port: %d %q, want 400 without the health document", resp.StatusCode, body)
	}
	// And the HTTP client's view: no redirect, no content.
	if r, err := (&http.Client{Timeout: 30 * time.Second}).Get("http://" + c.httpAddr + "/healthz"); err == nil {
		r.Body.Close()
		if r.StatusCode != http.StatusBadRequest {
			t.Errorf("http:// client: %d", r.StatusCode)
		}
	}
}

// TestConsoleGivenCertificate: --http-cert/--http-key are served as given
// (a school's own certificate), and a mismatched pair stops the start with
// a clear error.
func TestConsoleGivenCertificate(t *testing.T) {
	dir := t.TempDir()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "vigil.school.example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true, IsCA: true, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	certPath, keyPath := filepath.Join(dir, "c.pem"), filepath.Join(dir, "k.pem")
	os.WriteFile(certPath, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: kder}), 0o600)

	c := startCollector(t, daemon.Config{HTTPCertFile: certPath, HTTPKeyFile: keyPath})
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	conn, err := tls.Dial("tcp", c.httpAddr, &tls.Config{RootCAs: pool, ServerName: "127.0.0.1"})
	if err != nil {
		t.Fatalf("HTTPS with the given certificate: %v", err)
	}
	if got := conn.ConnectionState().PeerCertificates[0]; !bytes.Equal(got.Raw, der) {
		t.Error("served a different certificate from --http-cert")
	}
	conn.Close()
	if !strings.Contains(c.logs.String(), "sha256_fingerprint="+pki.CertFingerprint(der)) {
		t.Error("the given certificate's fingerprint is not in the log")
	}

	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	oder, _ := x509.MarshalPKCS8PrivateKey(other)
	os.WriteFile(keyPath, pem.EncodeToMemory(&pem.Block{Type: "PRIVATE KEY", Bytes: oder}), 0o600)
	err = daemon.Serve(t.Context(), daemon.Config{DataDir: t.TempDir(), GRPCListen: "127.0.0.1:0", HTTPListen: "127.0.0.1:0",
		HTTPCertFile: certPath, HTTPKeyFile: keyPath, Logger: discardLog()})
	if err == nil || !strings.Contains(err.Error(), "--http-cert") {
		t.Errorf("mismatched --http-key: %v, want an error naming --http-cert", err)
	}
}

// TestConsolePlainOnlyOnLoopback: --http-tls=false is refused on a
// non-loopback address.
func TestConsolePlainOnlyOnLoopback(t *testing.T) {
	err := daemon.Serve(t.Context(), daemon.Config{DataDir: t.TempDir(), GRPCListen: "127.0.0.1:0", HTTPListen: "0.0.0.0:0",
		HTTPPlain: true, Logger: discardLog()})
	if err == nil || !strings.Contains(err.Error(), "loopback") {
		t.Errorf("plain HTTP on 0.0.0.0: %v, want refused", err)
	}
}

func (c *collector) do(t *testing.T, hc *http.Client, method, path, body string) *http.Response {
	t.Helper()
	req, err := http.NewRequest(method, "https://"+c.httpAddr+path, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	if body != "" {
		req.Header.Set("Content-Type", "application/json")
	}
	resp, err := hc.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", method, path, err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	return resp
}

func decodeJSON(t *testing.T, resp *http.Response, v any) {
	t.Helper()
	if err := json.NewDecoder(resp.Body).Decode(v); err != nil {
		t.Fatal(err)
	}
}

func discardLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }
