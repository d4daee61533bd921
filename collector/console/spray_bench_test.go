package console

import (
	"crypto/sha256"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// BenchmarkLoginSpray measures what a spray of sign-ins with made-up names
// does to other work in the collector process, the way it starved gRPC
// ingest (issue 8 item 5). The other work is a stand-in for ingest: one
// goroutine hashing 256 KiB (about a millisecond of CPU) in a loop; its
// latency is measured alone (the baseline) and then while 64 clients send
// sign-ins at the production bcrypt cost, each as soon as its last was
// answered but at most 4 a second (256/s in all: the clients run in
// this process, so unpaced they would measure their own HTTP loop, which a
// real attacker's machine pays for).
// Reported as ratios to the baseline of the same run, for the default pool
// ("pool") and for an unbounded one ("unbounded", 64 workers: what the
// console did before the pool).
//
//	go test -run='^$' -bench=BenchmarkLoginSpray -benchtime=1x ./collector/console/
//
// With -short (make bench-smoke) the windows are 300 ms and the cost 6.
func BenchmarkLoginSpray(b *testing.B) {
	cost, window := 12, 3*time.Second
	if testing.Short() {
		cost, window = 6, 300*time.Millisecond
	}
	old := auth.BcryptCost
	auth.BcryptCost = cost
	b.Cleanup(func() { auth.BcryptCost = old })
	for _, bc := range []struct {
		name           string
		workers, queue int
	}{{"pool", 0, 0}, {"unbounded", 64, 64}} {
		b.Run(bc.name, func(b *testing.B) {
			quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
			st, err := store.Open(filepath.Join(b.TempDir(), "badger"), store.Options{Logger: quiet})
			must(b, err)
			defer st.Close()
			srv, err := New(Config{Store: st, Logger: quiet, PasswordWorkers: bc.workers, PasswordQueue: bc.queue})
			must(b, err)
			hs := httptest.NewServer(srv.Handler())
			defer hs.Close()
			srv.auth.PrepareUnknownNameHash() // made once, outside the measurement

			for i := 0; i < b.N; i++ {
				base := refLatencies(window)
				var answered, shed atomic.Int64
				stop := make(chan struct{})
				var wg sync.WaitGroup
				for c := range 64 {
					wg.Go(func() {
						tr := &http.Transport{}
						defer tr.CloseIdleConnections()
						hc := &http.Client{Transport: tr}
						pace := time.NewTicker(250 * time.Millisecond)
						defer pace.Stop()
						for n := 0; ; n++ {
							select {
							case <-stop:
								return
							case <-pace.C:
							}
							body := fmt.Sprintf(`{"username":"spray%02d-%d","password":"guess"}`, c, n)
							resp, err := hc.Post(hs.URL+"/api/v1/session", "application/json", strings.NewReader(body))
							if err != nil {
								continue
							}
							io.Copy(io.Discard, resp.Body)
							resp.Body.Close()
							answered.Add(1)
							if resp.StatusCode == http.StatusTooManyRequests {
								shed.Add(1)
							}
						}
					})
				}
				time.Sleep(window / 10) // the spray is under way
				under := refLatencies(window)
				close(stop)
				wg.Wait()
				p := func(l []time.Duration, q int) float64 { return float64(l[len(l)*q/100]) / 1e6 }
				b.ReportMetric(p(base, 50), "base_p50_ms")
				b.ReportMetric(p(under, 50)/p(base, 50), "p50_x_base")
				b.ReportMetric(p(under, 99)/p(base, 99), "p99_x_base")
				b.ReportMetric(float64(len(under))/float64(len(base)), "throughput_x_base")
				b.ReportMetric(float64(answered.Load())/window.Seconds(), "signins/s")
				b.ReportMetric(float64(shed.Load())/float64(max(answered.Load(), 1)), "shed_fraction")
			}
		})
	}
}

// refLatencies runs the stand-in for ingest for window and returns the
// sorted latencies of its jobs.
func refLatencies(window time.Duration) []time.Duration {
	buf := make([]byte, 256<<10)
	var lat []time.Duration
	for end := time.Now().Add(window); time.Now().Before(end); {
		t := time.Now()
		sha256.Sum256(buf)
		lat = append(lat, time.Since(t))
	}
	slices.Sort(lat)
	return lat
}
