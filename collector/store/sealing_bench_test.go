package store

import (
	"context"
	"crypto/rand"
	"fmt"
	"log/slog"
	"path/filepath"
	"sync"
	"testing"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// BenchmarkCommitSealed is the cost of sealing a school's findings under
// its data key: each iteration commits the same load (20 devices at once,
// batches of 50 findings of ~300 bytes, at-rest encryption on, as `serve`
// runs) into a fresh store twice, back to back, once for devices of the
// default school (not sealed) and once for devices of a school (sealed),
// so the ratio is measured on the same machine in the same minute.
//
//	go test ./collector/store/ -run '^$' -bench BenchmarkCommitSealed -benchtime=5x -count=3
func BenchmarkCommitSealed(b *testing.B) {
	const devices, batches, perBatch = 20, 5, 50
	run := func(school string) time.Duration {
		atRest := make([]byte, 32)
		rand.Read(atRest)
		keys, err := OpenDataKeys(filepath.Join(b.TempDir(), "keys"))
		if err != nil {
			b.Fatal(err)
		}
		s, err := Open(b.TempDir(), Options{EncryptionKey: atRest, DataKeys: keys, QueueLen: 4096, Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			b.Fatal(err)
		}
		defer s.Close()
		if school != "" {
			if _, err := s.AddSchool(School{ID: school, Name: school}); err != nil {
				b.Fatal(err)
			}
		}
		for d := range devices {
			if err := s.PutDevice(Device{DeviceID: devID(d), School: school}); err != nil {
				b.Fatal(err)
			}
		}
		start := time.Now()
		var wg sync.WaitGroup
		for d := range devices {
			wg.Add(1)
			go func() {
				defer wg.Done()
				seq := uint64(0)
				for range batches {
					fs := make([]*vigilv1.Finding, perBatch)
					for i := range fs {
						seq++
						fs[i] = testFinding(devID(d), seq, "software", time.Now())
						fs[i].Message = fmt.Sprintf("unapproved executable C:\\Users\\pupil%d\\Downloads\\game-%d.exe (sha256 %064d)", d, seq, seq)
					}
					for {
						_, err := s.Commit(context.Background(), fs)
						if err == ErrOverloaded {
							time.Sleep(time.Millisecond)
							continue
						}
						if err != nil {
							b.Error(err)
						}
						break
					}
				}
			}()
		}
		wg.Wait()
		return time.Since(start)
	}
	var plain, sealed time.Duration
	for range b.N {
		plain += run("")
		sealed += run("oak")
	}
	n := float64(b.N * devices * batches * perBatch)
	b.ReportMetric(n/plain.Seconds(), "plain-findings/s")
	b.ReportMetric(n/sealed.Seconds(), "sealed-findings/s")
	b.ReportMetric(plain.Seconds()/sealed.Seconds(), "sealed/plain")
}
