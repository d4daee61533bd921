package auth

import (
	"strings"
	"testing"
	"time"
)

func TestTOTPVectorAndReplay(t *testing.T) {
	// RFC 6238 appendix B, SHA1, T=59 → 94287082 (8 digits) → 287082.
	if code, _ := TOTPCode("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ", 59/30); code != "287082" {
		t.Fatalf("RFC 6238 vector: %s", code)
	}
	secret := NewTOTPSecret()
	now := time.Unix(1_800_000_000, 0)
	v := NewTOTPVerifier()
	code, _ := TOTPCode(secret, now.Unix()/30)
	if !v.Check("u", secret, code, now) {
		t.Fatal("current code refused")
	}
	if v.Check("u", secret, code, now) {
		t.Error("replayed code accepted")
	}
	prev, _ := TOTPCode(secret, now.Unix()/30-1)
	if v.Check("u", secret, prev, now) {
		t.Error("an older step accepted after a newer one")
	}
	next, _ := TOTPCode(secret, now.Unix()/30+1)
	if !v.Check("u", secret, next, now) {
		t.Error("next step (clock skew) refused")
	}
	far, _ := TOTPCode(secret, now.Unix()/30+3)
	if v.Check("other", secret, far, now) {
		t.Error("a code three steps ahead accepted")
	}
}

func TestRateLimiterReserveReleaseReset(t *testing.T) {
	l := NewRateLimiter(2, time.Minute)
	now := time.Unix(1000, 0)
	r1, w := l.Reserve("k", now)
	if w != 0 {
		t.Fatal("first attempt limited")
	}
	if _, w := l.Reserve("k", now); w != 0 {
		t.Fatal("second attempt limited")
	}
	if _, w := l.Reserve("k", now.Add(time.Second)); w != 59*time.Second {
		t.Errorf("third attempt waits %v, want 59s", w)
	}
	r1.Release() // not a guess: uncounted
	if _, w := l.Reserve("k", now.Add(time.Second)); w != 0 {
		t.Error("released attempt still counted")
	}
	l.Reset("k")
	if _, w := l.Reserve("k", now.Add(2*time.Second)); w != 0 {
		t.Error("reset key still limited")
	}
	if _, w := l.Reserve("other", now); w != 0 {
		t.Error("keys are not separate")
	}
}

func TestHumanWait(t *testing.T) {
	for d, want := range map[time.Duration]string{
		882 * time.Second: "15 minutes", 15 * time.Minute: "15 minutes", 61 * time.Second: "2 minutes",
		60 * time.Second: "1 minute", 40 * time.Second: "40 seconds", 300 * time.Millisecond: "1 second", 0: "1 second",
	} {
		if got := HumanWait(d); got != want {
			t.Errorf("HumanWait(%v) = %q, want %q", d, got, want)
		}
	}
	if e := (&LimitedError{Wait: 882 * time.Second}).Error(); !strings.HasSuffix(e, "try again in 15 minutes") {
		t.Errorf("LimitedError: %q", e)
	}
}

func TestPasswordPolicyAndRandomPassword(t *testing.T) {
	for _, bad := range []string{"short", "dsl1dsl1dsl1", strings.Repeat("x", 73)} {
		if CheckPassword("dsl1dsl1dsl1", bad) == nil {
			t.Errorf("password %q accepted", bad)
		}
	}
	if err := CheckPassword("dsl1", "a-good-password"); err != nil {
		t.Error(err)
	}
	seen := map[string]bool{}
	for range 50 {
		p := RandomPassword(16)
		if len(p) != 16 || strings.ContainsAny(p, "0O1lI") || CheckPassword("u", p) != nil {
			t.Fatalf("random password %q", p)
		}
		seen[p] = true
	}
	if len(seen) != 50 {
		t.Error("random passwords repeat")
	}
	if _, err := NewUserUnhashed("Bad Name", "", RoleDSL, "a-good-password", "", false, time.Now()); err == nil {
		t.Error("bad username accepted")
	}
	if _, err := NewUserUnhashed("dsl1", "", "teacher", "a-good-password", "", false, time.Now()); err == nil {
		t.Error("bad role accepted")
	}
	if _, err := NewUserUnhashed("dsl1", "", RoleDSL, "a-good-password", "", true, time.Now()); err == nil {
		t.Error("a DSL as chair accepted")
	}
}
