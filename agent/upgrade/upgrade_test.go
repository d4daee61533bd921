package upgrade

import (
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"crypto/sha256"
	"encoding/hex"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/internal/release"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func quiet() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// bytesDownloader serves one release from memory in chunks, as the
// collector's DownloadRelease does; calls counts the downloads.
type bytesDownloader struct {
	data  []byte
	calls int
}

type bytesStream struct {
	data []byte
	off  int64
}

func (b *bytesDownloader) DownloadRelease(_ context.Context, req *vigilv1.DownloadRequest) (ReleaseStream, error) {
	b.calls++
	return &bytesStream{data: b.data, off: req.GetOffset()}, nil
}

func (s *bytesStream) Recv() (*vigilv1.ReleaseChunk, error) {
	if s.off >= int64(len(s.data)) {
		return nil, io.EOF
	}
	end := min(s.off+7, int64(len(s.data)))
	c := &vigilv1.ReleaseChunk{Offset: s.off, Data: s.data[s.off:end]}
	s.off = end
	return c, nil
}

func newTest(t *testing.T, pub ed25519.PublicKey) (*Upgrader, string, *[]*vigilv1.Finding, *bool) {
	t.Helper()
	dir := state.Dir(t.TempDir())
	exe := filepath.Join(t.TempDir(), "vigil-agent")
	if err := os.WriteFile(exe, []byte("old binary"), 0o755); err != nil {
		t.Fatal(err)
	}
	var found []*vigilv1.Finding
	restarted := false
	u, err := New(Config{State: dir, PublicKey: pub, Exe: exe, Logger: quiet(), Watchdog: time.Minute,
		Finding: func(f *vigilv1.Finding) { found = append(found, f) }, Restart: func() { restarted = true },
		StartWatchdog: func(string, state.Dir) error { return nil }})
	if err != nil {
		t.Fatal(err)
	}
	return u, exe, &found, &restarted
}

func offer(key ed25519.PrivateKey, bin []byte, ver string) *vigilv1.UpgradeOffer {
	sum := sha256.Sum256(bin)
	h := hex.EncodeToString(sum[:])
	return &vigilv1.UpgradeOffer{Version: ver, Os: runtime.GOOS, Arch: runtime.GOARCH, Sha256: h, Size: int64(len(bin)),
		Signature: release.Sign(key, h, ver, runtime.GOOS, runtime.GOARCH)}
}

func TestOfferSignedByAnotherKeyRefused(t *testing.T) {
	pinned, _, _ := ed25519.GenerateKey(rand.Reader)
	_, other, _ := ed25519.GenerateKey(rand.Reader)
	u, exe, found, restarted := newTest(t, pinned)
	bin := []byte("new binary")
	dl := &bytesDownloader{data: bin}
	rep := u.Offer(context.Background(), offer(other, bin, "2.0.0"), dl)
	if rep == nil || rep.Outcome != vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_REFUSED || !strings.Contains(rep.Reason, "signature") {
		t.Fatalf("report %v", rep)
	}
	if dl.calls != 0 {
		t.Fatal("downloaded a release whose signature does not verify")
	}
	if *restarted {
		t.Fatal("restarted")
	}
	if b, _ := os.ReadFile(exe); string(b) != "old binary" {
		t.Fatal("binary replaced")
	}
	if len(*found) != 1 || (*found)[0].RuleId != "agent-upgrade-refused" {
		t.Fatalf("findings %v", *found)
	}
	// Offered again, it is refused at once, without a second finding.
	rep = u.Offer(context.Background(), offer(other, bin, "2.0.0"), dl)
	if rep == nil || !strings.Contains(rep.Reason, "failed this version before") || len(*found) != 1 {
		t.Fatalf("second offer: %v, %d findings", rep, len(*found))
	}
}

func TestOfferWithoutPinnedKeyRefused(t *testing.T) {
	_, key, _ := ed25519.GenerateKey(rand.Reader)
	u, _, _, restarted := newTest(t, nil)
	rep := u.Offer(context.Background(), offer(key, []byte("x"), "2.0.0"), &bytesDownloader{data: []byte("x")})
	if rep == nil || !strings.Contains(rep.Reason, "no usable release key") || *restarted {
		t.Fatalf("report %v", rep)
	}
}

func TestOfferTamperedRefusedAndGoodSwapped(t *testing.T) {
	pub, key, _ := ed25519.GenerateKey(rand.Reader)
	u, exe, found, restarted := newTest(t, pub)
	bin := []byte("the new agent binary, signed")
	tampered := append([]byte(nil), bin...)
	tampered[3] ^= 0xff
	rep := u.Offer(context.Background(), offer(key, bin, "2.0.0"), &bytesDownloader{data: tampered})
	if rep == nil || rep.Outcome != vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_REFUSED || !strings.Contains(rep.Reason, "tampered") {
		t.Fatalf("report %v", rep)
	}
	if _, err := os.Stat(exe + ".new"); err == nil {
		t.Fatal("tampered download left staged")
	}
	// Longer than signed: cut off, refused.
	rep = u.Offer(context.Background(), offer(key, bin, "2.0.1"), &bytesDownloader{data: append(bin, 'x')})
	if rep == nil || !strings.Contains(rep.Reason, "more than") {
		t.Fatalf("oversize report %v", rep)
	}
	if len(*found) != 2 || *restarted {
		t.Fatalf("%d findings, restarted %v", len(*found), *restarted)
	}
	rep = u.Offer(context.Background(), offer(key, bin, "2.0.2"), &bytesDownloader{data: bin})
	if rep != nil || !*restarted {
		t.Fatalf("good release: report %v restarted %v", rep, *restarted)
	}
	if b, _ := os.ReadFile(exe); string(b) != string(bin) {
		t.Fatalf("binary is %q", b)
	}
	if b, _ := os.ReadFile(exe + ".prev"); string(b) != "old binary" {
		t.Fatalf("previous binary is %q", b)
	}
	p, ok, err := LoadPending(u.cfg.State)
	if err != nil || !ok || p.To != "2.0.2" || p.Prev != exe+".prev" {
		t.Fatalf("pending %+v %v %v", p, ok, err)
	}
}
