package audit

import (
	"context"
	"os"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/agent/inventory"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// BenchmarkFleetAudit audits a fleet of simulated agents: real mTLS
// clients in this process on loopback, each answering with this machine's
// real inventory (collected once; about 1,000 dpkg packages). Reported:
// seconds from request to the last answer recorded, against the same
// fleet answering a selftest request (the baseline: same path, tiny
// answer); the process's RSS before the audit (fleet connected) and its
// peak (VmHWM) — the process holds the simulated clients too. -short runs
// 20 agents; otherwise VIGIL_AUDIT_FLEET (default 1000).
func BenchmarkFleetAudit(b *testing.B) {
	n := 1000
	if v, err := strconv.Atoi(os.Getenv("VIGIL_AUDIT_FLEET")); err == nil && v > 0 {
		n = v
	}
	if testing.Short() {
		n = 20
	}
	inv, err := (&inventory.Collector{}).Collect(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	f := newFleet(b)
	agents := f.enroll(b, n, "fleet", func(int) *vigilv1.Inventory { return inv })
	for _, a := range agents {
		a.connect(b)
	}
	waitFor(b, "fleet connected", func() bool {
		for _, a := range agents {
			if !f.srv.Connected(a.id) {
				return false
			}
		}
		return true
	})
	rssBefore := procStatus(b, "VmRSS")
	b.ResetTimer()
	var auditSecs, baseSecs float64
	for range b.N {
		// Baseline: every agent answers one small request, 64 at a time
		// (the audit service's own bound).
		t0 := time.Now()
		sem := make(chan struct{}, 64)
		var wg sync.WaitGroup
		for _, a := range agents {
			wg.Add(1)
			sem <- struct{}{}
			go func() {
				defer wg.Done()
				defer func() { <-sem }()
				ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
				defer cancel()
				if _, err := f.srv.Request(ctx, a.id, "selftest", nil); err != nil {
					b.Error(err)
				}
			}()
		}
		wg.Wait()
		baseSecs += time.Since(t0).Seconds()

		t0 = time.Now()
		h, err := f.svc.Request(context.Background(), "", Scope{Kind: "all"}, Reader{Name: "bench"}, "fleet audit", time.Hour)
		if err != nil {
			b.Fatal(err)
		}
		deadline := time.Now().Add(10 * time.Minute)
		for {
			p, err := f.svc.Progress(h.ID, Reader{})
			if err != nil {
				b.Fatal(err)
			}
			if p.Done {
				break
			}
			if time.Now().After(deadline) {
				b.Fatalf("fleet audit not done in 10 min: %+v", p)
			}
			time.Sleep(50 * time.Millisecond)
		}
		auditSecs += time.Since(t0).Seconds()
	}
	b.StopTimer()
	b.ReportMetric(float64(n), "agents")
	b.ReportMetric(auditSecs/float64(b.N), "audit-s/op")
	b.ReportMetric(baseSecs/float64(b.N), "selftest-s/op")
	b.ReportMetric(auditSecs/baseSecs, "audit/selftest")
	b.ReportMetric(float64(rssBefore)/1024, "rss-before-MiB")
	b.ReportMetric(float64(procStatus(b, "VmHWM"))/1024, "rss-peak-MiB")
	var sent int64
	for _, a := range agents {
		sent += a.sent.Load()
	}
	b.ReportMetric(float64(sent)/float64(n)/float64(b.N)/1024, "answer-KiB/agent")
}

// procStatus reads a kB field of /proc/self/status.
func procStatus(tb testing.TB, field string) int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		tb.Skip("no /proc here")
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, field+":"); ok {
			n, _ := strconv.ParseInt(strings.TrimSuffix(strings.TrimSpace(v), " kB"), 10, 64)
			return n
		}
	}
	return 0
}
