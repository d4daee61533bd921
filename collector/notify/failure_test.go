package notify

import (
	"context"
	"net"
	"sync"
	"testing"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestNotifyFailuresReported: an e-mail the relay does not take, and an
// alert nobody can be e-mailed about, reach Config.OnFailure (which
// the daemon wires to vigil_notification_failures_total).
func TestNotifyFailuresReported(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	dead := l.Addr().String()
	l.Close() // nothing listens: every send fails

	for _, tc := range []struct{ email, want string }{
		{"dsl1@school.test", "send"}, // the relay is down
		{"", "no_recipient"},         // nobody in the chain has an address
	} {
		e := newEnv(t)
		e.user("dsl1", RoleDSL, false, tc.email)
		var mu sync.Mutex
		got := map[string]int{}
		n := e.notifier(Config{SMTPAddr: dead, From: "vigil@school.test", MinSeverity: vigilv1.Severity_SEVERITY_HIGH,
			ConsoleURL: "https://vigil.school.test/", Interval: 100 * time.Millisecond,
			OnFailure: func(reason string) { mu.Lock(); got[reason]++; mu.Unlock() }})
		ctx, cancel := context.WithCancel(context.Background())
		done := make(chan struct{})
		go func() { defer close(done); n.Run(ctx) }()
		time.Sleep(200 * time.Millisecond) // let it subscribe, as the other notifier tests do
		e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "undeliverable", time.Now())
		deadline := time.Now().Add(30 * time.Second)
		for {
			mu.Lock()
			n := got[tc.want]
			mu.Unlock()
			if n >= 1 {
				break
			}
			if time.Now().After(deadline) {
				t.Errorf("failures reported %v, want %s", got, tc.want)
				break
			}
			time.Sleep(50 * time.Millisecond)
		}
		cancel()
		<-done
	}
}
