package inventory

import (
	"context"
	"fmt"
	"strings"
	"testing"
	"time"

	"google.golang.org/protobuf/proto"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// fakePlatform stands in for the OS sources where a test needs exact
// control (bounds); the real sources are tested in inventory_linux_test.go.
type fakePlatform struct {
	sw   []*vigilv1.SoftwareItem
	errs []*vigilv1.CollectionError
}

func (f fakePlatform) Hardware(context.Context, *vigilv1.Hardware) error {
	return fmt.Errorf("no DMI here")
}
func (f fakePlatform) Accounts(context.Context) ([]*vigilv1.LocalAccount, error) {
	return []*vigilv1.LocalAccount{{Name: "root", Uid: "0", Administrator: true}}, nil
}
func (f fakePlatform) Software(context.Context) ([]*vigilv1.SoftwareItem, []*vigilv1.CollectionError) {
	return f.sw, f.errs
}
func (f fakePlatform) OSBuild(context.Context) string { return "b1" }

func TestCollectBounds(t *testing.T) {
	var sw []*vigilv1.SoftwareItem
	for i := range 500 {
		sw = append(sw, &vigilv1.SoftwareItem{Name: fmt.Sprintf("pkg%04d", i), Version: strings.Repeat("9", 1000), Publisher: "p\xffbad"})
	}
	c := &Collector{Limits: Limits{MaxSoftware: 300, MaxField: 64, MaxBytes: 20 << 10}, Platform: fakePlatform{sw: sw}}
	inv, err := c.Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if n := proto.Size(inv); n > 20<<10 {
		t.Errorf("inventory of %d bytes exceeds the 20 KiB bound", n)
	}
	if int(inv.SoftwareOmitted)+len(inv.Software) != 500 || inv.SoftwareOmitted < 200 {
		t.Errorf("kept %d, omitted %d of 500", len(inv.Software), inv.SoftwareOmitted)
	}
	for _, s := range inv.Software {
		if len(s.Version) > 64+len("…") || strings.Contains(s.Publisher, "\xff") {
			t.Fatalf("field not bounded or not valid UTF-8: %q %q", s.Version, s.Publisher)
		}
	}
	var truncated, dmi bool
	for _, e := range inv.Errors {
		truncated = truncated || (e.Part == "software" && strings.Contains(e.Error, "truncated"))
		dmi = dmi || (e.Part == "hardware" && strings.Contains(e.Error, "no DMI"))
	}
	if !truncated || !dmi {
		t.Errorf("truncation and the hardware error must be in the answer: %v", inv.Errors)
	}
	if inv.Os.Build != "b1" || len(inv.Accounts) != 1 || inv.Hardware.MemoryBytes == 0 || inv.Hardware.CpuCores == 0 {
		t.Errorf("rest of the answer: os %v accounts %v hw %v", inv.Os, inv.Accounts, inv.Hardware)
	}
}

// One audit at a time: a second Collect waits for the slot and gives up
// with its context.
func TestCollectOneAtATime(t *testing.T) {
	c := &Collector{Platform: fakePlatform{}}
	c.slot = make(chan struct{}, 1)
	c.slot <- struct{}{} // an audit in progress
	ctx, cancel := context.WithTimeout(context.Background(), 50*time.Millisecond)
	defer cancel()
	if _, err := c.Collect(ctx); err == nil || !strings.Contains(err.Error(), "already running") {
		t.Fatalf("want a wait for the running audit, got %v", err)
	}
	<-c.slot
	if _, err := c.Collect(context.Background()); err != nil {
		t.Fatal(err)
	}
}
