package main

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/status"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/internal/identity"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// ident is one simulated device as kept on disk.
type ident struct {
	DeviceID      string `json:"device_id"`
	Group         string `json:"group"`
	KeyDER        []byte `json:"key_der"`
	CertDER       []byte `json:"cert_der"`
	CAFingerprint string `json:"ca_fingerprint"`
	// RulesHash is the last rules bundle the collector pushed: an agent
	// keeps its rules, so a reconnecting fleet is not sent them again.
	RulesHash string `json:"rules_hash,omitempty"`
	Index     int    `json:"-"`
	path      string
}

// loadOrEnroll returns identities first..first+agents-1, enrolling those not
// yet in the identities folder (a few at a time, as a term-start roll-out
// would).
func loadOrEnroll(ctx context.Context, o options, log *slog.Logger) ([]ident, error) {
	if err := os.MkdirAll(o.identities, 0o700); err != nil {
		return nil, err
	}
	ids := make([]ident, o.agents)
	var (
		mu       sync.Mutex
		firstErr error
		enrolled int
	)
	sem := make(chan struct{}, 16)
	var wg sync.WaitGroup
	for i := range ids {
		idx := o.first + i
		path := filepath.Join(o.identities, fmt.Sprintf("agent-%06d.json", idx))
		if b, err := os.ReadFile(path); err == nil && json.Unmarshal(b, &ids[i]) == nil {
			ids[i].Index, ids[i].path = idx, path
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer func() { <-sem; wg.Done() }()
			// Like the agent's bootstrap, retry what did not reach the
			// collector (a handshake shed under load); a refusal is final.
			var id ident
			var err error
			for wait := 500 * time.Millisecond; ; wait = min(2*wait, 20*time.Second) {
				at := o.addr
				if o.enrollAddr != "" {
					at = o.enrollAddr
				}
				id, err = enroll(ctx, at, o.token, idx)
				if status.Code(err) != codes.Unavailable || ctx.Err() != nil {
					break
				}
				time.Sleep(jitter(wait))
			}
			if err == nil {
				var b []byte
				b, err = json.Marshal(id)
				if err == nil {
					err = os.WriteFile(path, b, 0o600)
				}
			}
			mu.Lock()
			defer mu.Unlock()
			if err != nil && firstErr == nil {
				firstErr = fmt.Errorf("enroll agent %d: %w", idx, err)
			}
			id.path = path
			ids[i] = id
			enrolled++
		}()
	}
	wg.Wait()
	if enrolled > 0 {
		log.Info("enrolled new identities", "count", enrolled)
	}
	return ids, firstErr
}

func enroll(ctx context.Context, addr, token string, idx int) (ident, error) {
	tok, err := identity.ParseToken(token)
	if err != nil {
		return ident{}, err
	}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		return ident{}, err
	}
	csr, err := x509.CreateCertificateRequest(rand.Reader, &x509.CertificateRequest{Subject: pkix.Name{CommonName: "vigil-agent"}}, key)
	if err != nil {
		return ident{}, err
	}
	conn, err := grpc.NewClient(addr, grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
		MinVersion: tls.VersionTLS13, InsecureSkipVerify: true, VerifyPeerCertificate: identity.PinnedVerifier(tok.CAFingerprint),
	})))
	if err != nil {
		return ident{}, err
	}
	defer conn.Close()
	ctx, cancel := context.WithTimeout(ctx, time.Minute)
	defer cancel()
	resp, err := vigilv1.NewEnrollmentClient(conn).Enroll(ctx, &vigilv1.EnrollRequest{
		Token: token, CsrDer: csr, Hostname: fmt.Sprintf("load-%06d", idx), Os: "linux", Arch: "amd64",
		HostFingerprint: fmt.Sprintf("loadgen-%06d", idx), AgentVersion: "loadgen",
	})
	if err != nil {
		return ident{}, err
	}
	keyDER, err := x509.MarshalPKCS8PrivateKey(key)
	if err != nil {
		return ident{}, err
	}
	return ident{DeviceID: resp.DeviceId, Group: resp.Group, KeyDER: keyDER, CertDER: resp.ClientCertDer,
		CAFingerprint: tok.CAFingerprint, Index: idx}, nil
}

