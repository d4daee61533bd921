package server

import (
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"io"
	"os"
	"path/filepath"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vigil-safeguarding/vigil/collector/releases"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/backoff"
	"github.com/vigil-safeguarding/vigil/internal/release"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestUpgradeOfferAndDownload: a device of a group with a rollout is
// offered the release on its welcome, with a signature that verifies under
// the key its enrollment returned; it can download exactly the offered
// bytes and nothing else; downloads beyond MaxDownloads are told to retry.
func TestUpgradeOfferAndDownload(t *testing.T) {
	data := t.TempDir()
	mgr, err := releases.Open(data, quietLog)
	if err != nil {
		t.Fatal(err)
	}
	env := newEnv(t, Config{Upgrades: mgr, MaxDownloads: 1}, store.Options{})
	key, _ := releases.LoadPrivateKey(releases.PrivateKeyPath(data))
	payload := make([]byte, 4<<20)
	rand.Read(payload)
	bin := filepath.Join(t.TempDir(), "agent")
	os.WriteFile(bin, payload, 0o755)
	if _, err := releases.Add(data, key, bin, "2.0.0", "linux", "amd64", time.Now()); err != nil {
		t.Fatal(err)
	}
	if _, err := mgr.StartRollout("pupils", "2.0.0", 100); err != nil {
		t.Fatal(err)
	}
	_, tok := env.mintToken(t, tokenSpec{})
	k, req := enrollReq(t, tok, nextHostFP())
	d, resp, err := env.callEnroll(env.enrollConn(t), k, req)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(mgr.PublicKey(), resp.ReleasePublicKey) {
		t.Fatal("enrollment did not return the release key")
	}
	conn := d.conn(t)
	as, _, err := openStream(t, conn, d.hello("one"))
	if err != nil {
		t.Fatal(err)
	}
	m, err := as.recv()
	if err != nil {
		t.Fatal(err)
	}
	o := m.GetUpgradeOffer()
	if o == nil || o.Version != "2.0.0" || o.Size != int64(len(payload)) {
		t.Fatalf("first message after welcome: %v", m)
	}
	if err := release.Verify(resp.ReleasePublicKey, o.Signature, o.Sha256, o.Version, o.Os, o.Arch); err != nil {
		t.Fatalf("offer signature: %v", err)
	}
	client := vigilv1.NewCollectorClient(conn)
	read := func(ctx context.Context, req *vigilv1.DownloadRequest) ([]byte, error) {
		st, err := client.DownloadRelease(ctx, req)
		if err != nil {
			return nil, err
		}
		var buf bytes.Buffer
		for {
			c, err := st.Recv()
			if errors.Is(err, io.EOF) {
				return buf.Bytes(), nil
			}
			if err != nil {
				return buf.Bytes(), err
			}
			buf.Write(c.Data)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	if _, err := read(ctx, &vigilv1.DownloadRequest{Version: "1.0.0", Os: "linux", Arch: "amd64"}); codeOf(err) != codes.NotFound {
		t.Fatalf("download of a release not offered: %v", err)
	}
	got, err := read(ctx, &vigilv1.DownloadRequest{Version: "2.0.0", Os: "linux", Arch: "amd64", Offset: 1000})
	if err != nil || !bytes.Equal(got, payload[1000:]) {
		t.Fatalf("resumed download: %d bytes, %v", len(got), err)
	}

	// Hold the one download slot: a stream nobody reads blocks the server
	// in Send once flow control's window is full.
	hold, stop := context.WithCancel(ctx)
	st, err := client.DownloadRelease(hold, &vigilv1.DownloadRequest{Version: "2.0.0", Os: "linux", Arch: "amd64"})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := st.Recv(); err != nil {
		t.Fatal(err)
	}
	var busyErr error
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
		if _, busyErr = read(ctx, &vigilv1.DownloadRequest{Version: "2.0.0", Os: "linux", Arch: "amd64"}); codeOf(busyErr) == codes.ResourceExhausted {
			break
		}
	}
	if codeOf(busyErr) != codes.ResourceExhausted {
		t.Fatalf("second download beyond MaxDownloads: %v", busyErr)
	}
	if d, ok := backoff.RetryDelay(busyErr); !ok || d <= 0 {
		t.Fatalf("busy answer without a retry delay: %v", busyErr)
	}
	stop()
	var full []byte
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(50 * time.Millisecond) {
		if full, err = read(ctx, &vigilv1.DownloadRequest{Version: "2.0.0", Os: "linux", Arch: "amd64"}); err == nil {
			break
		}
	}
	if err != nil || !bytes.Equal(full, payload) {
		t.Fatalf("download after the slot was freed: %d bytes, %v", len(full), err)
	}

	// A refusal stops the offers to this device.
	as.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_UpgradeReport{UpgradeReport: &vigilv1.UpgradeReport{
		Version: "2.0.0", Outcome: vigilv1.UpgradeOutcome_UPGRADE_OUTCOME_REFUSED, Reason: "test"}}})
	for deadline := time.Now().Add(30 * time.Second); len(mgr.Failures(d.id)) == 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatal("report not recorded")
		}
	}
	if _, err := read(ctx, &vigilv1.DownloadRequest{Version: "2.0.0", Os: "linux", Arch: "amd64"}); codeOf(err) != codes.NotFound {
		t.Fatalf("download after the device refused the release: %v", err)
	}
}
