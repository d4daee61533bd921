package server

import (
	"context"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/backoff"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	"github.com/vigil-safeguarding/vigil/internal/testutil"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestRevokedKeyStaysRevoked reproduces issue 8 item 9: a revoked device's
// key enrolled again with any valid token. Now the key is refused until
// the revocation is lifted, and the refusal spends no token use.
func TestRevokedKeyStaysRevoked(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	conn := e.enrollConn(t)
	_, tok := e.mintToken(t, tokenSpec{group: "year-7"})
	key, req := enrollReq(t, tok, "fp-stolen")
	d, _, err := e.callEnroll(conn, key, req)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.st.Revoke(store.Revocation{DeviceID: d.id, RevokedAt: time.Now(), Who: "os:tech", Reason: "stolen"}); err != nil {
		t.Fatal(err)
	}
	// Its certificate is refused...
	_, _, err = openStream(t, d.conn(t), d.hello("i1"))
	wantCode(t, "stream of revoked device", err, codes.PermissionDenied, "revoked")

	// ...and so is the same key with a fresh, valid token.
	_, fresh := e.mintToken(t, tokenSpec{group: "year-7", uses: 1})
	_, _, err = e.callEnroll(conn, key, enrollReqFor(t, key, fresh, "fp-stolen"))
	wantCode(t, "re-enroll of revoked key", err, codes.PermissionDenied, "revoked")
	wantCode(t, "re-enroll of revoked key", err, codes.PermissionDenied, "devices unrevoke")
	if dev, _ := e.st.GetDevice(d.id); !dev.Revoked {
		t.Fatal("refused re-enrollment cleared the revoked flag")
	}

	// A different key (the laptop reinstalled) is not affected.
	_, other := e.mintToken(t, tokenSpec{})
	k2, r2 := enrollReq(t, other, "fp-other")
	if _, _, err := e.callEnroll(conn, k2, r2); err != nil {
		t.Fatalf("other key: %v", err)
	}

	// Lifted: the same fresh token (not spent by the refusal) now works.
	if _, err := e.st.Unrevoke(d.id); err != nil {
		t.Fatal(err)
	}
	d2, _, err := e.callEnroll(conn, key, enrollReqFor(t, key, fresh, "fp-stolen"))
	if err != nil {
		t.Fatalf("enroll after unrevoke: %v", err)
	}
	d2.mustStream(t, "i2")
	if _, err := e.st.Unrevoke(d.id); err != store.ErrNotRevoked {
		t.Errorf("second unrevoke: %v, want ErrNotRevoked", err)
	}
}

// TestRevokedBeforeUpgradeStaysRevoked: a device revoked by the old code has
// only the flag on its device record, which must still block enrollment.
func TestRevokedBeforeUpgradeStaysRevoked(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	conn := e.enrollConn(t)
	d := e.enrollDevice(t)
	dev, _ := e.st.GetDevice(d.id)
	dev.Revoked = true
	if err := e.st.PutDevice(dev); err != nil {
		t.Fatal(err)
	}
	_, tok := e.mintToken(t, tokenSpec{})
	_, _, err := e.callEnroll(conn, d.key, enrollReqFor(t, d.key, tok, d.hostFP))
	wantCode(t, "re-enroll of legacy-revoked key", err, codes.PermissionDenied, "revoked")
	if _, err := e.st.Unrevoke(d.id); err != nil {
		t.Fatalf("unrevoke legacy revocation: %v", err)
	}
	if _, _, err := e.callEnroll(conn, d.key, enrollReqFor(t, d.key, tok, d.hostFP)); err != nil {
		t.Fatalf("enroll after unrevoke: %v", err)
	}
}

// TestEnrollFieldLimits: 2 MiB strings were accepted and stored. Each
// field is now refused with InvalidArgument naming it, the token is not
// spent and nothing is stored.
func TestEnrollFieldLimits(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	conn := e.enrollConn(t)
	huge := strings.Repeat("x", 2<<20)
	_, tok := e.mintToken(t, tokenSpec{uses: 1})
	for name, set := range map[string]func(*vigilv1.EnrollRequest){
		"hostname":         func(r *vigilv1.EnrollRequest) { r.Hostname = huge },
		"os":               func(r *vigilv1.EnrollRequest) { r.Os = strings.Repeat("l", maxOS+1) },
		"arch":             func(r *vigilv1.EnrollRequest) { r.Arch = huge },
		"agent_version":    func(r *vigilv1.EnrollRequest) { r.AgentVersion = huge },
		"host_fingerprint": func(r *vigilv1.EnrollRequest) { r.HostFingerprint = huge },
		"token":            func(r *vigilv1.EnrollRequest) { r.Token = r.Token + strings.Repeat("A", maxToken) },
	} {
		key, req := enrollReq(t, tok, "fp-long")
		set(req)
		_, _, err := e.callEnroll(conn, key, req)
		wantCode(t, name, err, codes.InvalidArgument, "field "+name)
		id, _ := identity.DeviceID(&key.PublicKey)
		if _, ok := e.st.GetDevice(id); ok {
			t.Errorf("%s: over-long request stored a device", name)
		}
	}
	// The limits are not off by one, and the token's one use is intact.
	key, req := enrollReq(t, tok, strings.Repeat("f", maxHostFingerprint))
	req.Hostname, req.Os, req.Arch, req.AgentVersion = strings.Repeat("h", maxHostname), strings.Repeat("o", maxOS), strings.Repeat("a", maxArch), strings.Repeat("v", maxAgentVersion)
	if _, _, err := e.callEnroll(conn, key, req); err != nil {
		t.Fatalf("request at every limit: %v", err)
	}
}

// dialFrom connects from a chosen loopback source address, so tests can
// act as different sources.
func dialFrom(tb testing.TB, addr, src string, e *testEnv) *grpc.ClientConn {
	tb.Helper()
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(pinnedTLS(e.ca.Fingerprint(), nil))),
		grpc.WithContextDialer(func(ctx context.Context, a string) (net.Conn, error) {
			d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}
			return d.DialContext(ctx, "tcp", a)
		}))
	if err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { conn.Close() })
	return conn
}