// runAgent holds one stream until ctx ends, reporting on up once whether it
// got its Welcome. Like the agent, it retries the first connection with
// backoff (a collector shedding handshakes under a ramp is expected); once
// held, a lost stream is counted, not hidden by reconnecting.
func runAgent(ctx context.Context, o options, id ident, st *stats, up chan<- bool) {
	reported := false
	report := func(ok bool) {
		if !reported {
			reported = true
			up <- ok
		}
	}
	defer report(false)
	key, err := x509.ParsePKCS8PrivateKey(id.KeyDER)
	if err != nil {
		return
	}
	cert := tls.Certificate{Certificate: [][]byte{id.CertDER}, PrivateKey: key}
	var (
		conn   *grpc.ClientConn
		stream vigilv1.Collector_StreamClient
	)
	deadline := time.Now().Add(o.rampTimeout)
	for wait := 500 * time.Millisecond; ; wait = min(2*wait, 30*time.Second) {
		conn, stream, err = connect(ctx, o.addr, id, cert)
		if err == nil {
			break
		}
		st.mu.Lock()
		st.retries++
		st.mu.Unlock()
		if time.Now().Add(wait).After(deadline) {
			return
		}
		select {
		case <-ctx.Done():
			return
		case <-time.After(jitter(wait)):
		}
	}
	report(true)
	// Stream until ctx ends; when a stream ends first (its collector or
	// front-end died), fail over as the agent does (-failover) and time
	// the reconnect.
	for n := 0; ; n++ {
		lost := serveStream(ctx, o, &id, stream, st)
		conn.Close()
		if !lost || ctx.Err() != nil || len(o.failover) == 0 {
			return
		}
		t0 := time.Now()
		ok := false
		for wait, try := 250*time.Millisecond, id.Index+n; ctx.Err() == nil && time.Since(t0) < o.rampTimeout; wait, try = min(2*wait, 10*time.Second), try+1 {
			addr := o.failover[try%len(o.failover)]
			if conn, stream, err = connect(ctx, addr, id, cert); err == nil {
				ok = true
				break
			}
			select {
			case <-ctx.Done():
			case <-time.After(jitter(wait)):
			}
		}
		st.mu.Lock()
		if ok {
			st.reconnects = append(st.reconnects, float64(time.Since(t0).Microseconds())/1000)
		} else if ctx.Err() == nil {
			st.reconnectFailed++
		}
		st.mu.Unlock()
		if !ok {
			return
		}
	}
}

