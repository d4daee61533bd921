package identity

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"strings"
	"testing"
)

func TestDeviceIDStableAndValid(t *testing.T) {
	k1, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	k2, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	a, err := DeviceID(&k1.PublicKey)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := DeviceID(&k1.PublicKey)
	c, _ := DeviceID(&k2.PublicKey)
	if a != b || a == c {
		t.Fatalf("ids: %s %s %s", a, b, c)
	}
	if !ValidDeviceID(a) {
		t.Fatalf("DeviceID %q not valid by ValidDeviceID", a)
	}
	if ValidDeviceID(strings.ToUpper(a)) || ValidDeviceID(a[:10]) {
		t.Fatal("ValidDeviceID accepted a malformed id")
	}
}

func TestTokenRoundTrip(t *testing.T) {
	tok := Token{ID: "0123456789abcdef", Secret: []byte("0123456789abcdefghijklmn"), CAFingerprint: Fingerprint([]byte("ca"))}
	got, err := ParseToken(" " + tok.String() + "\n")
	if err != nil {
		t.Fatal(err)
	}
	if got.ID != tok.ID || string(got.Secret) != string(tok.Secret) || got.CAFingerprint != tok.CAFingerprint {
		t.Fatalf("round trip: %+v != %+v", got, tok)
	}
	for _, bad := range []string{"", "vgl1", "vgl2." + tok.String()[5:], "vgl1.zz23456789abcdef.AAAA.AAAA", tok.String() + ".x", strings.Replace(tok.String(), ".", "", 1)} {
		if _, err := ParseToken(bad); err == nil {
			t.Errorf("ParseToken(%q) accepted", bad)
		}
	}
}
