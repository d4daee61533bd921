package audit

import (
	"context"
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func TestGroupAuditWithOfflineDevice(t *testing.T) {
	f := newFleet(t)
	staff := f.enroll(t, 3, "staff", func(i int) *vigilv1.Inventory {
		return smallInventory(map[string]string{"firefox-esr": "115", "libreoffice": "7.4"}, map[string]string{"antivirus": "pass"})
	})
	pupil := f.enroll(t, 1, "pupils", nil)
	staff[0].connect(t)
	staff[1].connect(t)
	pupil[0].connect(t)

	h, err := f.svc.Request(context.Background(), "", Scope{Kind: "group", Value: "staff"}, Reader{Name: "head"}, "termly ICT audit", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(h.Devices) != 3 || h.ExpiresAt.Sub(h.RequestedAt) != DefaultExpiry {
		t.Fatalf("header %+v", h)
	}
	waitFor(t, "two connected devices answered", func() bool {
		p, err := f.svc.Progress(h.ID, Reader{})
		return err == nil && p.Answered == 2
	})
	p, _ := f.svc.Progress(h.ID, Reader{})
	if p.Total != 3 || p.Queued != 1 || p.Offline != 1 || p.Done {
		t.Fatalf("progress %+v, want 2/3 answered, 1 offline queued", p)
	}
	if pupil[0].asked.Load() != 0 {
		t.Error("a device outside the scope was asked")
	}
	// The offline device answers when it connects.
	staff[2].connect(t)
	waitFor(t, "the reconnected device answered", func() bool {
		p, err := f.svc.Progress(h.ID, Reader{})
		return err == nil && p.Done
	})
	r, err := f.svc.readRecord(h.ID, Reader{})
	if err != nil {
		t.Fatal(err)
	}
	if !r.Verified || r.Progress.Answered != 3 || len(r.Results) != 3 || r.RequestedBy != "head" || r.Reason != "termly ICT audit" {
		t.Fatalf("record %+v", r)
	}
	for _, res := range r.Results {
		var inv struct {
			Software []struct{ Name, Version string }
		}
		if err := json.Unmarshal(res.Inventory, &inv); err != nil || len(inv.Software) != 2 {
			t.Fatalf("device %s inventory %s: %v", res.DeviceID, res.Inventory, err)
		}
	}
	// Each device is asked until it answered, and answers once.
	for _, a := range staff {
		if n := a.asked.Load(); n != 1 {
			t.Errorf("device %s asked %d times", a.id, n)
		}
	}
	// Sign-off: one more link; earlier entries untouched.
	before := r.Hash
	if _, err := f.svc.Sign(h.ID, Reader{}, "Mrs Head", "reviewed"); err != nil {
		t.Fatal(err)
	}
	r2, _ := f.svc.readRecord(h.ID, Reader{})
	if !r2.Verified || r2.Hash == before || len(r2.Signoffs) != 1 || r2.Signoffs[0].By != "Mrs Head" {
		t.Fatalf("after sign-off: %+v", r2)
	}
	if _, err := f.svc.Sign(h.ID, Reader{}, "", ""); err == nil {
		t.Error("a sign-off without a name must be refused")
	}

	// A changed record is refused: rewrite one stored answer in Badger.
	chain, _ := f.svc.chain(h.ID, Reader{})
	e := chain.Entries[1]
	e.Body = []byte(strings.Replace(string(e.Body), "libreoffice", "libreoffise", 1))
	v, _ := json.Marshal(e)
	f.tamper(t, append([]byte("au/e/"+h.ID+"/"), 0, 0, 0, 1), v)
	if err := f.svc.Verify(h.ID, Reader{}); err == nil || !strings.Contains(err.Error(), "entry 1") {
		t.Fatalf("a changed answer must fail verification naming it, got %v", err)
	}
	if r3, _ := f.svc.readRecord(h.ID, Reader{}); r3.Verified || r3.VerifyError == "" {
		t.Fatal("the record must show it does not verify")
	}
}

func TestAuditExpiresAsNotReached(t *testing.T) {
	f := newFleet(t)
	devs := f.enroll(t, 2, "pupils", func(int) *vigilv1.Inventory { return smallInventory(nil, nil) })
	devs[0].connect(t)
	h, err := f.svc.Request(context.Background(), "", Scope{Kind: "all"}, Reader{Name: "tech"}, "inventory", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "connected device answered", func() bool { p, _ := f.svc.Progress(h.ID, Reader{}); return p.Answered == 1 })
	later := time.Now().Add(2 * time.Hour)
	f.now.Store(&later)
	if err := f.svc.ExpireDue(); err != nil {
		t.Fatal(err)
	}
	r, _ := f.svc.readRecord(h.ID, Reader{})
	if !r.Progress.Done || r.Progress.NotReached != 1 || !r.Verified {
		t.Fatalf("progress %+v", r.Progress)
	}
	for _, res := range r.Results {
		if res.DeviceID == devs[1].id && (res.NoAnswer == nil || res.NoAnswer.Reason != NotReached) {
			t.Fatalf("offline device: %+v", res)
		}
	}
	// It connects after expiry: not asked, the record stays as it is.
	devs[1].connect(t)
	time.Sleep(200 * time.Millisecond)
	if n := devs[1].asked.Load(); n != 0 {
		t.Errorf("an expired audit was sent %d times", n)
	}
	if q, _ := f.st.AuditQueue(""); len(q) != 0 {
		t.Errorf("queue after expiry: %v", q)
	}
}

func TestAuditAgentErrorAndBadRequests(t *testing.T) {
	f := newFleet(t)
	devs := f.enroll(t, 1, "staff", nil)
	devs[0].failWith = `unknown request kind "audit"`
	devs[0].connect(t)
	h, err := f.svc.Request(context.Background(), "", Scope{Kind: "device", Value: devs[0].id}, Reader{Name: "tech"}, "check", 0)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "no-answer recorded", func() bool { p, _ := f.svc.Progress(h.ID, Reader{}); return p.Done })
	r, _ := f.svc.readRecord(h.ID, Reader{})
	if r.Results[0].NoAnswer == nil || !strings.Contains(r.Results[0].NoAnswer.Detail, "unknown request kind") {
		t.Fatalf("result %+v", r.Results[0])
	}
	for _, bad := range []struct {
		scope      Scope
		by, reason string
	}{
		{Scope{Kind: "group", Value: "nobody-here"}, "a", "b"},
		{Scope{Kind: "group"}, "a", "b"},
		{Scope{Kind: "everything"}, "a", "b"},
		{Scope{Kind: "all"}, "a", ""},
	} {
		if _, err := f.svc.Request(context.Background(), "", bad.scope, Reader{Name: bad.by}, bad.reason, 0); err == nil {
			t.Errorf("request %+v accepted", bad)
		}
	}
}

func TestAuditDiffFromPrevious(t *testing.T) {
	f := newFleet(t)
	inv := func(int) *vigilv1.Inventory {
		return smallInventory(map[string]string{"firefox-esr": "115", "vlc": "3.0"}, map[string]string{"antivirus": "pass", "bluetooth": "pass"})
	}
	devs := f.enroll(t, 2, "staff", inv)
	devs[0].connect(t)
	devs[1].connect(t)
	scope := Scope{Kind: "group", Value: "staff"}
	first, _ := f.svc.Request(context.Background(), "", scope, Reader{Name: "head"}, "autumn", time.Hour)
	waitFor(t, "first audit answers", func() bool { p, _ := f.svc.Progress(first.ID, Reader{}); return p.Answered == 2 })
	devs[1].disconnect()
	// A device enrolled since is new in the next audit.
	devs = append(devs, f.enroll(t, 1, "staff", inv)...)
	devs[0].setInventory(smallInventory(map[string]string{"firefox-esr": "128", "tor-browser": "13"}, map[string]string{"antivirus": "fail", "bluetooth": "pass"}))
	devs[2].connect(t)
	// A different scope between the two is not "the previous audit".
	other, _ := f.svc.Request(context.Background(), "", Scope{Kind: "device", Value: devs[0].id}, Reader{Name: "tech"}, "x", time.Hour)
	waitFor(t, "other audit", func() bool { p, _ := f.svc.Progress(other.ID, Reader{}); return p.Done })
	second, _ := f.svc.Request(context.Background(), "", scope, Reader{Name: "head"}, "spring", time.Hour)
	if second.Previous != first.ID || second.PreviousHash == "" {
		t.Fatalf("previous %q, want %q", second.Previous, first.ID)
	}
	waitFor(t, "second audit answers", func() bool { p, _ := f.svc.Progress(second.ID, Reader{}); return p.Answered == 2 })
	r, _ := f.svc.readRecord(second.ID, Reader{})
	d := r.Diff
	if d == nil || d.Previous != first.ID {
		t.Fatalf("diff %+v", d)
	}
	if len(d.DevicesNew) != 1 || d.DevicesNew[0] != devs[2].id || len(d.DevicesMissing) != 1 || d.DevicesMissing[0] != devs[1].id {
		t.Errorf("devices new %v missing %v", d.DevicesNew, d.DevicesMissing)
	}
	if len(d.Devices) != 1 {
		t.Fatalf("changes %+v", d.Devices)
	}
	c := d.Devices[0]
	if strings.Join(c.SoftwareAdded, ",") != "firefox-esr 128,tor-browser 13" || strings.Join(c.SoftwareRemoved, ",") != "firefox-esr 115,vlc 3.0" {
		t.Errorf("software added %v removed %v", c.SoftwareAdded, c.SoftwareRemoved)
	}
	if len(c.ComplianceChanges) != 1 || c.ComplianceChanges[0] != (ComplianceChange{RuleID: "antivirus", Was: "pass", Now: "fail"}) {
		t.Errorf("compliance %+v", c.ComplianceChanges)
	}
	list, _ := f.svc.List(Reader{})
	if len(list) != 3 || list[0].ID != second.ID {
		t.Errorf("list %+v", list)
	}
}

func TestVerifyChainRefusesRemovedEntries(t *testing.T) {
	f := newFleet(t)
	devs := f.enroll(t, 2, "staff", func(int) *vigilv1.Inventory { return smallInventory(nil, nil) })
	for _, d := range devs {
		d.connect(t)
	}
	h, _ := f.svc.Request(context.Background(), "", Scope{Kind: "all"}, Reader{Name: "head"}, "r", 0)
	waitFor(t, "answers", func() bool { p, _ := f.svc.Progress(h.ID, Reader{}); return p.Done })
	c, _ := f.svc.chain(h.ID, Reader{})
	if err := VerifyChain(c); err != nil {
		t.Fatal(err)
	}
	cut := Chain{Entries: c.Entries[:2], Head: c.Head}
	if err := VerifyChain(cut); err == nil || !strings.Contains(err.Error(), "removed") {
		t.Errorf("a chain missing its last entry: %v", err)
	}
	swapped := Chain{Entries: []store.AuditEntry{c.Entries[0], c.Entries[2], c.Entries[1]}, Head: c.Head}
	if err := VerifyChain(swapped); err == nil {
		t.Error("reordered entries must not verify")
	}
}

// A device whose stream drops while its request waits is asked again on
// its new stream once the old request gives up, not only at its next
// reconnect.
func TestAuditAskedAgainOnNewStream(t *testing.T) {
	f := newFleet(t)
	f.svc.AnswerTimeout = 2 * time.Second
	devs := f.enroll(t, 1, "staff", func(int) *vigilv1.Inventory { return smallInventory(nil, nil) })
	a := devs[0]
	a.silent = true
	a.connect(t)
	h, err := f.svc.Request(context.Background(), "", Scope{Kind: "all"}, Reader{Name: "head"}, "r", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	waitFor(t, "the request reached the first stream", func() bool { return a.asked.Load() == 1 })
	a.disconnect()
	a.mu.Lock()
	a.silent = false
	a.mu.Unlock()
	a.connect(t)
	waitFor(t, "answer on the new stream", func() bool { p, _ := f.svc.Progress(h.ID, Reader{}); return p.Done })
}
