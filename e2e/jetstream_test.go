package e2e

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestJetStreamIngestKill: a collector serving with --ingest jetstream
// acknowledges an agent's batches once its embedded JetStream has fsynced
// them, and its storer drains them into Badger. It is killed -9 twice while
// the agent emits; in the end the store holds exactly the emitted set, none
// lost (an acknowledged batch was in the stream on disk, so the restarted
// storer finds it) and none duplicated (redelivered and resent batches meet
// the store's (device_id, seq) idempotency).
func TestJetStreamIngestKill(t *testing.T) {
	if testing.Short() {
		t.Skip("kill test is long")
	}
	seed := uint64(time.Now().UnixNano())
	t.Logf("seed %d", seed)
	rng := rand.New(rand.NewPCG(seed, 0))
	c := newCollector(t, "--ingest", "jetstream")
	a := enrollAgent(t, c, "pupils")
	a.start()

	const rounds, perRound = 10, 400
	killAt := map[int]bool{}
	for len(killAt) < 2 {
		killAt[1+rng.IntN(rounds-2)] = true
	}
	var acked []triggerResult
	for round := 0; round < rounds; round++ {
		killed := make(chan struct{})
		if killAt[round] {
			delay := time.Duration(rng.IntN(300)) * time.Millisecond
			go func() {
				defer close(killed)
				time.Sleep(delay) // a random moment in the round, not a wait for a condition
				t.Logf("round %d: kill -9 collector after %v", round, delay)
				c.p.kill()
			}()
		} else {
			close(killed)
		}
		r, err := a.trigger(perRound, "")
		if err != nil {
			t.Fatalf("round %d: %v", round, err)
		}
		acked = append(acked, r)
		<-killed
		if killAt[round] {
			c.start()
		}
	}
	if !strings.Contains(c.p.log.String(), "ingest through embedded JetStream") {
		t.Fatal("the collector did not say it ingests through JetStream")
	}
	if _, err := os.Stat(filepath.Join(c.data, "jetstream", "jetstream")); err != nil {
		t.Fatalf("no JetStream file store under the data dir: %v", err)
	}

	emitted := a.status().Spool.NextSeq - 1
	seen := storedExactly(t, c, a, emitted, acked, 120*time.Second)
	// A clean stop after the storer drained leaves nothing in the stream
	// to redeliver, and the next start serves again.
	if err := c.p.stop(); err != nil {
		t.Fatal(err)
	}
	t.Logf("emitted %d in %d triggers, stored %d, none lost or duplicated", emitted, len(acked), len(seen))
}
