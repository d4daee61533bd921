// Package control is the agent's local control API, used by the vigil-agent
// CLI while the agent runs (trigger-test, status): HTTP over a Unix socket
// in the state dir (owner-only), or on Windows over a named pipe derived
// from that path (LocalSystem and Administrators only; see
// endpoint_windows.go).
package control

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"time"
)

// Backend is what the running agent offers.
type Backend interface {
	TriggerTest(ctx context.Context, n int, source, ruleID string) (first, last uint64, nonce string, err error)
	Status() any
}

// TriggerResult answers POST /v1/trigger-test.
type TriggerResult struct {
	Count    int    `json:"count"`
	FirstSeq uint64 `json:"first_seq"`
	LastSeq  uint64 `json:"last_seq"`
	Nonce    string `json:"nonce"`
}

// Serve serves the control API on the endpoint of path (the state dir's
// control.sock) until ctx ends.
func Serve(ctx context.Context, path string, b Backend) error {
	dctx, cancel := context.WithTimeout(ctx, 200*time.Millisecond)
	c, err := dial(dctx, path)
	cancel()
	if err == nil {
		c.Close()
		return fmt.Errorf("another agent is already running with this state dir (%s answers)", Endpoint(path))
	}
	l, remove, err := listen(path)
	if err != nil {
		return fmt.Errorf("listen on control socket %s: %w", Endpoint(path), err)
	}
	mux := http.NewServeMux()
	mux.HandleFunc("POST /v1/trigger-test", func(w http.ResponseWriter, r *http.Request) {
		var req struct {
			Count int
			Rule  string
		}
		if err := json.NewDecoder(io.LimitReader(r.Body, 4096)).Decode(&req); err != nil {
			httpError(w, http.StatusBadRequest, err)
			return
		}
		first, last, nonce, err := b.TriggerTest(r.Context(), req.Count, "trigger-test", req.Rule)
		if err != nil {
			httpError(w, http.StatusUnprocessableEntity, err)
			return
		}
		writeJSON(w, TriggerResult{Count: req.Count, FirstSeq: first, LastSeq: last, Nonce: nonce})
	})
	mux.HandleFunc("GET /v1/status", func(w http.ResponseWriter, r *http.Request) { writeJSON(w, b.Status()) })
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 5 * time.Second}
	// Serve returns only once the shutdown has removed the socket: removed
	// later, it could take the socket of the next agent started with this
	// state dir (TestOneAgentPerStateDir caught this).
	stopped := make(chan struct{})
	go func() {
		defer close(stopped)
		<-ctx.Done()
		sctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		srv.Shutdown(sctx)
		remove()
	}()
	if err := srv.Serve(l); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	<-stopped
	return nil
}

func writeJSON(w http.ResponseWriter, v any) {
	w.Header().Set("Content-Type", "application/json")
	json.NewEncoder(w).Encode(v)
}

func httpError(w http.ResponseWriter, code int, err error) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(code)
	json.NewEncoder(w).Encode(map[string]string{"error": err.Error()})
}

// Call sends a request to the agent's control endpoint of path and decodes
// the JSON answer into out.
func Call(ctx context.Context, path, method, route string, body, out any) error {
	hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
		return dial(ctx, path)
	}}}
	var rd io.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = strings.NewReader(string(b))
	}
	req, err := http.NewRequestWithContext(ctx, method, "http://vigil-agent"+route, rd)
	if err != nil {
		return err
	}
	resp, err := hc.Do(req)
	if err != nil {
		return fmt.Errorf("the agent is not running (nothing answers on %s): %w", Endpoint(path), err)
	}
	defer resp.Body.Close()
	if resp.StatusCode/100 != 2 {
		var e struct{ Error string }
		json.NewDecoder(io.LimitReader(resp.Body, 1<<16)).Decode(&e)
		return fmt.Errorf("agent refused: %s", e.Error)
	}
	return json.NewDecoder(resp.Body).Decode(out)
}
