package server

import (
	"context"
	"crypto/rand"
	"crypto/x509"
	"encoding/hex"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vigil-safeguarding/vigil/agent/enroll"
	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func TestEnroll(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	conn := e.enrollConn(t)

	t.Run("success", func(t *testing.T) {
		_, tok := e.mintToken(t, tokenSpec{group: "year-7"})
		key, req := enrollReq(t, tok, "fp-success")
		d, resp, err := e.callEnroll(conn, key, req)
		if err != nil {
			t.Fatal(err)
		}
		want, _ := identity.DeviceID(&key.PublicKey)
		if resp.DeviceId != want {
			t.Errorf("device id %q, want identity.DeviceID(pub) = %q", resp.DeviceId, want)
		}
		if resp.Group != "year-7" {
			t.Errorf("group %q, want year-7", resp.Group)
		}
		if identity.Fingerprint(resp.CaCertDer) != e.ca.Fingerprint() {
			t.Error("returned CA does not match the collector's fingerprint")
		}
		leaf := d.cert.Leaf
		if leaf.Subject.CommonName != want {
			t.Errorf("certificate CN %q, want the device id", leaf.Subject.CommonName)
		}
		if err := leaf.CheckSignatureFrom(e.ca.CACert); err != nil {
			t.Errorf("client certificate not signed by the CA: %v", err)
		}
		if _, err := leaf.Verify(x509.VerifyOptions{Roots: e.ca.Pool(), KeyUsages: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}); err != nil {
			t.Errorf("client certificate does not verify for client auth: %v", err)
		}
		dev, ok := e.st.GetDevice(want)
		if !ok || dev.Group != "year-7" || dev.HostFingerprint != "fp-success" {
			t.Errorf("stored device %+v (found %v)", dev, ok)
		}
	})

	t.Run("school", func(t *testing.T) {
		// A token minted for a school (by the real token policy, as the CLI
		// and the console do) lands the device in that school; one for no
		// school, in the default school, as before schools.
		if _, err := e.st.AddSchool(store.School{Name: "Oak Primary"}); err != nil {
			t.Fatal(err)
		}
		toks := &tokens.Service{Store: e.st, CAFingerprint: e.ca.Fingerprint()}
		for _, c := range []struct{ school, want string }{{"Oak Primary", "oak-primary"}, {"", store.DefaultSchool}} {
			iss, err := toks.CreateIn(t.Context(), c.school, "year-8", time.Hour, 1)
			if err != nil {
				t.Fatal(err)
			}
			key, req := enrollReq(t, iss.Token, "fp-school-"+c.want)
			if _, _, err := e.callEnroll(conn, key, req); err != nil {
				t.Fatal(err)
			}
			id, _ := identity.DeviceID(&key.PublicKey)
			if sc, ok := e.st.DeviceSchool(id); !ok || sc != c.want {
				t.Errorf("token for %q: device in school %q (found %v), want %q", c.school, sc, ok, c.want)
			}
		}
	})

	refused := func(t *testing.T, tok, contains string) {
		t.Helper()
		key, req := enrollReq(t, tok, "fp-refused")
		_, _, err := e.callEnroll(conn, key, req)
		wantCode(t, "enroll", err, codes.PermissionDenied, contains)
		id, _ := identity.DeviceID(&key.PublicKey)
		if _, ok := e.st.GetDevice(id); ok {
			t.Errorf("refused enrollment still recorded device %s", id)
		}
	}

	t.Run("wrong secret", func(t *testing.T) {
		tok, _ := e.mintToken(t, tokenSpec{})
		bad := tok
		bad.Secret = make([]byte, 24)
		rand.Read(bad.Secret)
		refused(t, bad.String(), "not known")
		// The real secret still works: a wrong guess spends no use.
		key, req := enrollReq(t, tok.String(), "fp-after-guess")
		if _, _, err := e.callEnroll(conn, key, req); err != nil {
			t.Errorf("right secret after a wrong guess: %v", err)
		}
	})
	t.Run("unknown token", func(t *testing.T) {
		idb := make([]byte, 8)
		rand.Read(idb)
		secret := make([]byte, 24)
		rand.Read(secret)
		tok := identity.Token{ID: hex.EncodeToString(idb), Secret: secret, CAFingerprint: e.ca.Fingerprint()}
		refused(t, tok.String(), "not known")
	})
	t.Run("expired token", func(t *testing.T) {
		_, tok := e.mintToken(t, tokenSpec{ttl: -time.Minute})
		refused(t, tok, "expired")
	})
	t.Run("used-up token", func(t *testing.T) {
		_, tok := e.mintToken(t, tokenSpec{uses: 1})
		key, req := enrollReq(t, tok, "fp-first")
		if _, _, err := e.callEnroll(conn, key, req); err != nil {
			t.Fatalf("first use: %v", err)
		}
		refused(t, tok, "no uses left")
	})
	t.Run("two-use token", func(t *testing.T) {
		_, tok := e.mintToken(t, tokenSpec{uses: 2})
		for i := 0; i < 2; i++ {
			key, req := enrollReq(t, tok, "fp-two")
			if _, _, err := e.callEnroll(conn, key, req); err != nil {
				t.Fatalf("use %d: %v", i+1, err)
			}
		}
		refused(t, tok, "no uses left")
	})
	t.Run("token for another CA", func(t *testing.T) {
		other, err := pki.LoadOrCreate(filepath.Join(t.TempDir(), "other"), nil)
		if err != nil {
			t.Fatal(err)
		}
		// A token stored here but whose string names another collector's
		// CA. The client still pins this collector, so the server's own
		// check is what refuses it.
		tok, _ := e.mintToken(t, tokenSpec{uses: 1})
		forged := tok
		forged.CAFingerprint = other.Fingerprint()
		refused(t, forged.String(), "different collector")
		// That refusal spent no use of the real token.
		key, req := enrollReq(t, tok.String(), "fp-after-forged")
		if _, _, err := e.callEnroll(conn, key, req); err != nil {
			t.Errorf("real token after the forged one: %v", err)
		}

		// An agent following the forged token pins the other CA and never
		// gets past the TLS handshake with this collector.
		_, tok2 := e.mintToken(t, tokenSpec{caFP: other.Fingerprint()})
		key, req = enrollReq(t, tok2, "fp-pinned-other")
		_, _, err = e.callEnroll(dial(t, e.addr, pinnedTLS(other.Fingerprint(), nil)), key, req)
		wantCode(t, "enroll pinned to another CA", err, codes.Unavailable, "pinned fingerprint")
	})
	t.Run("malformed request", func(t *testing.T) {
		key, req := enrollReq(t, "vgl1.nonsense", "fp-x")
		_, _, err := e.callEnroll(conn, key, req)
		wantCode(t, "malformed token", err, codes.InvalidArgument, "malformed")

		_, tok := e.mintToken(t, tokenSpec{uses: 1})
		key, req = enrollReq(t, tok, "fp-y")
		req.CsrDer = append([]byte(nil), req.CsrDer...)
		req.CsrDer[len(req.CsrDer)-1] ^= 0xff // break the signature
		_, _, err = e.callEnroll(conn, key, req)
		wantCode(t, "bad CSR signature", err, codes.InvalidArgument, "")
		// A bad CSR is checked before the token is spent.
		key, req = enrollReq(t, tok, "fp-z")
		if _, _, err := e.callEnroll(conn, key, req); err != nil {
			t.Errorf("token after a bad CSR: %v", err)
		}
	})
}

// TestAgentEnrollInterop enrolls with the real agent code (agent/enroll and
// state.ClientTLS) and opens a stream with what it left in the state dir.
func TestAgentEnrollInterop(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	_, tok := e.mintToken(t, tokenSpec{group: "staff"})
	dir := state.Dir(filepath.Join(t.TempDir(), "agent"))
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	res, err := enroll.Enroll(ctx, dir, e.addr, tok)
	if err != nil {
		t.Fatal(err)
	}
	cfg, err := dir.LoadConfig()
	if err != nil {
		t.Fatal(err)
	}
	tlsCfg, err := dir.ClientTLS(cfg)
	if err != nil {
		t.Fatal(err)
	}
	dev, ok := e.st.GetDevice(res.DeviceID)
	if !ok || dev.Group != "staff" {
		t.Fatalf("device %+v (found %v)", dev, ok)
	}
	as, w, err := openStream(t, dial(t, e.addr, tlsCfg), &vigilv1.Hello{HostFingerprint: dev.HostFingerprint, InstanceId: "i1"})
	if err != nil {
		t.Fatal(err)
	}
	if w.DeviceId != res.DeviceID || w.Group != "staff" {
		t.Errorf("welcome %v", w)
	}
	ack, err := as.sendBatch(1, seqRange(1, 3))
	if err != nil || ack.Stored != 3 {
		t.Fatalf("ack %v, err %v", ack, err)
	}
}
