package state

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"net"
	"os"
	"path/filepath"
	"reflect"
	"runtime"
	"strings"
	"testing"

	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/internal/identity"
)

func TestEnsureOwnerOnly(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("no Unix permission bits")
	}
	d := Dir(filepath.Join(t.TempDir(), "a", "state"))
	if err := d.Ensure(); err != nil {
		t.Fatal(err)
	}
	// An existing dir a package left group-readable is tightened.
	if err := os.Chmod(string(d), 0o755); err != nil {
		t.Fatal(err)
	}
	if err := d.Ensure(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(string(d))
	if err != nil || fi.Mode().Perm() != 0o700 {
		t.Fatalf("mode %v, %v", fi.Mode().Perm(), err)
	}
}

// TestConfig: not enrolled is a clear error naming the command; the config
// round-trips, owner-only; a damaged file is an error naming it.
func TestConfig(t *testing.T) {
	d := Dir(t.TempDir())
	if _, err := d.LoadConfig(); err == nil || !strings.Contains(err.Error(), "not enrolled") || !strings.Contains(err.Error(), "vigil-agent enroll") {
		t.Fatalf("missing config: %v", err)
	}
	want := Config{Collector: "vigil.lan:7443", DeviceID: "d1", Group: "pupils", CAFingerprint: "fp", EvidenceRecipient: "age1x", SpoolMaxBytes: 5 << 20, Role: "pupil", ReleaseKey: []byte{1, 2, 3}}
	if err := d.SaveConfig(want); err != nil {
		t.Fatal(err)
	}
	got, err := d.LoadConfig()
	if err != nil || !reflect.DeepEqual(got, want) {
		t.Fatalf("round trip %+v, %v", got, err)
	}
	if runtime.GOOS != "windows" {
		if fi, _ := os.Stat(d.ConfigPath()); fi.Mode().Perm() != 0o600 {
			t.Errorf("config mode %v", fi.Mode().Perm())
		}
	}
	os.WriteFile(d.ConfigPath(), []byte("{\"collector\": "), 0o600)
	if _, err := d.LoadConfig(); err == nil || !strings.Contains(err.Error(), d.ConfigPath()) {
		t.Errorf("damaged config: %v", err)
	}
}

// device enrolls a key with a real CA (collector/pki) into d.
func device(t *testing.T, d Dir, ca *pki.Authority) string {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	csrDER, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "x"}}, key)
	if err != nil {
		t.Fatal(err)
	}
	id, csr, err := pki.CheckCSR(csrDER)
	if err != nil {
		t.Fatal(err)
	}
	certDER, err := ca.SignDevice(id, csr, "pupils")
	if err != nil {
		t.Fatal(err)
	}
	keyDER, _ := x509.MarshalPKCS8PrivateKey(key)
	if err := d.WritePEM(d.KeyPath(), "PRIVATE KEY", keyDER); err != nil {
		t.Fatal(err)
	}
	if err := d.WritePEM(d.CertPath(), "CERTIFICATE", certDER); err != nil {
		t.Fatal(err)
	}
	return id
}

func TestLoadKey(t *testing.T) {
	d := Dir(t.TempDir())
	ca, err := pki.LoadOrCreate(filepath.Join(t.TempDir(), "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	id := device(t, d, ca)
	k, err := d.LoadKey()
	if err != nil {
		t.Fatal(err)
	}
	if got, _ := identity.DeviceID(k.Public()); got != id {
		t.Errorf("loaded key is device %s, want %s", got, id)
	}
	os.WriteFile(d.KeyPath(), []byte("not pem"), 0o600)
	if _, err := d.LoadKey(); err == nil || !strings.Contains(err.Error(), "no PEM block") {
		t.Errorf("garbage key: %v", err)
	}
}

// TestClientTLS: a real mTLS handshake on loopback. The agent accepts the
// collector whose CA it pinned (whatever name it is reached by) and
// presents the device certificate; a collector with another CA is refused.
func TestClientTLS(t *testing.T) {
	d := Dir(t.TempDir())
	caDir := filepath.Join(t.TempDir(), "pki")
	ca, err := pki.LoadOrCreate(caDir, nil)
	if err != nil {
		t.Fatal(err)
	}
	id := device(t, d, ca)
	rogue, err := pki.LoadOrCreate(filepath.Join(t.TempDir(), "rogue"), nil)
	if err != nil {
		t.Fatal(err)
	}
	serve := func(a *pki.Authority) (string, chan string) {
		lis, err := tls.Listen("tcp", "127.0.0.1:0", &tls.Config{
			Certificates: []tls.Certificate{a.ServerCert}, ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: ca.Pool(),
			MinVersion: tls.VersionTLS13,
		})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { lis.Close() })
		peers := make(chan string, 1)
		go func() {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			defer c.Close()
			tc := c.(*tls.Conn)
			if tc.Handshake() == nil && len(tc.ConnectionState().PeerCertificates) > 0 {
				peers <- tc.ConnectionState().PeerCertificates[0].Subject.CommonName
			}
			close(peers)
		}()
		return lis.Addr().String(), peers
	}
	cfg, err := d.ClientTLS(Config{CAFingerprint: ca.Fingerprint()})
	if err != nil {
		t.Fatal(err)
	}
	addr, peers := serve(ca)
	_, port, _ := net.SplitHostPort(addr)
	// Reached by a name not in the server certificate: the pin decides.
	cfg.ServerName = "collector.school.invalid"
	conn, err := tls.Dial("tcp", net.JoinHostPort("127.0.0.1", port), cfg)
	if err != nil {
		t.Fatalf("handshake with the pinned collector: %v", err)
	}
	conn.Close()
	if got := <-peers; got != id {
		t.Errorf("collector saw client %q, want the device %s", got, id)
	}
	addr, _ = serve(rogue)
	cfg2, _ := d.ClientTLS(Config{CAFingerprint: ca.Fingerprint()})
	if c, err := tls.Dial("tcp", addr, cfg2); err == nil {
		c.Close()
		t.Fatal("agent accepted a collector whose CA is not the pinned one")
	} else if !strings.Contains(err.Error(), "pinned fingerprint") {
		t.Errorf("rogue collector: %v", err)
	}
	os.Remove(d.CertPath())
	if _, err := d.ClientTLS(Config{CAFingerprint: ca.Fingerprint()}); err == nil || !strings.Contains(err.Error(), "device certificate") {
		t.Errorf("missing certificate: %v", err)
	}
}