// serveStream sends heartbeats and findings on one stream until ctx ends
// (false) or the stream does (true).
func serveStream(ctx context.Context, o options, id *ident, stream vigilv1.Collector_StreamClient, st *stats) bool {
	acks := make(chan time.Time, 4)
	rules := make(chan string, 1)
	recvDone := make(chan error, 1)
	go func() {
		for {
			m, err := stream.Recv()
			if err != nil {
				recvDone <- err
				return
			}
			switch {
			case m.GetAck() != nil:
				select {
				case acks <- time.Now():
				default:
				}
			case m.GetRules() != nil:
				select {
				case rules <- m.GetRules().GetHash():
				default:
				}
			}
		}
	}()
	hb := time.NewTicker(jitter(o.heartbeat))
	defer hb.Stop()
	var fc <-chan time.Time
	if o.findingEvery > 0 {
		ft := time.NewTicker(jitter(o.findingEvery))
		defer ft.Stop()
		fc = ft.C
	}
	var sentAt time.Time
	batch := uint64(0)
	fail := func() bool {
		st.mu.Lock()
		st.streamErrors++
		st.mu.Unlock()
		return true
	}
	for {
		select {
		case <-ctx.Done():
			return false
		case <-recvDone:
			if ctx.Err() == nil {
				return fail()
			}
			return false
		case h := <-rules:
			id.RulesHash = h
			if b, err := json.Marshal(id); err == nil {
				_ = os.WriteFile(id.path, b, 0o600)
			}
		case <-hb.C:
			if stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Heartbeat{Heartbeat: &vigilv1.Heartbeat{
				AgentVersion: "loadgen", RulesHash: id.RulesHash, SentAt: timestamppb.Now()}}}) != nil {
				return fail()
			}
			st.mu.Lock()
			st.heartbeats++
			st.mu.Unlock()
		case <-fc:
			if !sentAt.IsZero() {
				continue // previous batch not acknowledged yet
			}
			batch++
			now := time.Now()
			// Seqs from the clock keep a rerun's findings new to the store.
			f := &vigilv1.Finding{DeviceId: id.DeviceID, Seq: uint64(now.UnixMicro()), Group: id.Group,
				ObservedAt: timestamppb.New(now), Check: "selftest", RuleId: "loadgen",
				Severity: vigilv1.Severity_SEVERITY_INFO, Message: "load generator finding"}
			if stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Findings{Findings: &vigilv1.FindingBatch{
				BatchId: batch, Findings: []*vigilv1.Finding{f}}}}) != nil {
				return fail()
			}
			sentAt = now
		case at := <-acks:
			if !sentAt.IsZero() {
				st.mu.Lock()
				st.acks = append(st.acks, float64(at.Sub(sentAt).Microseconds())/1000)
				st.mu.Unlock()
				sentAt = time.Time{}
			}
		}
	}
}

// connect opens one stream and waits for Welcome.
func connect(ctx context.Context, addr string, id ident, cert tls.Certificate) (*grpc.ClientConn, vigilv1.Collector_StreamClient, error) {
	conn, err := grpc.NewClient(addr,
		grpc.WithTransportCredentials(credentials.NewTLS(&tls.Config{
			MinVersion: tls.VersionTLS13, Certificates: []tls.Certificate{cert},
			InsecureSkipVerify: true, VerifyPeerCertificate: identity.PinnedVerifier(id.CAFingerprint),
		})),
		// The agent's own settings (agent/uplink).
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 60 * time.Second, Timeout: 20 * time.Second}),
		// Small client buffers: the generator's memory is not what is
		// measured, and it must hold thousands of connections.
		grpc.WithReadBufferSize(4<<10), grpc.WithWriteBufferSize(4<<10),
	)
	if err != nil {
		return nil, nil, err
	}
	stream, err := vigilv1.NewCollectorClient(conn).Stream(ctx)
	if err == nil {
		hello := &vigilv1.Hello{AgentVersion: "loadgen", RulesHash: id.RulesHash, HostFingerprint: fmt.Sprintf("loadgen-%06d", id.Index),
			Hostname: fmt.Sprintf("load-%06d", id.Index), Os: "linux", Arch: "amd64", InstanceId: fmt.Sprintf("lg-%d-%d", os.Getpid(), id.Index)}
		err = stream.Send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Hello{Hello: hello}})
	}
	if err == nil {
		var first *vigilv1.CollectorMessage
		first, err = stream.Recv()
		if err == nil && first.GetWelcome() == nil {
			err = fmt.Errorf("no welcome")
		}
	}
	if err != nil {
		conn.Close()
		return nil, nil, err
	}
	return conn, stream, nil
}

// jitter picks a period in [d/2, d) per agent, so that agents started in
// the same second do not all send in step (real devices drift apart).
func jitter(d time.Duration) time.Duration {
	var b [2]byte
	_, _ = rand.Read(b[:])
	return d/2 + time.Duration(int64(d/2)*int64(uint16(b[0])<<8|uint16(b[1]))/65536)
}
