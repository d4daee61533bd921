package enroll

import (
	"context"
	"crypto/x509"
	"encoding/pem"
	"errors"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/server"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
	"github.com/vigil-safeguarding/vigil/internal/identity"
)

// collector is a real collector's enrollment endpoint (CA, store, token
// service, gRPC over TLS) on loopback.
type collector struct {
	addr string
	ca   *pki.Authority
	st   *store.Store
	toks *tokens.Service
}

func startCollector(t *testing.T) *collector {
	t.Helper()
	dir := t.TempDir()
	log := slog.New(slog.DiscardHandler)
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "badger"), store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	srv := server.New(server.Config{Store: st, CA: ca, Logger: log, Evidence: oneRecipient("age1testrecipient")})
	g := srv.GRPCServer()
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan struct{})
	go func() { defer close(served); g.Serve(lis) }()
	t.Cleanup(func() { g.Stop(); <-served })
	return &collector{addr: lis.Addr().String(), ca: ca, st: st, toks: &tokens.Service{Store: st, CAFingerprint: ca.Fingerprint(), Logger: log}}
}

// oneRecipient names the same evidence recipient for every school.
type oneRecipient string

func (r oneRecipient) Recipient(string) (string, error) { return string(r), nil }

func (c *collector) token(t *testing.T, group string, uses int) string {
	t.Helper()
	iss, err := c.toks.Create(context.Background(), group, time.Hour, uses)
	if err != nil {
		t.Fatal(err)
	}
	return iss.Token
}

// TestEnroll: the device gets a key of its own, a certificate from the
// collector's CA naming its device ID, and a config pinned to the CA; the
// key and config are owner-only; local settings survive re-enrolment,
// which gives the device a new identity.
func TestEnroll(t *testing.T) {
	c := startCollector(t)
	dir := state.Dir(filepath.Join(t.TempDir(), "state"))
	res, err := Enroll(context.Background(), dir, c.addr, c.token(t, "year-7", 2))
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dir.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	if cfg.DeviceID != res.DeviceID || cfg.Group != "year-7" || res.Group != "year-7" || cfg.Collector != c.addr ||
		cfg.CAFingerprint != c.ca.Fingerprint() || cfg.EvidenceRecipient != "age1testrecipient" {
		t.Fatalf("config %+v, result %+v", cfg, res)
	}
	key, err := dir.LoadKey()
	if err != nil {
		t.Fatal(err)
	}
	if id, _ := identity.DeviceID(key.Public()); id != res.DeviceID {
		t.Errorf("device ID %s is not the key's %s", res.DeviceID, id)
	}
	pemBytes, err := os.ReadFile(dir.CertPath())
	if err != nil {
		t.Fatal(err)
	}
	blk, _ := pem.Decode(pemBytes)
	cert, err := x509.ParseCertificate(blk.Bytes)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cert.Verify(x509.VerifyOptions{Roots: c.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil || cert.Subject.CommonName != res.DeviceID {
		t.Errorf("certificate CN %q: %v", cert.Subject.CommonName, err)
	}
	if runtime.GOOS != "windows" {
		for _, p := range []string{dir.KeyPath(), dir.ConfigPath(), string(dir)} {
			fi, err := os.Stat(p)
			if err != nil {
				t.Fatal(err)
			}
			if fi.Mode().Perm()&0o077 != 0 {
				t.Errorf("%s is mode %v, want owner-only", p, fi.Mode().Perm())
			}
		}
	}
	if _, ok := c.st.GetDevice(res.DeviceID); !ok {
		t.Error("collector has no record of the device")
	}

	cfg.Role, cfg.SpoolMaxBytes = "pupil", 1<<20
	if err := dir.SaveConfig(cfg); err != nil {
		t.Fatal(err)
	}
	res2, err := Enroll(context.Background(), dir, c.addr, c.token(t, "year-8", 1))
	if err != nil {
		t.Fatal(err)
	}
	cfg2, _ := dir.LoadConfig()
	if res2.DeviceID == res.DeviceID {
		t.Error("re-enrolment kept the old identity (a cloned image would share it)")
	}
	if cfg2.Role != "pupil" || cfg2.SpoolMaxBytes != 1<<20 || cfg2.Group != "year-8" || cfg2.DeviceID != res2.DeviceID {
		t.Errorf("after re-enrolment %+v", cfg2)
	}
}

// TestEnrollRefusals: a token pinned to another CA (a rogue or wrong
// collector), a spent token, a malformed token and an address nothing
// answers each fail with what went wrong, and leave the device unenrolled.
func TestEnrollRefusals(t *testing.T) {
	c := startCollector(t)
	other := startCollector(t)
	ctx := context.Background()

	check := func(t *testing.T, dir state.Dir, err error, want string) {
		t.Helper()
		if err == nil || !strings.Contains(err.Error(), want) {
			t.Fatalf("err %v, want it to mention %q", err, want)
		}
		if _, err := os.Stat(dir.ConfigPath()); !errors.Is(err, os.ErrNotExist) {
			t.Errorf("refused enrolment left a config behind: %v", err)
		}
	}

	t.Run("pinned to another CA", func(t *testing.T) {
		dir := state.Dir(t.TempDir())
		_, err := Enroll(ctx, dir, c.addr, other.token(t, "pupils", 1))
		check(t, dir, err, "pinned fingerprint")
		if errors.Is(err, ErrUnreachable) {
			t.Error("a pin mismatch reported as unreachable")
		}
	})
	t.Run("spent token", func(t *testing.T) {
		tok := c.token(t, "pupils", 1)
		if _, err := Enroll(ctx, state.Dir(t.TempDir()), c.addr, tok); err != nil {
			t.Fatal(err)
		}
		dir := state.Dir(t.TempDir())
		_, err := Enroll(ctx, dir, c.addr, tok)
		check(t, dir, err, "collector refused enrollment")
		if errors.Is(err, ErrUnreachable) {
			t.Error("a refusal reported as unreachable (callers would retry it forever)")
		}
	})
	t.Run("malformed token", func(t *testing.T) {
		dir := state.Dir(filepath.Join(t.TempDir(), "state"))
		_, err := Enroll(ctx, dir, c.addr, "vgl1.nope")
		check(t, dir, err, "malformed")
		if _, err := os.Stat(string(dir)); !errors.Is(err, os.ErrNotExist) {
			t.Error("a malformed token created the state dir")
		}
	})
	t.Run("unreachable", func(t *testing.T) {
		lis, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := lis.Addr().String()
		lis.Close() // nothing listens there now
		dir := state.Dir(t.TempDir())
		_, err = Enroll(ctx, dir, addr, c.token(t, "pupils", 1))
		if !errors.Is(err, ErrUnreachable) {
			t.Fatalf("err %v, want ErrUnreachable", err)
		}
		check(t, dir, err, addr)
	})
}
