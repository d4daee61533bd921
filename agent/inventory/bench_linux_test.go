package inventory

import (
	"context"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	"github.com/vigil-safeguarding/vigil/agent/checks/all"
	"github.com/vigil-safeguarding/vigil/agent/engine"
	"github.com/vigil-safeguarding/vigil/agent/spool"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func cpuNow() time.Duration {
	var ru syscall.Rusage
	syscall.Getrusage(syscall.RUSAGE_SELF, &ru)
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// BenchmarkAuditDeviceCost is the cost of answering one audit on this
// device (CPU time of the collection, bytes of the answer message the agent
// sends, before TLS), against a selftest request in the same run: the
// engine spools one selftest finding and answers with its result, and the
// finding is sent in a batch of its own.
func BenchmarkAuditDeviceCost(b *testing.B) {
	dir := b.TempDir()
	sp, err := spool.Open(filepath.Join(dir, "spool.db"), spool.Options{})
	if err != nil {
		b.Fatal(err)
	}
	defer sp.Close()
	eng, err := engine.New(engine.Config{DeviceID: "dev", Group: "staff", Spool: sp, PosturePath: filepath.Join(dir, "posture.json"),
		Checks: all.New(all.Deps{}).Registry})
	if err != nil {
		b.Fatal(err)
	}
	ctx := context.Background()
	var selfCPU, auditCPU time.Duration
	var selfBytes, auditBytes int
	c := &Collector{Compliance: eng.Compliance}
	b.ResetTimer()
	for range b.N {
		t0 := cpuNow()
		first, last, nonce, err := eng.TriggerTest(ctx, 1, "collector", "")
		if err != nil {
			b.Fatal(err)
		}
		recs, err := sp.ReadAfter(first-1, 1, 1<<20)
		if err != nil || len(recs) != 1 {
			b.Fatal(err)
		}
		f := &vigilv1.Finding{}
		proto.Unmarshal(recs[0].Payload, f)
		f.Seq = recs[0].Seq
		res := &vigilv1.RequestResult{RequestId: "0123456789abcdef", Ok: true}
		batch := &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Findings{Findings: &vigilv1.FindingBatch{BatchId: 1, Findings: []*vigilv1.Finding{f}}}}
		answer := &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Result{Result: res}}
		bs, _ := proto.Marshal(batch)
		as, _ := proto.Marshal(answer)
		sp.Delete([]uint64{first})
		selfCPU += cpuNow() - t0
		selfBytes += len(bs) + len(as)
		_, _ = last, nonce

		t0 = cpuNow()
		inv, err := c.Collect(ctx)
		if err != nil {
			b.Fatal(err)
		}
		ab, _ := proto.Marshal(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Result{Result: &vigilv1.RequestResult{RequestId: "0123456789abcdef", Ok: true, Inventory: inv}}})
		auditCPU += cpuNow() - t0
		auditBytes += len(ab)
	}
	n := float64(b.N)
	b.ReportMetric(float64(auditCPU.Microseconds())/n/1000, "audit-cpu-ms/op")
	b.ReportMetric(float64(selfCPU.Microseconds())/n/1000, "selftest-cpu-ms/op")
	b.ReportMetric(float64(auditCPU)/float64(selfCPU), "cpu-audit/selftest")
	b.ReportMetric(float64(auditBytes)/n/1024, "audit-KiB/op")
	b.ReportMetric(float64(selfBytes)/n, "selftest-B/op")
	b.ReportMetric(float64(auditBytes)/float64(selfBytes), "bytes-audit/selftest")
}
