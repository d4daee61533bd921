package auth

// TOTP (RFC 6238: HMAC-SHA1, 30 s steps, 6 digits).

import (
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha1"
	"crypto/subtle"
	"encoding/base32"
	"encoding/binary"
	"fmt"
	"net/url"
	"strings"
	"sync"
	"time"
)

// NewTOTPSecret returns a random base32 secret (160 bits).
func NewTOTPSecret() string {
	b := make([]byte, 20)
	rand.Read(b)
	return base32.StdEncoding.WithPadding(base32.NoPadding).EncodeToString(b)
}

// TOTPURI is the otpauth:// URI an authenticator app scans.
func TOTPURI(secret, username string) string {
	return "otpauth://totp/" + url.PathEscape("Vigil:"+username) + "?secret=" + secret + "&issuer=Vigil&algorithm=SHA1&digits=6&period=30"
}

// TOTPCode computes the code for a time step.
func TOTPCode(secret string, step int64) (string, error) {
	key, err := base32.StdEncoding.WithPadding(base32.NoPadding).DecodeString(strings.ToUpper(strings.TrimRight(secret, "=")))
	if err != nil {
		return "", err
	}
	mac := hmac.New(sha1.New, key)
	binary.Write(mac, binary.BigEndian, uint64(step))
	sum := mac.Sum(nil)
	off := sum[len(sum)-1] & 0x0f
	n := binary.BigEndian.Uint32(sum[off:off+4]) & 0x7fffffff
	return fmt.Sprintf("%06d", n%1_000_000), nil
}

// TOTPVerifier accepts each account's codes at most once.
type TOTPVerifier struct {
	mu   sync.Mutex
	used map[string]int64 // username -> last accepted time step (no replay)
}

// NewTOTPVerifier returns an empty verifier.
func NewTOTPVerifier() *TOTPVerifier { return &TOTPVerifier{used: map[string]int64{}} }

// Check accepts the code for now ±1 step, once.
func (v *TOTPVerifier) Check(username, secret, code string, now time.Time) bool {
	step := now.Unix() / 30
	v.mu.Lock()
	defer v.mu.Unlock()
	for d := int64(-1); d <= 1; d++ {
		want, err := TOTPCode(secret, step+d)
		if err != nil {
			return false
		}
		if subtle.ConstantTimeCompare([]byte(want), []byte(code)) == 1 {
			if step+d <= v.used[username] {
				return false
			}
			v.used[username] = step + d
			return true
		}
	}
	return false
}
