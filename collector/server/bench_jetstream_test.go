package server

import (
	"context"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/bus"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// BenchmarkIngestJetStream compares the whole ingest path (100 agents, each
// its own mTLS connection and Stream, batches of 50, window 1) committing
// straight into Badger (direct) with the same path publishing to an embedded
// JetStream with SyncAlways and a storer draining it into the same kind of
// store (jetstream). Both run back to back in every iteration and the ratio
// is reported per iteration, because this shared machine's load swings more
// between consecutive runs than the difference measured. jetstream's clock
// stops only once the store holds every finding (end to end); its acked/s is
// how fast agents were acknowledged. b.N is the findings per path.
//
//	go test -run=^$ -bench=BenchmarkIngestJetStream -benchtime=50000x -count=5 ./collector/server/
func BenchmarkIngestJetStream(b *testing.B) {
	b.StopTimer() // both paths time their own send loops
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	bs, err := bus.Start(ctx, bus.Config{Dir: b.TempDir(), Logger: quietLog})
	if err != nil {
		b.Fatal(err)
	}
	b.Cleanup(bs.Close)
	direct, _ := benchStreams(b, nil)
	js, jsAck := benchStreams(b, bs)
	n := float64(b.N)
	b.ReportMetric(n/direct.Seconds(), "direct-findings/s")
	b.ReportMetric(n/js.Seconds(), "js-findings/s")
	b.ReportMetric(n/jsAck.Seconds(), "js-acked/s")
	b.ReportMetric(direct.Seconds()/js.Seconds(), "ratio")
	b.ReportMetric(0, "ns/op")
}

// benchStreams runs benchClients agents sending b.N findings to a server
// whose findings go to the store (bs nil) or through bs; it returns the time
// until all were stored and until all were acknowledged.
func benchStreams(b *testing.B, bs *bus.Bus) (stored, acked time.Duration) {
	cfg := Config{}
	if bs != nil {
		cfg.Findings = &bus.Publisher{JS: bs.JetStream()}
	}
	e := newEnv(b, cfg, store.Options{})
	var committed atomic.Int64
	if bs != nil {
		ctx, cancel := context.WithCancel(context.Background())
		s, err := bus.NewStorer(ctx, bs.JetStream(), countCommits{e.st, &committed}, bus.StorerConfig{Logger: quietLog,
			Records: func(id string) (string, bool) { d, ok := e.st.GetDevice(id); return d.School, ok }})
		if err != nil {
			b.Fatal(err)
		}
		done := make(chan struct{})
		go func() { s.Run(ctx); close(done) }()
		b.Cleanup(func() { cancel(); <-done })
	}
	streams := make([]*agentStream, benchClients)
	work := make([][][]*vigilv1.Finding, benchClients)
	for i := range streams {
		streams[i] = e.enrollDevice(b).mustStream(b, "bench")
		work[i] = benchBatches(b.N, i)
	}
	var ackedN atomic.Int64
	var wg sync.WaitGroup
	start := time.Now()
	for i := range streams {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for j, batch := range work[i] {
				ack, err := streams[i].sendBatch(uint64(j+1), batch)
				if err != nil {
					b.Errorf("client %d batch %d: %v", i, j+1, err)
					return
				}
				ackedN.Add(int64(ack.Stored))
			}
		}(i)
	}
	wg.Wait()
	acked = time.Since(start)
	if int(ackedN.Load()) != b.N {
		b.Fatalf("%d findings acknowledged, want %d", ackedN.Load(), b.N)
	}
	if bs == nil {
		return acked, acked
	}
	deadline := time.Now().Add(5 * time.Minute)
	for committed.Load() < int64(b.N) {
		if time.Now().After(deadline) {
			b.Fatalf("storer committed %d of %d findings in 5 minutes", committed.Load(), b.N)
		}
		time.Sleep(time.Millisecond)
	}
	return time.Since(start), acked
}

// countCommits counts the findings the storer got stored.
type countCommits struct {
	st *store.Store
	n  *atomic.Int64
}

func (c countCommits) CommitFindings(ctx context.Context, fs []*vigilv1.Finding) (int, int, error) {
	s, d, err := c.st.CommitFindings(ctx, fs)
	if err == nil {
		c.n.Add(int64(s))
	}
	return s, d, err
}
