package bus

import (
	"context"
	"fmt"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nats.go/jetstream"
)

func freeLoopbackPort(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// startCluster starts three embedded nodes joined by loopback routes, each
// with a loopback client listener, the findings stream at R3.
func startCluster(t *testing.T) []*Bus {
	t.Helper()
	routes := []string{freeLoopbackPort(t), freeLoopbackPort(t), freeLoopbackPort(t)}
	nodes := make([]*Bus, 3)
	errs := make([]error, 3)
	var wg sync.WaitGroup
	for i := range nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// A stream needs a meta leader, elected only once a quorum of
			// the nodes is up: they start together.
			ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
			defer cancel()
			nodes[i], errs[i] = Start(ctx, Config{Dir: t.TempDir(), ServerName: fmt.Sprintf("n%d", i+1), ClientListen: "127.0.0.1:-1",
				Cluster: &Cluster{Name: "vigil-test", Listen: routes[i], Routes: routes}, Replicas: 3, Logger: testLogger()})
		}()
	}
	wg.Wait()
	for i, err := range errs {
		if err != nil {
			t.Fatalf("node %d: %v", i+1, err)
		}
		t.Cleanup(nodes[i].Close)
	}
	return nodes
}

// TestClusterNodeLostUnderLoad: publishers spread over a 3-node cluster
// keep publishing while the stream's leader is shut down; every batch they
// were acknowledged for is in the store afterwards, exactly once.
func TestClusterNodeLostUnderLoad(t *testing.T) {
	if testing.Short() {
		t.Skip("cluster test starts three servers")
	}
	nodes := startCluster(t)
	urls := ""
	for i, n := range nodes {
		if i > 0 {
			urls += ","
		}
		urls += n.ClientURL()
	}
	ctx := context.Background()
	stream, err := nodes[0].JetStream().Stream(ctx, StreamName)
	if err != nil {
		t.Fatal(err)
	}
	info, err := stream.Info(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if info.Config.Replicas != 3 || info.Cluster == nil {
		t.Fatalf("stream is not replicated: replicas %d cluster %+v", info.Config.Replicas, info.Cluster)
	}
	leader := -1
	for i := range nodes {
		if fmt.Sprintf("n%d", i+1) == info.Cluster.Leader {
			leader = i
		}
	}
	if leader < 0 {
		t.Fatalf("stream leader %q is none of the nodes", info.Cluster.Leader)
	}

	const publishers, batches, per = 6, 60, 10
	var mu sync.Mutex
	acked := map[string]bool{}
	retries := 0
	var wg sync.WaitGroup
	halfway := make(chan struct{}, publishers)
	for p := 0; p < publishers; p++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			nc, err := nats.Connect(urls, nats.MaxReconnects(-1), nats.ReconnectWait(100*time.Millisecond))
			if err != nil {
				t.Error(err)
				return
			}
			defer nc.Close()
			js, err := jetstream.New(nc)
			if err != nil {
				t.Error(err)
				return
			}
			pub := &Publisher{JS: js}
			dev := fmt.Sprintf("dev%02d", p)
			for k := 0; k < batches; k++ {
				if k == batches/3 {
					halfway <- struct{}{}
				}
				fs := batch(dev, 1+k*per, per)
				// An agent resends a batch it got no ack for, as here, with
				// the same seqs and so the same Nats-Msg-Id.
				deadline := time.Now().Add(2 * time.Minute)
				for {
					pctx, cancel := context.WithTimeout(ctx, 5*time.Second)
					_, _, err := pub.CommitFindings(pctx, fs)
					cancel()
					if err == nil {
						break
					}
					if time.Now().After(deadline) {
						t.Errorf("%s batch %d not acknowledged within 2 minutes: %v", dev, k, err)
						return
					}
					mu.Lock()
					retries++
					mu.Unlock()
					time.Sleep(100 * time.Millisecond)
				}
				mu.Lock()
				for _, f := range fs {
					acked[fmt.Sprintf("%s/%d", dev, f.Seq)] = true
				}
				mu.Unlock()
			}
		}()
	}
	for p := 0; p < publishers; p++ {
		<-halfway
	}
	t.Logf("shutting down the stream leader n%d under load", leader+1)
	nodes[leader].Close()
	wg.Wait()
	if t.Failed() {
		return
	}
	t.Logf("%d publishes retried during the failover", retries)
	if len(acked) != publishers*batches*per {
		t.Fatalf("%d findings acknowledged, want %d", len(acked), publishers*batches*per)
	}
	survivor := nodes[(leader+1)%3]
	st := openStore(t, t.TempDir())
	runStorer(t, survivor, st, StorerConfig{})
	var got map[string]int
	waitFor(t, "every acknowledged finding stored", 2*time.Minute, func() bool {
		got = stored(t, st)
		return len(got) >= len(acked)
	})
	for k := range acked {
		if got[k] != 1 {
			t.Fatalf("acknowledged finding %s stored %d times", k, got[k])
		}
	}
	if len(got) != len(acked) {
		t.Fatalf("store holds %d findings, %d were acknowledged (and every publish retried until acknowledged)", len(got), len(acked))
	}
}