// TestEnrollFailureRateLimit reproduces "3,000 bogus enrollments in 1.1 s
// gave 3,000 log lines and no rate limit": failures are now limited per
// source (RESOURCE_EXHAUSTED with RetryInfo), other sources and good tokens
// are unaffected, and the log gets a handful of lines with counts.
func TestEnrollFailureRateLimit(t *testing.T) {
	var logBuf testutil.SyncBuffer
	const burst, perMinute, attempts = 5, 60, 3000
	e := newEnv(t, Config{Logger: slog.New(slog.NewTextHandler(&logBuf, nil)),
		EnrollFailBurst: burst, EnrollFailuresPerMinute: perMinute, RefusalLogInterval: 500 * time.Millisecond}, store.Options{})
	attacker := dialFrom(t, e.addr, "127.0.0.1", e)
	tok, _ := e.mintToken(t, tokenSpec{uses: 2})
	bogus := tok
	bogus.Secret = append([]byte(nil), tok.Secret...)
	bogus.Secret[0] ^= 1
	key, req := enrollReq(t, bogus.String(), "fp-guess")

	start := time.Now()
	var denied, limited int
	for i := 0; i < attempts; i++ {
		_, _, err := e.callEnroll(attacker, key, req)
		switch codeOf(err) {
		case codes.PermissionDenied:
			denied++
		case codes.ResourceExhausted:
			limited++
			if d, ok := backoff.RetryDelay(err); !ok || d <= 0 {
				t.Fatalf("rate-limited answer without RetryInfo: %v", err)
			}
		default:
			t.Fatalf("attempt %d: %v", i, err)
		}
	}
	elapsed := time.Since(start)
	// Tokens refill at perMinute; allow one extra for rounding.
	if maxDenied := burst + int(elapsed.Seconds()*perMinute/60) + 1; denied > maxDenied {
		t.Errorf("%d guesses were checked in %s, the limit allows %d", denied, elapsed, maxDenied)
	}
	if limited == 0 {
		t.Error("no attempt was rate limited")
	}
	t.Logf("%d attempts in %s: %d checked, %d rate-limited", attempts, elapsed, denied, limited)

	// Another source with the real token is not held back by the attacker,
	// and success costs no budget.
	other := dialFrom(t, e.addr, "127.0.0.2", e)
	k1, r1 := enrollReq(t, tok.String(), "fp-legit")
	if _, _, err := e.callEnroll(other, k1, r1); err != nil {
		t.Fatalf("enrollment from another source: %v", err)
	}

	// The log: one detailed line, then aggregated lines whose counts add up.
	deadline := time.Now().Add(30 * time.Second)
	for {
		if n := aggregatedCount(logBuf.String()); n+1 == attempts {
			break
		} else if time.Now().After(deadline) {
			t.Fatalf("aggregated refusal counts add to %d (+1 detailed), want %d; log:\n%s", n, attempts, logBuf.String())
		}
		time.Sleep(50 * time.Millisecond)
	}
	lines := strings.Count(logBuf.String(), "enrollment")
	if maxLines := 3 + int(time.Since(start)/(500*time.Millisecond)); lines > maxLines {
		t.Errorf("%d refusal log lines for %d refusals, want at most %d", lines, attempts, maxLines)
	}
	if !strings.Contains(logBuf.String(), "rate_limited=") || !strings.Contains(logBuf.String(), "token_unknown") {
		t.Errorf("log does not name the reasons:\n%s", logBuf.String())
	}
}

func aggregatedCount(log string) int {
	n := 0
	for _, l := range strings.Split(log, "\n") {
		if !strings.Contains(l, "aggregated") {
			continue
		}
		var c int
		if i := strings.Index(l, " count="); i >= 0 {
			for _, ch := range l[i+7:] {
				if ch < '0' || ch > '9' {
					break
				}
				c = c*10 + int(ch-'0')
			}
		}
		n += c
	}
	return n
}
