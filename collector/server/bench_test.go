package server

import (
	"encoding/binary"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"google.golang.org/protobuf/proto"
	"google.golang.org/protobuf/types/known/structpb"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

const (
	benchClients = 100
	benchBatch   = 50
)

// BenchmarkIngest compares the whole ingest path (100 agents, each its own
// mTLS connection and Stream, window 1) with the same records written by
// 100 goroutines straight into Badger. b.N is the total number of findings.
//
//	go test -run=^$ -bench=BenchmarkIngest -benchtime=20000x -count=3 ./collector/server/
func BenchmarkIngest(b *testing.B) {
	b.Run("grpc100", benchGRPC)
	b.Run("rawbadger", benchRawBadger)
}

var benchChecks = []struct{ check, rule, category, process, msg string }{
	{"browser-history", "filter-evasion", "evasion", "chrome.exe", "Search for ways around the web filter"},
	{"keystroke-keywords", "self-harm-language", "wellbeing", "winword.exe", "Typed phrase matching the self-harm word list"},
	{"process-list", "proxy-app", "evasion", "psiphon3.exe", "Known proxy application started"},
	{"screen-text", "bullying-language", "bullying", "teams.exe", "Message text matches the bullying word list"},
}

// benchFinding is a realistic finding of about 300 bytes once the
// collector has stamped device id and group on it.
func benchFinding(client int, seq uint64) *vigilv1.Finding {
	c := benchChecks[int(seq)%len(benchChecks)]
	details, _ := structpb.NewStruct(map[string]any{
		"process": c.process,
		"window":  fmt.Sprintf("%s - document %d", c.process, seq),
		"url":     fmt.Sprintf("https://example.org/search?q=term%d&c=%d", seq, client),
		"matched": "word list entry",
	})
	return &vigilv1.Finding{
		Seq:         seq,
		ObservedAt:  timestamppb.New(baseTime.Add(time.Duration(seq)*time.Second + time.Duration(client)*time.Millisecond)),
		User:        fmt.Sprintf("pupil.%04d", client),
		Check:       c.check,
		RuleId:      c.rule,
		RuleVersion: 2,
		Severity:    vigilv1.Severity_SEVERITY_MEDIUM,
		Category:    c.category,
		Message:     c.msg,
		Details:     details,
		RulesHash:   "3f1c9a7e5b2d",
	}
}

// benchBatches splits b.N findings over the clients: client c's batches.
func benchBatches(n, client int) [][]*vigilv1.Finding {
	count := n / benchClients
	if client < n%benchClients {
		count++
	}
	var out [][]*vigilv1.Finding
	for seq := 1; seq <= count; seq += benchBatch {
		var batch []*vigilv1.Finding
		for s := seq; s < seq+benchBatch && s <= count; s++ {
			batch = append(batch, benchFinding(client, uint64(s)))
		}
		out = append(out, batch)
	}
	return out
}

func benchGRPC(b *testing.B) {
	e := newEnv(b, Config{}, store.Options{})
	devs := make([]*device, benchClients)
	streams := make([]*agentStream, benchClients)
	work := make([][][]*vigilv1.Finding, benchClients)
	for i := range devs {
		devs[i] = e.enrollDevice(b)
		streams[i] = devs[i].mustStream(b, "bench")
		work[i] = benchBatches(b.N, i)
	}
	if b.N >= benchClients {
		f := proto.Clone(work[0][0][0]).(*vigilv1.Finding)
		f.DeviceId, f.Group = devs[0].id, devs[0].group
		b.Logf("finding size %d bytes", proto.Size(f))
	}
	var stored atomic.Int64
	var wg sync.WaitGroup
	b.ResetTimer()
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
				stored.Add(int64(ack.Stored))
			}
		}(i)
	}
	wg.Wait()
	b.StopTimer()
	if int(stored.Load()) != b.N {
		b.Fatalf("%d findings stored, want %d", stored.Load(), b.N)
	}
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "findings/s")
}

// Key layout of collector/store (docs/storage.md): two entries per finding.
func rawFindingKey(device string, seq uint64) []byte {
	k := append([]byte("f/d/"), device...)
	return binary.BigEndian.AppendUint64(k, seq)
}

func rawTimeKey(f *vigilv1.Finding) []byte {
	k := binary.BigEndian.AppendUint64([]byte("f/t/"), uint64(f.GetObservedAt().AsTime().UnixNano()))
	k = append(k, f.DeviceId...)
	return binary.BigEndian.AppendUint64(k, f.Seq)
}

func benchRawBadger(b *testing.B) {
	// The options store.Open uses for the on-disk store.
	db, err := badger.Open(badger.DefaultOptions(b.TempDir()).WithSyncWrites(true).
		WithLogger(nil).WithNumVersionsToKeep(1).WithValueThreshold(4 << 10))
	if err != nil {
		b.Fatal(err)
	}
	defer db.Close()
	work := make([][][]*vigilv1.Finding, benchClients)
	for i := range work {
		work[i] = benchBatches(b.N, i)
		dev := fmt.Sprintf("bench%021d", i)
		for _, batch := range work[i] {
			for _, f := range batch {
				f.DeviceId, f.Group = dev, "pupils"
			}
		}
	}
	var wg sync.WaitGroup
	b.ResetTimer()
	for i := range work {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			for _, batch := range work[i] {
				err := db.Update(func(txn *badger.Txn) error {
					for _, f := range batch {
						val, err := proto.Marshal(f)
						if err != nil {
							return err
						}
						if err := txn.SetEntry(badger.NewEntry(rawFindingKey(f.DeviceId, f.Seq), val)); err != nil {
							return err
						}
						if err := txn.SetEntry(badger.NewEntry(rawTimeKey(f), nil)); err != nil {
							return err
						}
					}
					return nil
				})
				if err != nil {
					b.Errorf("client %d: %v", i, err)
					return
				}
			}
		}(i)
	}
	wg.Wait()
	b.StopTimer()
	b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "findings/s")
}
