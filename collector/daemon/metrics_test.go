package daemon_test

import (
	"crypto/sha256"
	"encoding/hex"
	"net/http"
	"strings"
	"testing"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"

	"github.com/vigil-safeguarding/vigil/collector/daemon"
	"github.com/vigil-safeguarding/vigil/internal/identity"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

type scrape map[string]*dto.MetricFamily

func (c *collector) scrape(t *testing.T, header ...string) scrape {
	t.Helper()
	code, body, err := c.get("/metrics", 20*time.Second, header...)
	if err != nil || code != http.StatusOK {
		t.Fatalf("GET /metrics: %d %v\n%s", code, err, body)
	}
	parser := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := parser.TextToMetricFamilies(strings.NewReader(body))
	if err != nil {
		t.Fatalf("parse /metrics: %v\n%s", err, body)
	}
	return fams
}

// value of the series of name whose labels include want (name=value pairs);
// for a histogram, its sample count. ok is false when there is none.
func (s scrape) value(name string, want ...string) (float64, bool) {
	f := s[name]
	if f == nil {
		return 0, false
	}
next:
	for _, m := range f.Metric {
		labels := map[string]string{}
		for _, l := range m.Label {
			labels[l.GetName()] = l.GetValue()
		}
		for i := 0; i+1 < len(want); i += 2 {
			if labels[want[i]] != want[i+1] {
				continue next
			}
		}
		switch {
		case m.Counter != nil:
			return m.Counter.GetValue(), true
		case m.Gauge != nil:
			return m.Gauge.GetValue(), true
		case m.Histogram != nil:
			return float64(m.Histogram.GetSampleCount()), true
		}
	}
	return 0, false
}

func (s scrape) want(t *testing.T, name string, want float64, labels ...string) {
	t.Helper()
	v, ok := s.value(name, labels...)
	if !ok || v != want {
		t.Errorf("%s%v = %v (present %v), want %v", name, labels, v, ok, want)
	}
}

// TestMetricsAfterAgentTraffic is issue 8 item 12: /metrics used to answer
// the console's index.html. After real enrollments, batches, a heartbeat
// and a refused stream it reports each with the right value, and no device
// ID, host name or user name appears in it.
func TestMetricsAfterAgentTraffic(t *testing.T) {
	c := startCollector(t, daemon.Config{})
	a := c.mustEnroll(t, "year-7", "host-metrics-1")
	unknown := identity.Token{ID: "0123456789abcdef", Secret: make([]byte, 24), CAFingerprint: c.caFP}
	if _, err := c.enroll(t, newKey(t), unknown.String(), "host-x"); err == nil {
		t.Fatal("bogus token enrolled")
	}
	s, err := a.openStream(t, "i1")
	if err != nil {
		t.Fatal(err)
	}
	blob := []byte("age-encrypted screenshot bytes")
	sum := sha256.Sum256(blob)
	withEvidence := findings(1, 10)
	withEvidence[0].Evidence = []*vigilv1.EvidenceRef{{Id: "ev-1", MediaType: "image/png", Sha256: hex.EncodeToString(sum[:]), Size: int64(len(blob))}}
	withEvidence[0].EvidenceData = []*vigilv1.EvidenceBlob{{Id: "ev-1", Data: blob}}
	for i, fs := range [][]*vigilv1.Finding{withEvidence, findings(11, 20), findings(21, 30)} {
		if ack, err := s.batch(uint64(i+1), fs); err != nil || ack.Stored != 10 {
			t.Fatalf("batch %d: ack %v, err %v", i+1, ack, err)
		}
	}
	if ack, err := s.batch(4, findings(21, 25)); err != nil || ack.Duplicates != 5 {
		t.Fatalf("resend: ack %v, err %v", ack, err)
	}
	hb := &vigilv1.Heartbeat{AgentVersion: "test", RulesHash: "r0", SpoolDepth: 7, SpoolBytes: 7000, DroppedTotal: 3,
		RejectedTotal: 2, SpoolWriteFailures: 1, LastError: "spool write failed: no space left on device"}
	if err := s.s.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: hb}}); err != nil {
		t.Fatal(err)
	}
	// A second device whose first message is not hello: refused.
	b := c.mustEnroll(t, "year-7", "host-metrics-2")
	if _, err := b.openStreamRaw(t, &vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: hb}}); err == nil {
		t.Fatal("stream without hello was accepted")
	}

	var m scrape
	waitFor(t, "the heartbeat in /metrics, enrollment connections released", 30*time.Second, func() bool {
		m = c.scrape(t)
		v, _ := m.value("vigil_agent_spool_findings", "group", "year-7")
		u, _ := m.value("vigil_open_connections", "listener", "grpc", "state", "unauthenticated")
		return v == 7 && u == 0
	})
	m.want(t, "vigil_enrollments_total", 2, "result", "ok")
	m.want(t, "vigil_enrollments_total", 1, "result", "refused", "reason", "token_unknown")
	m.want(t, "vigil_ingest_batches_total", 4, "result", "acked")
	m.want(t, "vigil_ingest_findings_total", 30, "outcome", "stored")
	m.want(t, "vigil_ingest_findings_total", 5, "outcome", "duplicate")
	m.want(t, "vigil_ingest_ack_latency_seconds", 4)
	m.want(t, "vigil_evidence_bytes_total", float64(len(blob)))
	m.want(t, "vigil_heartbeats_total", 2) // one on a stream refused for not starting with hello
	m.want(t, "vigil_refused_messages_total", 1, "reason", "invalid_argument")
	m.want(t, "vigil_connected_agents", 1, "group", "year-7")
	m.want(t, "vigil_devices", 2, "group", "year-7", "state", "active")
	m.want(t, "vigil_agent_spool_bytes", 7000, "group", "year-7")
	m.want(t, "vigil_agent_dropped_findings_total", 3, "group", "year-7")
	m.want(t, "vigil_agent_rejected_findings_total", 2, "group", "year-7")
	m.want(t, "vigil_agent_spool_write_failures_total", 1, "group", "year-7")
	m.want(t, "vigil_agents_with_error", 1, "group", "year-7")
	m.want(t, "vigil_store_commit_queue_capacity", 1024)
	m.want(t, "vigil_store_disk_stats_error", 0)
	m.want(t, "vigil_open_connections", 2, "listener", "grpc", "state", "authenticated")
	if v, _ := m.value("vigil_store_disk_free_bytes"); v <= 0 {
		t.Errorf("vigil_store_disk_free_bytes = %v", v)
	}
	if v, _ := m.value("vigil_store_lsm_bytes"); v < 0 {
		t.Errorf("vigil_store_lsm_bytes = %v", v)
	}
	if v, _ := m.value("vigil_connection_limit", "listener", "grpc"); v < 100 {
		t.Errorf("vigil_connection_limit{grpc} = %v", v)
	}
	if v, _ := m.value("process_open_fds"); v <= 0 {
		t.Errorf("process_open_fds = %v", v)
	}
	if h := m["vigil_ingest_ack_latency_seconds"].Metric[0].Histogram; h.GetSampleSum() <= 0 || h.GetSampleSum() > 120 {
		t.Errorf("ack latency sum %v s for 4 batches", h.GetSampleSum())
	}

	_, body, _ := c.get("/metrics", 20*time.Second)
	for _, personal := range []string{a.id, b.id, "host-metrics", "pc-host", "pupil", "no space left", "admin"} {
		if strings.Contains(body, personal) {
			t.Errorf("/metrics contains %q", personal)
		}
	}
}

// openStreamRaw opens a stream and sends first as its first message,
// returning the stream's end status.
func (a *agent) openStreamRaw(t *testing.T, first *vigilv1.AgentMessage) (*vigilv1.CollectorMessage, error) {
	t.Helper()
	s, err := vigilv1.NewCollectorClient(a.c.dial(t, &a.cert)).Stream(t.Context())
	if err != nil {
		return nil, err
	}
	if err := s.Send(first); err != nil {
		return nil, err
	}
	st := &stream{s: s, cancel: func() {}}
	return st.recv(30 * time.Second)
}

// TestMetricsBearerToken: with --metrics-token-file the endpoint needs it.
func TestMetricsBearerToken(t *testing.T) {
	c := startCollector(t, daemon.Config{MetricsToken: "s3cret-token"})
	for _, h := range [][]string{nil, {"Authorization", "Bearer wrong"}, {"Authorization", "s3cret-token"}} {
		code, body, err := c.get("/metrics", 20*time.Second, h...)
		if err != nil || code != http.StatusUnauthorized || strings.Contains(body, "vigil_") {
			t.Errorf("GET /metrics with %v: %d %v", h, code, err)
		}
	}
	c.scrape(t, "Authorization", "Bearer s3cret-token")
}
