package server

import (
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/backoff"
)

// TestBackpressure floods a collector whose commit queue holds one batch:
// some streams must be told RESOURCE_EXHAUSTED with the configured retry
// delay, and every finding that was acknowledged must be in the store.
func TestBackpressure(t *testing.T) {
	const (
		nDevices   = 40
		nBatches   = 25
		batchSize  = 50
		retryAfter = 1234 * time.Millisecond
	)
	e := newEnv(t, Config{RetryAfter: retryAfter}, store.Options{QueueLen: 1})
	devs := make([]*device, nDevices)
	for i := range devs {
		devs[i] = e.enrollDevice(t)
	}
	streams := make([]*agentStream, nDevices)
	for i, d := range devs {
		streams[i] = d.mustStream(t, "flood")
	}

	type outcome struct {
		acked     []uint64 // seqs acknowledged
		failedAt  int      // batch that got the error, 0 if none
		err       error
		lastAcked int
	}
	results := make([]outcome, nDevices)
	var wg sync.WaitGroup
	start := make(chan struct{})
	for i := range devs {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			<-start
			r := &results[i]
			for b := 1; b <= nBatches; b++ {
				from := uint64((b-1)*batchSize + 1)
				ack, err := streams[i].sendBatch(uint64(b), seqRange(from, from+batchSize-1))
				if err != nil {
					r.failedAt, r.err = b, err
					return
				}
				if int(ack.Stored+ack.Duplicates) != batchSize {
					r.err = errAck(ack)
					return
				}
				for s := from; s < from+batchSize; s++ {
					r.acked = append(r.acked, s)
				}
				r.lastAcked = b
			}
		}(i)
	}
	close(start)
	wg.Wait()

	exhausted := 0
	for i, r := range results {
		if r.err == nil {
			continue
		}
		if codeOf(r.err) != codes.ResourceExhausted {
			t.Errorf("device %d: %v, want only RESOURCE_EXHAUSTED", i, r.err)
			continue
		}
		exhausted++
		d, ok := backoff.RetryDelay(r.err)
		if !ok || d != retryAfter {
			t.Errorf("device %d: RetryDelay = %v, %v; want %v (Config.RetryAfter)", i, d, ok, retryAfter)
		}
	}
	if exhausted == 0 {
		t.Fatalf("%d streams flooding a queue of 1: nobody was told RESOURCE_EXHAUSTED", nDevices)
	}
	t.Logf("%d of %d streams got RESOURCE_EXHAUSTED", exhausted, nDevices)

	for i, r := range results {
		got := storedFindings(t, e.st, devs[i].id)
		for _, s := range r.acked {
			if got[s] == nil {
				t.Fatalf("device %d: acknowledged seq %d is not in the store", i, s)
			}
		}
	}

	// Once the flood is over, a refused agent reconnects and resends the
	// batch it was refused; nothing is lost or doubled.
	for i, r := range results {
		if r.err == nil {
			continue
		}
		as := devs[i].mustStream(t, "flood-retry")
		from := uint64((r.failedAt-1)*batchSize + 1)
		var err error
		// Until accepted, however long a loaded machine keeps the
		// collector busy (was 20 tries 20 ms apart).
		for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); {
			if _, err = as.sendBatch(uint64(r.failedAt), seqRange(from, from+batchSize-1)); err == nil {
				break
			}
			if codeOf(err) != codes.ResourceExhausted {
				t.Fatalf("device %d resend: %v", i, err)
			}
			time.Sleep(20 * time.Millisecond)
			as = devs[i].mustStream(t, "flood-retry")
		}
		if err != nil {
			t.Fatalf("device %d resend never accepted: %v", i, err)
		}
		if n := len(storedFindings(t, e.st, devs[i].id)); n != (r.lastAcked+1)*batchSize {
			t.Errorf("device %d: %d findings stored after the resend, want %d", i, n, (r.lastAcked+1)*batchSize)
		}
		break // one is enough to show recovery
	}
}
