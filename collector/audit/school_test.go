package audit

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"path/filepath"
	"testing"

	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestAuditIsOneSchools: an audit is of one school and covers only its
// devices ("all" is the school's fleet); a reader of another school gets
// every read, the list and the sign-off answered as for an audit that does
// not exist; the previous audit compared is the same school's.
func TestAuditIsOneSchools(t *testing.T) {
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	if _, err := st.AddSchool(store.School{ID: "oak", Name: "Oak"}); err != nil {
		t.Fatal(err)
	}
	for _, d := range []store.Device{{DeviceID: "ash-1", Group: "ict"}, {DeviceID: "ash-2", Group: "ict"}, {DeviceID: "oak-1", School: "oak", Group: "ict"}} {
		if err := st.PutDevice(d); err != nil {
			t.Fatal(err)
		}
	}
	svc := &Service{Store: st, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	sees := func(school string) Reader {
		return Reader{Name: school + "-head", Sees: func(s string) bool { return s == school }}
	}
	ash, oak := sees(store.DefaultSchool), sees("oak")
	ctx := context.Background()
	ha, err := svc.Request(ctx, "", Scope{Kind: "all"}, ash, "termly", 0)
	if err != nil {
		t.Fatal(err)
	}
	ho, err := svc.Request(ctx, "oak", Scope{Kind: "group", Value: "ict"}, oak, "termly", 0)
	if err != nil {
		t.Fatal(err)
	}
	if len(ha.Devices) != 2 || ha.School != "" || len(ho.Devices) != 1 || ho.Devices[0].DeviceID != "oak-1" || ho.School != "oak" {
		t.Fatalf("default school's audit %+v, oak's %+v", ha, ho)
	}
	if _, err := svc.Request(ctx, "oak", Scope{Kind: "all"}, ash, "x", 0); !errors.Is(err, ErrBadRequest) {
		t.Errorf("the default school's head audited oak: %v", err)
	}
	if _, err := svc.Request(ctx, "oak", Scope{Kind: "device", Value: "ash-1"}, oak, "x", 0); !errors.Is(err, ErrBadRequest) {
		t.Errorf("oak audited a device of another school: %v", err)
	}
	// Every read by the other school's reader is a not-found.
	reads := map[string]func(r Reader) error{
		"view":     func(r Reader) error { _, err := svc.View(ha.ID, r); return err },
		"export":   func(r Reader) error { _, err := svc.Export(ha.ID, r, "csv"); return err },
		"chain":    func(r Reader) error { _, err := svc.ExportChain(ha.ID, r); return err },
		"check":    func(r Reader) error { _, err := svc.CheckChain(ha.ID, r); return err },
		"verify":   func(r Reader) error { return svc.Verify(ha.ID, r) },
		"progress": func(r Reader) error { _, err := svc.Progress(ha.ID, r); return err },
		"sign":     func(r Reader) error { _, err := svc.Sign(ha.ID, r, "Head", ""); return err },
	}
	for name, read := range reads {
		if err := read(oak); !errors.Is(err, store.ErrNotFound) {
			t.Errorf("%s by oak's head of the default school's audit: %v, want not found", name, err)
		}
		if err := read(ash); err != nil {
			t.Errorf("%s by the default school's head: %v", name, err)
		}
		if err := read(Operator("op")); err != nil {
			t.Errorf("%s by the operator: %v", name, err)
		}
	}
	for r, want := range map[*Reader]string{&ash: ha.ID, &oak: ho.ID} {
		list, err := svc.List(*r)
		if err != nil || len(list) != 1 || list[0].ID != want {
			t.Errorf("%s lists %+v (%v), want only %s", r.Name, list, err, want)
		}
	}
	// The next "all" audit of oak compares with oak's, not the default's.
	h2, err := svc.Request(ctx, "oak", Scope{Kind: "group", Value: "ict"}, oak, "spring", 0)
	if err != nil || h2.Previous != ho.ID {
		t.Errorf("oak's second audit's previous %q (%v), want %s", h2.Previous, err, ho.ID)
	}
}
