package store

import (
	"bufio"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// BenchmarkIngestRSS measures the collector store's resident memory under
// heavy ingest from 20 devices (findings of ~300 bytes, one in 200 with a
// 64 KiB screenshot, encrypted store as `serve` runs it), then a full read
// of every device's findings, with Badger's own defaults against the
// school-server budget (DefaultMemory). Each runs in a fresh child process
// so one cannot inherit the other's heap; RSS is the kernel's VmHWM (peak)
// and VmRSS (at the end).
//
//	go test -run=^$ -bench=BenchmarkIngestRSS -benchtime=1x ./collector/store/
//	VIGIL_RSS_FINDINGS=1000000 go test -run=^$ -bench=BenchmarkIngestRSS -benchtime=1x ./collector/store/
func BenchmarkIngestRSS(b *testing.B) {
	n := os.Getenv("VIGIL_RSS_FINDINGS")
	if n == "" {
		n = "200000"
	}
	for _, cfg := range []string{"badger-defaults", "school"} {
		b.Run(cfg, func(b *testing.B) {
			for i := 0; i < b.N; i++ {
				p, end, anon, file, peakAnon := rssChild(b, cfg, n)
				b.ReportMetric(peakAnon, "peak-anon-MB")
				b.ReportMetric(p, "peak-RSS-MB")
				b.ReportMetric(end, "end-RSS-MB")
				// Anonymous memory is what the process really holds; file
				// pages are Badger's memory-mapped tables and value log,
				// which the kernel reclaims under pressure.
				b.ReportMetric(anon, "end-anon-MB")
				b.ReportMetric(file, "end-file-MB")
			}
		})
	}
}

func rssChild(b *testing.B, cfg, n string) (peakMB, endMB, anonMB, fileMB, peakAnonMB float64) {
	cmd := exec.Command(os.Args[0], "-test.run=^TestRSSChild$", "-test.v")
	cmd.Env = append(os.Environ(), "VIGIL_RSS_CHILD="+cfg, "VIGIL_RSS_FINDINGS="+n, "VIGIL_RSS_DIR="+b.TempDir())
	out, err := cmd.CombinedOutput()
	if err != nil {
		b.Fatalf("child %s: %v\n%s", cfg, err, out)
	}
	sc := bufio.NewScanner(strings.NewReader(string(out)))
	for sc.Scan() {
		var p, e, a, f, pa float64
		if _, err := fmt.Sscanf(strings.TrimSpace(sc.Text()), "RSS peak=%f end=%f anon=%f file=%f peakanon=%f", &p, &e, &a, &f, &pa); err == nil {
			return p, e, a, f, pa
		}
	}
	b.Fatalf("child %s printed no RSS line:\n%s", cfg, out)
	return 0, 0, 0, 0, 0
}

// TestRSSChild is BenchmarkIngestRSS's child process; it does nothing
// unless started by it.
func TestRSSChild(t *testing.T) {
	cfg := os.Getenv("VIGIL_RSS_CHILD")
	if cfg == "" {
		t.Skip("run by BenchmarkIngestRSS")
	}
	total, _ := strconv.Atoi(os.Getenv("VIGIL_RSS_FINDINGS"))
	mem := Memory{}
	if cfg == "badger-defaults" {
		// What Open used before: Badger's defaults, plus the 32 MiB index
		// cache it set for encrypted stores.
		mem = BadgerDefaults()
		mem.IndexCacheSize = 32 << 20
	}
	key := make([]byte, 32)
	rand.Read(key)
	s, err := Open(os.Getenv("VIGIL_RSS_DIR"), Options{EncryptionKey: key, Memory: mem, QueueLen: 4096,
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	const devices, batch = 20, 50
	shot := make([]byte, 64<<10)
	rand.Read(shot)
	details, _ := structpb.NewStruct(map[string]any{"process": "chrome.exe", "window": "Search - how to get around the filter",
		"url": "https://example.org/search?q=term&c=1", "matched": "word list entry"})
	// The kernel keeps no high-water mark of anonymous memory: sample it.
	var peakAnon float64
	sampled := make(chan struct{})
	stopSample := make(chan struct{})
	go func() {
		defer close(sampled)
		tk := time.NewTicker(50 * time.Millisecond)
		defer tk.Stop()
		for {
			peakAnon = max(peakAnon, procStatusMB("RssAnon:"))
			select {
			case <-stopSample:
				return
			case <-tk.C:
			}
		}
	}()
	var wg sync.WaitGroup
	for d := 0; d < devices; d++ {
		wg.Add(1)
		go func(d int) {
			defer wg.Done()
			seq := uint64(0)
			for seq < uint64(total/devices) {
				var fs []*vigilv1.Finding
				for i := 0; i < batch; i++ {
					seq++
					f := testFinding(devID(d), seq, "evasion", time.Now())
					f.Details, f.User, f.Message = details, fmt.Sprintf("pupil.%04d", d), "Search for ways around the web filter"
					if seq%200 == 0 {
						f.Check, f.ScreenMatch = "screen", &vigilv1.ScreenMatch{Term: "term"}
						id := fmt.Sprintf("shot-%d", seq)
						f.Evidence = []*vigilv1.EvidenceRef{{Id: id, MediaType: "image/png", Sha256: sha256Hex(shot), Size: int64(len(shot))}}
						f.EvidenceData = []*vigilv1.EvidenceBlob{{Id: id, Data: shot}}
					}
					fs = append(fs, f)
				}
				for {
					_, _, err := s.CommitFindings(context.Background(), fs)
					if errors.Is(err, ErrOverloaded) {
						time.Sleep(time.Millisecond)
						continue
					}
					if err != nil {
						t.Error(err)
						return
					}
					break
				}
			}
		}(d)
	}
	wg.Wait()
	// The console reads it all back (block and index caches fill).
	read := 0
	for d := 0; d < devices; d++ {
		s.ListFindings(context.Background(), Query{Device: devID(d)}, func(*vigilv1.Finding) bool { read++; return true })
	}
	if read < total*9/10 {
		t.Fatalf("read back %d of %d", read, total)
	}
	close(stopSample)
	<-sampled
	runtime.GC()
	peak, end := procStatusMB("VmHWM:"), procStatusMB("VmRSS:")
	anon, file := procStatusMB("RssAnon:"), procStatusMB("RssFile:")
	s.Close()
	fmt.Printf("RSS peak=%.1f end=%.1f anon=%.1f file=%.1f peakanon=%.1f\n", peak, end, anon, file, peakAnon)
}

func procStatusMB(field string) float64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if strings.HasPrefix(l, field) {
			kb, _ := strconv.ParseFloat(strings.Fields(l)[1], 64)
			return kb / 1024
		}
	}
	return 0
}
