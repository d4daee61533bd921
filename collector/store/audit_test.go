package store

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"
)

func TestAuditChain(t *testing.T) {
	dir := t.TempDir()
	s := openTest(t, dir, nil)
	devs := []string{strings.Repeat("A", 26), strings.Repeat("B", 26)}
	var queue []AuditQueued
	for _, d := range devs {
		queue = append(queue, AuditQueued{DeviceID: d, ExpiresAt: time.Now().Add(time.Hour)})
	}
	at := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	h, err := s.CreateAudit("au-1", at, []byte(`{"reason":"termly"}`), queue)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.CreateAudit("au-1", at, []byte(`{}`), nil); err == nil {
		t.Fatal("an audit ID is written once")
	}
	if q, _ := s.AuditQueue(devs[0]); len(q) != 1 || q[0].AuditID != "au-1" {
		t.Fatalf("queue of %s: %v", devs[0], q)
	}
	a, err := s.AppendAuditEntry("au-1", AuditAnswerEntry, devs[0], at.Add(time.Second), []byte(`{"software":[]}`))
	if err != nil {
		t.Fatal(err)
	}
	if a.Prev != h.Hash || a.Seq != 1 || a.Hash != AuditEntryHash(a) {
		t.Fatalf("entry %+v does not link to the header %s", a, h.Hash)
	}
	if _, err := s.AppendAuditEntry("au-1", AuditAnswerEntry, devs[0], at, []byte(`{}`)); !errors.Is(err, ErrAuditClosed) {
		t.Fatalf("a second answer from one device: %v, want ErrAuditClosed", err)
	}
	if _, err := s.AppendAuditEntry("nope", AuditSignoffEntry, "", at, []byte(`{}`)); !errors.Is(err, ErrNotFound) {
		t.Fatalf("unknown audit: %v", err)
	}
	// Many sign-offs: entry keys sort by seq past 255.
	for i := range 300 {
		if _, err := s.AppendAuditEntry("au-1", AuditSignoffEntry, "", at, []byte(fmt.Sprintf(`{"n":%d}`, i))); err != nil {
			t.Fatal(err)
		}
	}
	s.Close()
	s = openTest(t, dir, nil)
	chain, head, err := s.AuditChain("au-1")
	if err != nil {
		t.Fatal(err)
	}
	if len(chain) != 302 || head.Seq != 301 || head.Hash != chain[301].Hash {
		t.Fatalf("chain of %d, head %+v", len(chain), head)
	}
	for i, e := range chain {
		if e.Seq != i || (i > 0 && e.Prev != chain[i-1].Hash) || AuditEntryHash(e) != e.Hash {
			t.Fatalf("entry %d broken: %+v", i, e)
		}
	}
	if q, _ := s.AuditQueue(""); len(q) != 1 || q[0].DeviceID != devs[1] {
		t.Fatalf("remaining queue %v", q)
	}
	hs, err := s.AuditHeaders()
	if err != nil || len(hs) != 1 || string(hs[0].Body) != `{"reason":"termly"}` {
		t.Fatalf("headers %v %v", hs, err)
	}
}
