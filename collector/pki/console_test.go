package pki

import (
	"bytes"
	"crypto/x509"
	"os"
	"path/filepath"
	"testing"
)

// TestConsoleCertificate: issued by the CA for the asked names plus
// localhost and loopback, kept across restarts while the names are the same
// (its fingerprint is what technicians were told), reissued when a name is
// added, and never reused if it was not signed by this CA.
func TestConsoleCertificate(t *testing.T) {
	dir := t.TempDir()
	ca, err := LoadOrCreate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c1, issued, err := ca.ConsoleCertificate(dir, []string{"vigil.school.example", "10.0.0.5", "0.0.0.0", ""})
	if err != nil || !issued {
		t.Fatalf("first: issued=%v err=%v", issued, err)
	}
	roots := x509.NewCertPool()
	roots.AddCert(ca.CACert)
	for _, name := range []string{"vigil.school.example", "10.0.0.5", "localhost", "127.0.0.1", "::1"} {
		if _, err := c1.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: name, KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}); err != nil {
			t.Errorf("verify for %s: %v", name, err)
		}
	}
	if _, err := c1.Leaf.Verify(x509.VerifyOptions{Roots: roots, DNSName: "other.example"}); err == nil {
		t.Error("verified for a name not asked for")
	}
	if len(c1.Leaf.IPAddresses) != 3 { // 127.0.0.1, ::1, 10.0.0.5; no 0.0.0.0
		t.Errorf("IPs %v", c1.Leaf.IPAddresses)
	}

	c2, issued, err := ca.ConsoleCertificate(dir, []string{"VIGIL.school.example", "10.0.0.5"})
	if err != nil || issued || !bytes.Equal(c1.Certificate[0], c2.Certificate[0]) {
		t.Fatalf("same names again: issued=%v err=%v, same cert %v", issued, err, bytes.Equal(c1.Certificate[0], c2.Certificate[0]))
	}
	c3, issued, err := ca.ConsoleCertificate(dir, []string{"vigil.school.example", "10.0.0.5", "console.school.example"})
	if err != nil || !issued || c3.Leaf.VerifyHostname("console.school.example") != nil {
		t.Fatalf("a new name: issued=%v err=%v", issued, err)
	}

	// A console certificate from another CA in the dir is replaced.
	other, err := LoadOrCreate(t.TempDir(), nil)
	if err != nil {
		t.Fatal(err)
	}
	foreign, _, err := other.ConsoleCertificate(dir, nil)
	if err != nil {
		t.Fatal(err)
	}
	c4, issued, err := ca.ConsoleCertificate(dir, nil)
	if err != nil || !issued || c4.Leaf.CheckSignatureFrom(ca.CACert) != nil || bytes.Equal(c4.Certificate[0], foreign.Certificate[0]) {
		t.Fatalf("foreign certificate on disk: issued=%v err=%v", issued, err)
	}
	for _, f := range []string{consoleCertFile, consoleKeyFile} {
		if st, err := os.Stat(filepath.Join(dir, f)); err != nil || st.Mode().Perm() != 0o600 {
			t.Errorf("%s: %v %v, want 0600", f, st.Mode(), err)
		}
	}
}

func TestCertFingerprint(t *testing.T) {
	if got := CertFingerprint([]byte("abc")); got != "BA:78:16:BF:8F:01:CF:EA:41:41:40:DE:5D:AE:22:23:B0:03:61:A3:96:17:7A:9C:B4:10:FF:61:F2:00:15:AD" {
		t.Errorf("got %s", got)
	}
}
