package pki

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"filippo.io/age"

	"github.com/vigil-safeguarding/vigil/internal/identity"
)

// TestLoadOrCreate: the first start creates the CA and a server
// certificate (owner-only files) for the asked hosts plus loopback; later
// starts load the same CA, so enrolled devices' pins stay valid.
func TestLoadOrCreate(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	ca, err := LoadOrCreate(dir, []string{"vigil.school.example", "10.1.2.3"})
	if err != nil {
		t.Fatal(err)
	}
	if !ca.CACert.IsCA || ca.CACert.MaxPathLen != 0 || !ca.CACert.MaxPathLenZero {
		t.Errorf("CA constraints: IsCA=%v MaxPathLen=%d", ca.CACert.IsCA, ca.CACert.MaxPathLen)
	}
	if runtime.GOOS != "windows" {
		for _, f := range []string{caKeyFile, caCertFile, serverKeyFile, serverCertFile} {
			fi, err := os.Stat(filepath.Join(dir, f))
			if err != nil || fi.Mode().Perm() != 0o600 {
				t.Errorf("%s: mode %v, %v", f, fi.Mode().Perm(), err)
			}
		}
	}
	// The server chain carries the CA after the leaf: agents pin it.
	chain := ca.ServerCert.Certificate
	if len(chain) != 2 || !bytes.Equal(chain[1], ca.CACert.Raw) {
		t.Fatalf("server chain has %d certificates", len(chain))
	}
	leaf, err := x509.ParseCertificate(chain[0])
	if err != nil {
		t.Fatal(err)
	}
	for _, name := range []string{"vigil.school.example", "10.1.2.3", "localhost", "127.0.0.1", "::1"} {
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: ca.Pool(), DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("server certificate for %s: %v", name, err)
		}
	}
	again, err := LoadOrCreate(dir, []string{"other.example"})
	if err != nil {
		t.Fatal(err)
	}
	if again.Fingerprint() != ca.Fingerprint() || !bytes.Equal(again.ServerCert.Certificate[0], chain[0]) {
		t.Error("a restart made a new CA or server certificate")
	}
	if again.Fingerprint() != identity.Fingerprint(ca.CACert.Raw) {
		t.Error("fingerprint is not the CA certificate's")
	}
	if id := ca.SelfDeviceID(); !identity.ValidDeviceID(id) || id != again.SelfDeviceID() {
		t.Errorf("self device ID %q", id)
	}
}

// TestLoadRefusesMismatchedKey: a CA key that is not the certificate's
// (files restored from two backups) is refused at start with both files
// named, instead of signing certificates nobody accepts.
func TestLoadRefusesMismatchedKey(t *testing.T) {
	a, b := filepath.Join(t.TempDir(), "a"), filepath.Join(t.TempDir(), "b")
	if _, err := LoadOrCreate(a, nil); err != nil {
		t.Fatal(err)
	}
	if _, err := LoadOrCreate(b, nil); err != nil {
		t.Fatal(err)
	}
	other, err := os.ReadFile(filepath.Join(b, caKeyFile))
	if err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(filepath.Join(a, caKeyFile), other, 0o600); err != nil {
		t.Fatal(err)
	}
	_, err = LoadOrCreate(a, nil)
	if err == nil || !strings.Contains(err.Error(), caKeyFile) || !strings.Contains(err.Error(), caCertFile) {
		t.Fatalf("mismatched CA key: %v", err)
	}
	os.WriteFile(filepath.Join(a, caKeyFile), []byte("garbage"), 0o600)
	if _, err := LoadOrCreate(a, nil); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("garbage CA key: %v", err)
	}
}

func csrFor(t *testing.T, subject string) (*ecdsa.PrivateKey, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	der, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: subject}}, key)
	if err != nil {
		t.Fatal(err)
	}
	return key, der
}

// TestCheckCSRAndSignDevice: the device ID comes from the key, never from
// the subject the request asks for; a request whose signature does not
// match is refused; the issued certificate names the device and its group
// and is good for client authentication only.
func TestCheckCSRAndSignDevice(t *testing.T) {
	ca, err := LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	key, der := csrFor(t, "pretend-to-be-another-device")
	id, csr, err := CheckCSR(der)
	if err != nil {
		t.Fatal(err)
	}
	if want, _ := identity.DeviceID(&key.PublicKey); id != want {
		t.Fatalf("device ID %s, want the key's %s", id, want)
	}
	bad := bytes.Clone(der)
	bad[len(bad)-5] ^= 0xff // inside the signature
	if _, _, err := CheckCSR(bad); err == nil {
		t.Error("a request with a broken signature was accepted")
	}
	if _, _, err := CheckCSR([]byte("not a request")); err == nil || !strings.Contains(err.Error(), "parse certificate request") {
		t.Errorf("garbage request: %v", err)
	}
	certDER, err := ca.SignDevice(id, csr, "year-7")
	if err != nil {
		t.Fatal(err)
	}
	cert, err := x509.ParseCertificate(certDER)
	if err != nil {
		t.Fatal(err)
	}
	if cert.Subject.CommonName != id || len(cert.Subject.OrganizationalUnit) != 1 || cert.Subject.OrganizationalUnit[0] != "year-7" {
		t.Errorf("subject %v", cert.Subject)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
		t.Errorf("client auth: %v", err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err == nil {
		t.Error("a device certificate verifies as a server certificate")
	}
	if life := cert.NotAfter.Sub(time.Now()); life < DeviceCertValidity-2*time.Hour || life > DeviceCertValidity {
		t.Errorf("validity %v, want about %v", life, DeviceCertValidity)
	}
	other, err := LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: other.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err == nil {
		t.Error("device certificate verifies under another collector's CA")
	}
}

// TestEvidenceKey: created owner-only once, the same identity afterwards;
// what an agent encrypts to its recipient only it decrypts; a damaged key
// file is an error naming it (never silently replaced: the evidence
// already stored would become unreadable).
func TestEvidenceKey(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "pki")
	id, err := LoadOrCreateEvidenceKey(dir)
	if err != nil {
		t.Fatal(err)
	}
	again, err := LoadOrCreateEvidenceKey(dir)
	if err != nil || again.Recipient().String() != id.Recipient().String() {
		t.Fatalf("reload: %v", err)
	}
	if runtime.GOOS != "windows" {
		if fi, _ := os.Stat(filepath.Join(dir, evidenceKeyFile)); fi.Mode().Perm() != 0o600 {
			t.Errorf("mode %v", fi.Mode().Perm())
		}
	}
	var buf bytes.Buffer
	w, err := age.Encrypt(&buf, id.Recipient())
	if err != nil {
		t.Fatal(err)
	}
	io.WriteString(w, "screenshot bytes")
	w.Close()
	sealed := buf.Bytes()
	r, err := age.Decrypt(bytes.NewReader(sealed), again)
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := io.ReadAll(r); string(got) != "screenshot bytes" {
		t.Errorf("decrypted %q", got)
	}
	stranger, _ := age.GenerateX25519Identity()
	if _, err := age.Decrypt(bytes.NewReader(sealed), stranger); err == nil {
		t.Error("another key decrypted the evidence")
	}
	os.WriteFile(filepath.Join(dir, evidenceKeyFile), []byte("AGE-SECRET-KEY-broken\n"), 0o600)
	if _, err := LoadOrCreateEvidenceKey(dir); err == nil || !strings.Contains(err.Error(), evidenceKeyFile) {
		t.Errorf("damaged key: %v", err)
	}
}
