package removable

import (
	"context"
	"encoding/binary"
	"errors"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

type recorded struct {
	rule string
	obs  checks.Observation
}

type recorder struct {
	mu  sync.Mutex
	all []recorded
	ch  chan recorded
}

func newRecorder() *recorder { return &recorder{ch: make(chan recorded, 256)} }

func (r *recorder) emit(ctx context.Context, rule *rules.Rule, obs ...checks.Observation) (uint64, uint64, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, o := range obs {
		r.all = append(r.all, recorded{rule.ID, o})
		select {
		case r.ch <- recorded{rule.ID, o}:
		default:
		}
	}
	return 1, uint64(len(obs)), nil
}

func (r *recorder) list(rule string) []checks.Observation {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []checks.Observation
	for _, x := range r.all {
		if rule == "" || x.rule == rule {
			out = append(out, x.obs)
		}
	}
	return out
}

func ruleFrom(t *testing.T, id, params string) *rules.Rule {
	t.Helper()
	src := "apiVersion: vigil/v1\nid: " + id + "\nname: n\nrationale: r\nseverity: low\ncategory: compliance\ncheck: removable\nparams:\n" + params
	set, errs := rules.LoadFiles(map[string][]byte{id + ".yaml": []byte(src)}, checks.MustRegistry(Check{}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	return &set.Rules[0]
}

func TestDefaultPack(t *testing.T) {
	data, ok := rules.Defaults()["removable.yaml"]
	if !ok {
		t.Fatal("rules/default/removable.yaml missing from the default pack")
	}
	set, errs := rules.LoadFiles(map[string][]byte{"removable.yaml": data}, checks.MustRegistry(Check{}))
	if len(errs) > 0 {
		t.Fatal(errs)
	}
	r := set.Rules[0]
	if r.ID != "removable-media-pupils" || r.Check != "removable" || !r.Enabled || !r.Applies("pupils", "pupil") || r.Applies("staff", "staff") {
		t.Errorf("%+v", r)
	}
	if !strings.Contains(r.Rationale, "Appendix 2") || !strings.Contains(r.Rationale, "personal memory stick") {
		t.Errorf("rationale does not quote the policy: %q", r.Rationale)
	}
}

func TestParamsErrors(t *testing.T) {
	for _, tc := range []struct {
		src       string
		line, col int
		msg       string
	}{
		{"report_removal: sometimes\n", 1, 17, "report_removal must be true or false"},
		{"allow:\n  - serial: X1\n", 2, 5, "needs a reason"},
		{"allow:\n  - reason: school stick\n", 2, 5, "at least one of serial, vendor, model"},
		{"allow:\n  - serial: \"[abc\"\n    reason: r\n", 2, 13, "bad glob"},
		{"allow:\n  - serial: X1\n    colour: red\n    reason: r\n", 3, 5, `unknown param "colour"`},
		{"allow: stick\n", 1, 8, "allow must be a list"},
		{"allow:\n  - X1\n", 2, 5, "allow entries must be mappings"},
		{"allow:\n  - serial: [1, 2]\n    reason: r\n", 2, 13, "serial must be a string"},
		{"alow: []\n", 1, 1, `unknown param "alow"`},
	} {
		var doc yaml.Node
		if err := yaml.Unmarshal([]byte(tc.src), &doc); err != nil {
			t.Fatal(err)
		}
		err := Check{}.ValidateParams(doc.Content[0])
		var re *rules.Error
		if !errors.As(err, &re) {
			t.Errorf("%q: want *rules.Error, got %v", tc.src, err)
			continue
		}
		if re.Line != tc.line || re.Col != tc.col || !strings.Contains(re.Msg, tc.msg) {
			t.Errorf("%q: got %d:%d %q, want %d:%d %q", tc.src, re.Line, re.Col, re.Msg, tc.line, tc.col, tc.msg)
		}
	}
	ok := "report_removal: true\nallow:\n  - serial: \"4C53*\"\n    vendor: sandisk\n    reason: school-issued\n"
	var doc yaml.Node
	yaml.Unmarshal([]byte(ok), &doc)
	p, err := parseParams(doc.Content[0])
	if err != nil || !p.ReportRemoval || len(p.Allow) != 1 || p.Allow[0].Reason != "school-issued" {
		t.Errorf("%+v %v", p, err)
	}
}

func TestMountinfoParsing(t *testing.T) {
	ms := parseMountinfo("36 35 98:0 /mnt1 /mnt\\0402 rw,noatime master:1 - ext3 /dev/root rw,errors=continue\n" +
		"bad line\n37 35 8:1 / /x rw - vfat /dev/sdb1 rw\n")
	if len(ms) != 2 || ms[0].MountPoint != "/mnt 2" || ms[0].Root != "/mnt1" || ms[0].FSType != "ext3" || ms[1].Source != "/dev/sdb1" {
		t.Errorf("%+v", ms)
	}
	for in, want := range map[string]string{`a\040b`: "a b", `tab\011x`: "tab\tx", `back\134s`: `back\s`, `trail\04`: `trail\04`, `x\999`: `x\999`} {
		if got := unescapeOctal(in); got != want {
			t.Errorf("unescapeOctal(%q) = %q, want %q", in, got, want)
		}
	}
	for in, want := range map[string]string{`T7\x20Shield`: "T7 Shield", `a\x2`: `a\x2`, `plain`: "plain", `\xzz`: `\xzz`} {
		if got := unescapeHex(in); got != want {
			t.Errorf("unescapeHex(%q) = %q, want %q", in, got, want)
		}
	}
}

func TestAllowMatching(t *testing.T) {
	m := Medium{Vendor: "SanDisk", Model: "Ultra", AltVendor: "SanDisk", AltModel: "SanDisk 3.2Gen1", Serial: "4C530001230529114283"}
	for _, tc := range []struct {
		e    AllowEntry
		want bool
	}{
		{AllowEntry{Serial: "4C530001*"}, true},
		{AllowEntry{Serial: "4c530001*"}, true}, // case-insensitive
		{AllowEntry{Serial: "XYZ*"}, false},
		{AllowEntry{Vendor: "sandisk", Model: "ultra"}, true},
		{AllowEntry{Vendor: "sandisk", Model: "*3.2Gen1"}, true}, // USB product string
		{AllowEntry{Vendor: "Kingston"}, false},
		{AllowEntry{Vendor: "SanDisk", Serial: "nope"}, false}, // all fields must match
	} {
		_, got := allowed(Params{Allow: []AllowEntry{tc.e}}, m)
		if got != tc.want {
			t.Errorf("%+v: got %v", tc.e, got)
		}
	}
	if _, ok := allowed(Params{Allow: []AllowEntry{{Serial: "*"}}}, Medium{}); ok {
		t.Error("serial glob matched a medium without a serial")
	}
}

func TestMacOSDiskutilFixtures(t *testing.T) {
	read := func(name string) diskInfo {
		t.Helper()
		b, err := os.ReadFile(filepath.Join("testdata", "darwin", name))
		if err != nil {
			t.Fatal(err)
		}
		di, err := parseDiskutil(b)
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		return di
	}
	vol, parent := read("diskutil_disk4s1.plist"), read("diskutil_disk4.plist")
	m, ok := macMedium(vol, parent)
	if !ok {
		t.Fatal("USB stick not removable")
	}
	if m.Device != "disk4s1" || m.Vendor != "SanDisk" || m.Model != "Ultra" || m.Label != "KEYS" || m.MountPoint != "/Volumes/KEYS" ||
		m.FSType != "msdos" || m.SizeBytes != 32009879552 || m.Bus != "usb" || m.VolumeID != "0E1E2C7B-6C51-3A8B-A1C9-4F1B2A3C4D5E" || m.Part != "1" {
		t.Errorf("%+v", m)
	}
	o := observe(m, "inserted")
	if o.Message != "removable storage inserted: SanDisk Ultra 32 GB (disk4s1, label KEYS) mounted at /Volumes/KEYS" || o.Key != "usb/volume=0E1E2C7B-6C51-3A8B-A1C9-4F1B2A3C4D5E/1" {
		t.Errorf("%q %q", o.Message, o.Key)
	}
	if _, ok := allowed(Params{Allow: []AllowEntry{{Vendor: "SanDisk", Model: "Ultra", Reason: "r"}}}, m); !ok {
		t.Error("vendor/model allow entry does not match on macOS")
	}
	if _, ok := macMedium(read("diskutil_dmg.plist"), diskInfo{}); ok {
		t.Error("disk image counted as removable")
	}
	if _, ok := macMedium(read("diskutil_internal.plist"), diskInfo{}); ok {
		t.Error("internal disk counted as removable")
	}
	for _, bad := range []string{"", "<plist><dict><key>x</key>", "<plist><array/></plist>", strings.Repeat("<array>", 100)} {
		if _, err := parseDiskutil([]byte(bad)); err == nil {
			t.Errorf("accepted %q", bad)
		}
	}
}

// TestWindowsStorageDescriptor decodes a STORAGE_DEVICE_DESCRIPTOR laid
// out as Windows returns it for a USB stick.
func TestWindowsStorageDescriptor(t *testing.T) {
	b := make([]byte, 36)
	le := binary.LittleEndian
	le.PutUint32(b[0:], 1)  // Version
	b[8], b[10] = 0x00, 1   // DeviceType (disk), RemovableMedia
	le.PutUint32(b[28:], 7) // BusTypeUsb
	add := func(off int, s string) {
		le.PutUint32(b[off:], uint32(len(b)))
		b = append(b, s...)
		b = append(b, 0)
	}
	add(12, "SanDisk ")
	add(16, "Ultra           ")
	add(20, "1.00")
	add(24, "4C530001230529114283")
	le.PutUint32(b[4:], uint32(len(b))) // Size
	d, err := parseStorageDescriptor(append(b, 0xAA, 0xBB))
	if err != nil {
		t.Fatal(err)
	}
	if !d.Removable || d.BusType != busTypeUsb || d.Vendor != "SanDisk" || d.Product != "Ultra" || d.Serial != "4C530001230529114283" || busName(d.BusType) != "usb" || !removableBus(d.BusType) {
		t.Errorf("%+v", d)
	}
	// Offsets out of range or absent give empty strings, never a panic.
	le.PutUint32(b[24:], 0xFFFFFF)
	le.PutUint32(b[12:], 0)
	if d, err := parseStorageDescriptor(b); err != nil || d.Serial != "" || d.Vendor != "" {
		t.Errorf("%+v %v", d, err)
	}
	if _, err := parseStorageDescriptor(b[:20]); err == nil {
		t.Error("short descriptor accepted")
	}
}

func TestHumanSize(t *testing.T) {
	for n, want := range map[uint64]string{512: "512 B", 1_500_000: "1.5 MB", 32_009_879_552: "32 GB", 1_000_204_886_016: "1.0 TB"} {
		if got := humanSize(n); got != want {
			t.Errorf("humanSize(%d) = %q, want %q", n, got, want)
		}
	}
}

// scriptedSource lists what media holds; Wait returns at a change or when
// ctx ends.
type scriptedSource struct {
	mu      sync.Mutex
	media   []Medium
	changed chan struct{}
}

func (s *scriptedSource) List(context.Context) ([]Medium, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]Medium(nil), s.media...), nil
}

func (s *scriptedSource) Wait(ctx context.Context) {
	select {
	case <-ctx.Done():
	case <-s.changed:
	}
}

func (s *scriptedSource) Close() {}

// TestRunRetriesFailedEmit: an insertion whose finding the engine could not
// record (Emit failed: the spool's disk was full) is recorded by a retry,
// not lost: the stick is never "inserted" again while it stays mounted.
func TestRunRetriesFailedEmit(t *testing.T) {
	old := emitRetry
	emitRetry = 50 * time.Millisecond
	defer func() { emitRetry = old }()
	src := &scriptedSource{changed: make(chan struct{}, 1)}
	rec := newRecorder()
	var mu sync.Mutex
	failing := true
	listed := make(chan struct{}, 16)
	emit := func(ctx context.Context, r *rules.Rule, obs ...checks.Observation) (uint64, uint64, error) {
		mu.Lock()
		f := failing
		failing = false
		mu.Unlock()
		if f {
			listed <- struct{}{}
			return 0, 0, errors.New("spool: no space left on device")
		}
		return rec.emit(ctx, r, obs...)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- run(ctx, []*rules.Rule{ruleFrom(t, "r", "  allow: []\n")}, emit, src, slog.Default()) }()
	defer func() { cancel(); <-done }()
	src.mu.Lock()
	src.media = []Medium{{Device: "sdb1", Vendor: "SanDisk", Model: "Ultra", Serial: "4C530001", MountPoint: "/media/pupil/KEYS", Bus: "usb"}}
	src.mu.Unlock()
	// Run may have listed the empty table first; a change makes it list again.
	src.changed <- struct{}{}
	select {
	case <-listed:
	case <-time.After(30 * time.Second):
		t.Fatal("the first emit never happened")
	}
	select {
	case got := <-rec.ch:
		if got.obs.Details["event"] == nil || !strings.Contains(got.obs.Message, "SanDisk") {
			t.Errorf("retried observation: %+v", got.obs)
		}
	case <-time.After(30 * time.Second):
		t.Fatal("the observation whose emit failed was never recorded")
	}
}
