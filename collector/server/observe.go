package server

import (
	"strings"
	"sync"
	"time"
	"unicode"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"

	"github.com/vigil-safeguarding/vigil/collector/metrics"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// observeStream measures a Collector.Stream from the outside: batches in,
// acks out (latency, counts, evidence bytes), heartbeats, and the status a
// refused stream ends with. It sits at the gRPC seam so the stream handler
// itself carries no instrumentation.
func (s *Server) observeStream(srv any, ss grpc.ServerStream, _ *grpc.StreamServerInfo, handler grpc.StreamHandler) error {
	m := s.cfg.Metrics
	if m == nil {
		return handler(srv, ss)
	}
	o := &observedStream{ServerStream: ss, m: m, now: s.cfg.Now, pending: map[uint64]batchSeen{}}
	err := handler(srv, o)
	if err != nil {
		code := status.Code(err)
		if code != codes.Canceled && code != codes.OK {
			m.RefusedMessage(codeLabel(code))
		}
	}
	o.mu.Lock()
	for range o.pending {
		m.BatchRefused()
	}
	o.mu.Unlock()
	return err
}

type batchSeen struct {
	at       time.Time
	evidence int64
}

type observedStream struct {
	grpc.ServerStream
	m   *metrics.Metrics
	now func() time.Time

	mu      sync.Mutex
	pending map[uint64]batchSeen
}

func (o *observedStream) RecvMsg(msg any) error {
	err := o.ServerStream.RecvMsg(msg)
	if err != nil {
		return err
	}
	am, ok := msg.(*vigilv1.AgentMessage)
	if !ok {
		return nil
	}
	switch {
	case am.GetFindings() != nil:
		var ev int64
		for _, f := range am.GetFindings().GetFindings() {
			for _, b := range f.GetEvidenceData() {
				ev += int64(len(b.GetData()))
			}
		}
		o.mu.Lock()
		o.pending[am.GetFindings().GetBatchId()] = batchSeen{at: o.now(), evidence: ev}
		o.mu.Unlock()
	case am.GetHeartbeat() != nil:
		o.m.Heartbeat()
	}
	return nil
}

func (o *observedStream) SendMsg(msg any) error {
	if cm, ok := msg.(*vigilv1.CollectorMessage); ok {
		if ack := cm.GetAck(); ack != nil {
			o.mu.Lock()
			seen, ok := o.pending[ack.GetBatchId()]
			delete(o.pending, ack.GetBatchId())
			o.mu.Unlock()
			if ok {
				o.m.Acked(int(ack.GetStored()), int(ack.GetDuplicates()), len(ack.GetRejected()), seen.evidence,
					o.now().Sub(seen.at).Seconds())
			}
		}
	}
	return o.ServerStream.SendMsg(msg)
}

// codeLabel is a gRPC code in snake case ("resource_exhausted").
func codeLabel(c codes.Code) string {
	var b strings.Builder
	for i, r := range c.String() {
		if unicode.IsUpper(r) {
			if i > 0 {
				b.WriteByte('_')
			}
			r = unicode.ToLower(r)
		}
		b.WriteRune(r)
	}
	return b.String()
}
