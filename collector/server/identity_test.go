package server

import (
	"strings"
	"sync"
	"testing"
	"time"

	"google.golang.org/grpc/codes"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// fakeClock is Config.Now under the test's control.
type fakeClock struct {
	mu sync.Mutex
	t  time.Time
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.t
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.t = c.t.Add(d)
	c.mu.Unlock()
}

// conflictFindings returns the identity-conflict findings the collector
// raised about dev.
func conflictFindings(t *testing.T, e *testEnv, dev string) []*vigilv1.Finding {
	t.Helper()
	var out []*vigilv1.Finding
	for _, f := range storedFindings(t, e.st, e.srv.selfID) {
		if f.RuleId == "identity-conflict" && f.GetDetails().GetFields()["device_id"].GetStringValue() == dev {
			out = append(out, f)
		}
	}
	return out
}

func TestIdentityConflict(t *testing.T) {
	clock := &fakeClock{t: time.Now()}
	const hb = 10 * time.Second
	e := newEnv(t, Config{HeartbeatInterval: hb, Now: clock.Now}, store.Options{})
	d := e.enrollDevice(t)

	top := t // streams that outlive a subtest are tied to the whole test
	first := d.mustStream(t, "instance-A")
	if _, err := first.sendBatch(1, seqRange(1, 1)); err != nil {
		t.Fatal(err)
	}

	t.Run("second instance while the first is live", func(t *testing.T) {
		_, _, err := openStream(t, d.conn(t), d.hello("instance-B"))
		wantCode(t, "second instance", err, codes.AlreadyExists, "already connected")
		fs := conflictFindings(t, e, d.id)
		if len(fs) != 1 {
			t.Fatalf("%d identity-conflict findings about %s, want 1", len(fs), d.id)
		}
		f := fs[0]
		if f.DeviceId != e.ca.SelfDeviceID() || f.Group != d.group || f.Severity != vigilv1.Severity_SEVERITY_HIGH ||
			!strings.Contains(f.Message, d.id) {
			t.Errorf("conflict finding %v", f)
		}
		// The first stream is undisturbed.
		if ack, err := first.sendBatch(2, seqRange(2, 2)); err != nil || ack.Stored != 1 {
			t.Fatalf("first stream after the conflict: ack %v err %v", ack, err)
		}
	})

	t.Run("same instance reconnecting replaces the old stream", func(t *testing.T) {
		second := d.mustStream(top, "instance-A")
		wantCode(t, "replaced stream", first.expectEnd(), codes.Canceled, "")
		if ack, err := second.sendBatch(3, seqRange(3, 3)); err != nil || ack.Stored != 1 {
			t.Fatalf("reconnected stream: ack %v err %v", ack, err)
		}
		if n := len(conflictFindings(t, e, d.id)); n != 1 {
			t.Errorf("a reconnect raised a conflict: %d findings", n)
		}
		first = second
	})

	t.Run("quiet stream is replaced by another instance", func(t *testing.T) {
		clock.Advance(3*hb + time.Second)
		third := d.mustStream(top, "instance-C")
		wantCode(t, "stale stream", first.expectEnd(), codes.Canceled, "")
		if ack, err := third.sendBatch(4, seqRange(4, 4)); err != nil || ack.Stored != 1 {
			t.Fatalf("replacing stream: ack %v err %v", ack, err)
		}
		if n := len(conflictFindings(t, e, d.id)); n != 1 {
			t.Errorf("replacing a dead stream raised a conflict: %d findings", n)
		}
		first = third
	})

	t.Run("different host fingerprint", func(t *testing.T) {
		h := d.hello("instance-D")
		h.HostFingerprint = "cloned-machine"
		_, _, err := openStream(t, d.conn(t), h)
		wantCode(t, "other host", err, codes.FailedPrecondition, "another host")
		fs := conflictFindings(t, e, d.id)
		if len(fs) != 2 {
			t.Fatalf("%d identity-conflict findings, want 2", len(fs))
		}
		if ack, err := first.sendBatch(5, seqRange(5, 5)); err != nil || ack.Stored != 1 {
			t.Fatalf("live stream after the refused clone: ack %v err %v", ack, err)
		}
	})

	if n := len(storedFindings(t, e.st, d.id)); n != 5 {
		t.Errorf("device has %d findings, want 5", n)
	}
}
