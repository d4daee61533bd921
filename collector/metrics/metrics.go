// Package metrics is the collector's Prometheus instrumentation: the
// counters the gRPC server, the listeners and the notifier bump, and the
// collectors that read store and fleet figures at scrape time. Everything
// is registered on a registry the daemon constructs and passes in; nothing
// is global.
//
// Labels never name a device or a person: the finest grain is the device
// group, which a technician chose and which has few values. docs/operations.md
// lists every series.
package metrics

import (
	"crypto/subtle"
	"net/http"
	"strings"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
)

// Metrics holds the event counters. A nil *Metrics is valid and records
// nothing, so packages can be used (and tested) without instrumentation.
type Metrics struct {
	reg *prometheus.Registry

	enrollments    *prometheus.CounterVec
	refusedMsgs    *prometheus.CounterVec
	refusedConns   *prometheus.CounterVec
	batches        *prometheus.CounterVec
	findings       *prometheus.CounterVec
	ackLatency     prometheus.Histogram
	evidenceBytes  prometheus.Counter
	heartbeats     prometheus.Counter
	notifyFailures *prometheus.CounterVec
	busRefused     *prometheus.CounterVec
}

// New registers the collector's metrics, plus the Go runtime and process
// collectors (open and maximum file descriptors matter here), on reg.
func New(reg *prometheus.Registry) *Metrics {
	m := &Metrics{
		reg: reg,
		enrollments: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_enrollments_total",
			Help: "Enrollment attempts by result (ok, refused) and reason (empty for ok).",
		}, []string{"result", "reason"}),
		refusedMsgs: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_refused_messages_total",
			Help: "Agent streams or batches the collector refused, by reason (the gRPC status it answered).",
		}, []string{"reason"}),
		refusedConns: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_refused_connections_total",
			Help: "Connections closed by the collector's connection limits, by listener and reason.",
		}, []string{"listener", "reason"}),
		batches: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ingest_batches_total",
			Help: "Finding batches received, by result (acked, refused).",
		}, []string{"result"}),
		findings: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_ingest_findings_total",
			Help: "Findings in acknowledged batches, by outcome (stored, duplicate, rejected).",
		}, []string{"outcome"}),
		ackLatency: prometheus.NewHistogram(prometheus.HistogramOpts{
			Name:    "vigil_ingest_ack_latency_seconds",
			Help:    "Time from receiving a finding batch to sending its acknowledgement (validation plus the synced group commit).",
			Buckets: []float64{.001, .0025, .005, .01, .025, .05, .1, .25, .5, 1, 2.5, 5, 10, 30},
		}),
		evidenceBytes: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_evidence_bytes_total",
			Help: "Bytes of (encrypted) evidence in finding batches the collector acknowledged.",
		}),
		heartbeats: prometheus.NewCounter(prometheus.CounterOpts{
			Name: "vigil_heartbeats_total",
			Help: "Heartbeats received from agents.",
		}),
		notifyFailures: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_notification_failures_total",
			Help: "Alert e-mails not sent, by reason (send, no_recipient, record).",
		}, []string{"reason"}),
		busRefused: prometheus.NewCounterVec(prometheus.CounterOpts{
			Name: "vigil_bus_refused_total",
			Help: "Messages from the NATS bus refused for good and never stored, by school consumed, kind (findings, events) and reason (wrong-school, unknown-device, subject-device-mismatch, undecodable).",
		}, []string{"school", "kind", "reason"}),
	}
	reg.MustRegister(m.enrollments, m.refusedMsgs, m.refusedConns, m.batches, m.findings, m.ackLatency,
		m.evidenceBytes, m.heartbeats, m.notifyFailures, m.busRefused,
		collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
	// Series that should read 0 before the first event, so alert rules see
	// a value rather than nothing.
	m.enrollments.WithLabelValues("ok", "")
	m.batches.WithLabelValues("acked")
	m.batches.WithLabelValues("refused")
	for _, o := range []string{"stored", "duplicate", "rejected"} {
		m.findings.WithLabelValues(o)
	}
	return m
}

// Register adds a scrape-time collector (store, fleet, listener figures).
func (m *Metrics) Register(c prometheus.Collector) error {
	if m == nil {
		return nil
	}
	return m.reg.Register(c)
}

// Enrollment counts one enrollment attempt; reason is empty for success.
func (m *Metrics) Enrollment(ok bool, reason string) {
	if m == nil {
		return
	}
	if ok {
		m.enrollments.WithLabelValues("ok", "").Inc()
		return
	}
	m.enrollments.WithLabelValues("refused", reason).Inc()
}

// RefusedMessage counts a refused stream or batch by reason.
func (m *Metrics) RefusedMessage(reason string) {
	if m == nil {
		return
	}
	m.refusedMsgs.WithLabelValues(reason).Inc()
}

// BusRefused counts a bus message refused for good (bus.Storer, device
// events): kind is "findings" or "events".
func (m *Metrics) BusRefused(school, kind, reason string) {
	if m == nil {
		return
	}
	m.busRefused.WithLabelValues(school, kind, reason).Inc()
}

// RefusedConnection counts a connection closed by a listener limit.
func (m *Metrics) RefusedConnection(listener, reason string) {
	if m == nil {
		return
	}
	m.refusedConns.WithLabelValues(listener, reason).Inc()
}

// Acked records an acknowledged batch.
func (m *Metrics) Acked(stored, dups, rejected int, evidenceBytes int64, latencySeconds float64) {
	if m == nil {
		return
	}
	m.batches.WithLabelValues("acked").Inc()
	m.findings.WithLabelValues("stored").Add(float64(stored))
	m.findings.WithLabelValues("duplicate").Add(float64(dups))
	m.findings.WithLabelValues("rejected").Add(float64(rejected))
	m.evidenceBytes.Add(float64(evidenceBytes))
	m.ackLatency.Observe(latencySeconds)
}

// BatchRefused records a batch that ended its stream instead of an ack.
func (m *Metrics) BatchRefused() {
	if m == nil {
		return
	}
	m.batches.WithLabelValues("refused").Inc()
}

// Heartbeat counts a heartbeat.
func (m *Metrics) Heartbeat() {
	if m == nil {
		return
	}
	m.heartbeats.Inc()
}

// NotificationFailed counts an alert e-mail that was not sent.
func (m *Metrics) NotificationFailed(reason string) {
	if m == nil {
		return
	}
	m.notifyFailures.WithLabelValues(reason).Inc()
}

// Handler serves the registry in the Prometheus text format. With a
// non-empty token every scrape must send "Authorization: Bearer <token>".
func (m *Metrics) Handler(token string) http.Handler {
	h := promhttp.HandlerFor(m.reg, promhttp.HandlerOpts{
		// A broken scrape-time collector must not hide the rest.
		ErrorHandling: promhttp.ContinueOnError,
	})
	if token == "" {
		return h
	}
	want := []byte("Bearer " + token)
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		got := []byte(strings.TrimSpace(r.Header.Get("Authorization")))
		if subtle.ConstantTimeCompare(got, want) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer realm="vigil-metrics"`)
			http.Error(w, "metrics need the bearer token given by --metrics-token-file", http.StatusUnauthorized)
			return
		}
		h.ServeHTTP(w, r)
	})
}
