package server

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"testing"
	"time"

	"google.golang.org/protobuf/types/known/structpb"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// answer runs an agent's side of requests on as until the stream ends:
// every Request is answered with its params echoed plus the kind, unless
// ignore says to stay silent.
func answer(as *agentStream, ignore func(kind string) bool) <-chan error {
	done := make(chan error, 1)
	go func() {
		for {
			m, err := as.s.Recv()
			if err != nil {
				done <- err
				return
			}
			r := m.GetRequest()
			if r == nil || ignore(r.Kind) {
				continue
			}
			fields := map[string]any{"kind": r.Kind}
			for k, v := range r.GetParams().AsMap() {
				fields[k] = v
			}
			res, _ := structpb.NewStruct(fields)
			err = as.send(&vigilv1.AgentMessage{Msg: &vigilv1.AgentMessage_Result{Result: &vigilv1.RequestResult{
				RequestId: r.RequestId, Ok: true, Result: res}}})
			if err != nil {
				done <- err
				return
			}
		}
	}()
	return done
}

func TestRequestRoundTrip(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	d := e.enrollDevice(t)
	as := d.mustStream(t, "req")
	agentDone := answer(as, func(kind string) bool { return kind == "ignore-me" })

	ctx, cancel := context.WithTimeout(context.Background(), rpcTimeout)
	defer cancel()
	res, err := e.srv.Request(ctx, d.id, "selftest", map[string]any{"n": 3})
	if err != nil {
		t.Fatal(err)
	}
	if !res.Ok || res.RequestId == "" || res.Result.GetFields()["kind"].GetStringValue() != "selftest" ||
		res.Result.GetFields()["n"].GetNumberValue() != 3 {
		t.Errorf("result %v", res)
	}

	// Concurrent requests each get their own answer.
	var wg sync.WaitGroup
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			res, err := e.srv.Request(ctx, d.id, "audit", map[string]any{"i": float64(i)})
			if err != nil {
				t.Errorf("request %d: %v", i, err)
				return
			}
			if got := res.Result.GetFields()["i"].GetNumberValue(); got != float64(i) {
				t.Errorf("request %d answered with i=%v", i, got)
			}
		}(i)
	}
	wg.Wait()

	// An agent that never answers: the caller's context decides, and nothing
	// is left pending.
	short, cancelShort := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancelShort()
	if _, err := e.srv.Request(short, d.id, "ignore-me", nil); err == nil {
		t.Error("unanswered request returned no error")
	}
	e.srv.mu.Lock()
	pending := len(e.srv.pending)
	e.srv.mu.Unlock()
	if pending != 0 {
		t.Errorf("%d requests left pending", pending)
	}

	// Findings and requests share the stream.
	if err := as.send(batchMsg(1, seqRange(1, 2))); err != nil {
		t.Fatal(err)
	}
	res, err = e.srv.Request(ctx, d.id, "selftest", map[string]any{"n": 1})
	if err != nil || !res.Ok {
		t.Fatalf("request after a batch: %v %v", res, err)
	}

	if _, err := e.srv.Request(ctx, "nosuchdevice00000000000000", "selftest", nil); err == nil {
		t.Error("request to an unknown device returned no error")
	}
	as.cancel()
	<-agentDone
	deadline := time.Now().Add(rpcTimeout)
	for e.srv.Connected(d.id) && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if _, err := e.srv.Request(ctx, d.id, "selftest", nil); err == nil {
		t.Error("request to a disconnected device returned no error")
	} else if want := fmt.Sprintf("device %s is not connected", d.id); err.Error() != want {
		t.Errorf("request to a disconnected device: %v, want %q", err, want)
	}
}

// TestRequestLostWithStream: a stream that ends while a request waits for
// its answer fails the request at once with ErrRequestLost (the agent does
// not carry it to its next stream), not at the caller's deadline.
func TestRequestLostWithStream(t *testing.T) {
	e := newEnv(t, Config{}, store.Options{})
	d := e.enrollDevice(t)
	as := d.mustStream(t, "lost")
	agentDone := answer(as, func(string) bool { return true }) // never answers
	errc := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		_, err := e.srv.Request(ctx, d.id, "selftest", nil)
		errc <- err
	}()
	// The request is pending once it is registered.
	deadline := time.Now().Add(rpcTimeout)
	for {
		e.srv.mu.Lock()
		n := len(e.srv.pending)
		e.srv.mu.Unlock()
		if n == 1 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("request never pending")
		}
		time.Sleep(5 * time.Millisecond)
	}
	as.cancel()
	<-agentDone
	select {
	case err := <-errc:
		if !errors.Is(err, ErrRequestLost) {
			t.Fatalf("request on an ended stream: %v, want ErrRequestLost", err)
		}
	case <-time.After(rpcTimeout):
		t.Fatal("request still waiting after its stream ended")
	}
}
