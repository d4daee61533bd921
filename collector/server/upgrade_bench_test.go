package server

import (
	"bytes"
	"context"
	"crypto/ed25519"
	"crypto/rand"
	"fmt"
	"os"
	"path/filepath"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"

	"github.com/vigil-safeguarding/vigil/agent/state"
	"github.com/vigil-safeguarding/vigil/agent/upgrade"
	"github.com/vigil-safeguarding/vigil/collector/releases"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// fixedRules serves one bundle, replaced between iterations.
type fixedRules struct {
	mu sync.Mutex
	b  *vigilv1.RulesBundle
}

func (f *fixedRules) Bundle(string, string) *vigilv1.RulesBundle {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.b
}

type clientDownloader struct{ c vigilv1.CollectorClient }

func (d clientDownloader) DownloadRelease(ctx context.Context, req *vigilv1.DownloadRequest) (upgrade.ReleaseStream, error) {
	return d.c.DownloadRelease(ctx, req)
}

// BenchmarkUpgradeRollout measures a rollout to N agents on loopback: from
// the rollout (PushUpgrades) until every agent has received the offer,
// downloaded the release over its own mTLS connection (DownloadRelease),
// verified signature and hash with the key from its EnrollResponse, staged
// it, kept the previous binary and swapped (agent/upgrade, the real code).
// Process restarts are not included (the e2e test covers them). The
// baseline, in the same run, pushes a rules bundle of the same size down
// the same streams and waits until every agent has written it to disk and
// synced it. One op is one rollout to all agents.
//
//	go test -run=^$ -bench=BenchmarkUpgradeRollout -benchtime=5x ./collector/server/
func BenchmarkUpgradeRollout(b *testing.B) {
	agents, size := 100, 8<<20
	if testing.Short() {
		agents, size = 10, 256<<10
	}
	data := b.TempDir()
	mgr, err := releases.Open(data, quietLog)
	if err != nil {
		b.Fatal(err)
	}
	rules := &fixedRules{}
	// MaxDownloads is raised to the agent count: the figure is the transfer
	// and verification, not the collector's deliberate pacing of larger
	// fleets (64 at once by default, the rest told to retry later).
	env := newEnv(b, Config{Rules: rules, Upgrades: mgr, HeartbeatInterval: time.Hour, MaxDownloads: agents}, store.Options{})
	key, err := releases.LoadPrivateKey(releases.PrivateKeyPath(data))
	if err != nil {
		b.Fatal(err)
	}
	payload := make([]byte, size)
	rand.Read(payload)
	bin := filepath.Join(b.TempDir(), "agent")
	os.WriteFile(bin, payload, 0o755)

	var upgraded, bundled sync.WaitGroup
	var refusals atomic.Int64
	for i := 0; i < agents; i++ {
		_, tok := env.mintToken(b, tokenSpec{})
		k, req := enrollReq(b, tok, nextHostFP())
		d, resp, err := env.callEnroll(env.enrollConn(b), k, req)
		if err != nil {
			b.Fatal(err)
		}
		conn, err := grpc.NewClient(env.addr, grpc.WithTransportCredentials(credentials.NewTLS(pinnedTLS(env.ca.Fingerprint(), &d.cert))),
			grpc.WithDefaultCallOptions(grpc.MaxCallRecvMsgSize(32<<20)))
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { conn.Close() })
		dir := b.TempDir()
		exe := filepath.Join(dir, "vigil-agent")
		os.WriteFile(exe, []byte("previous agent binary"), 0o755)
		up, err := upgrade.New(upgrade.Config{State: state.Dir(dir), PublicKey: ed25519.PublicKey(resp.ReleasePublicKey), Exe: exe,
			Logger: quietLog, Restart: upgraded.Done, StartWatchdog: func(string, state.Dir) error { return nil }})
		if err != nil {
			b.Fatal(err)
		}
		as, _, err := openStream(b, conn, d.hello(fmt.Sprint(i)))
		if err != nil {
			b.Fatal(err)
		}
		client := vigilv1.NewCollectorClient(conn)
		rulesFile := filepath.Join(dir, "rules.bin")
		go func() {
			for {
				m, err := as.s.Recv()
				if err != nil {
					return
				}
				switch msg := m.Msg.(type) {
				case *vigilv1.CollectorMessage_UpgradeOffer:
					go func() {
						if rep := up.Offer(context.Background(), msg.UpgradeOffer, clientDownloader{client}); rep != nil {
							refusals.Add(1)
							upgraded.Done()
						}
					}()
				case *vigilv1.CollectorMessage_Rules:
					f, err := os.Create(rulesFile)
					if err == nil {
						f.Write(msg.Rules.Files["bench.bin"])
						f.Sync()
						f.Close()
					}
					bundled.Done()
				}
			}
		}()
	}
	// Every agent's welcome is sent and its stream registered before the
	// first push.
	for deadline := time.Now().Add(time.Minute); ; {
		if env.srv.ConnectedByGroup()["pupils"] == agents {
			break
		}
		if time.Now().After(deadline) {
			b.Fatal("agents did not connect")
		}
		time.Sleep(10 * time.Millisecond)
	}

	b.Run("upgrade", func(b *testing.B) {
		b.SetBytes(int64(size * agents))
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			ver := fmt.Sprintf("2.0.%d-%d", i, time.Now().UnixNano())
			if _, err := releases.Add(data, key, bin, ver, "linux", "amd64", time.Now()); err != nil {
				b.Fatal(err)
			}
			if _, err := mgr.StartRollout("pupils", ver, 100); err != nil {
				b.Fatal(err)
			}
			upgraded.Add(agents)
			b.StartTimer()
			env.srv.PushUpgrades("pupils")
			upgraded.Wait()
			if n := refusals.Load(); n > 0 {
				b.Fatalf("%d agents refused the release", n)
			}
		}
	})
	b.Run("rules-bundle-baseline", func(b *testing.B) {
		b.SetBytes(int64(size * agents))
		for i := 0; i < b.N; i++ {
			b.StopTimer()
			files := map[string][]byte{"bench.bin": bytes.Clone(payload)}
			files["bench.bin"][0] = byte(i)
			rules.mu.Lock()
			rules.b = &vigilv1.RulesBundle{Version: fmt.Sprint(i), Hash: fmt.Sprintf("sha256:%d-%d", i, time.Now().UnixNano()), Files: files}
			rules.mu.Unlock()
			bundled.Add(agents)
			b.StartTimer()
			env.srv.PushRules("pupils")
			bundled.Wait()
		}
	})
}
