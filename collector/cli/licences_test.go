package cli

import (
	"bytes"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/inventory"
	"github.com/vigil-safeguarding/vigil/collector/licences"
	"github.com/vigil-safeguarding/vigil/collector/server"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// TestLicenceAndDisposalCommands runs the commands as a technician would,
// against a real admin socket over a real store.
func TestLicenceAndDisposalCommands(t *testing.T) {
	dir, err := os.MkdirTemp("", "vcli") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	log := slog.New(slog.DiscardHandler)
	st, err := store.Open(filepath.Join(dir, "badger"), store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lis, err := admin.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: (&admin.Server{Store: st, Agents: server.New(server.Config{Store: st, Logger: log}), Logger: log}).Handler()}
	go hs.Serve(lis)
	t.Cleanup(func() { hs.Close() })
	dev := strings.Repeat("Q", 26)
	if err := st.PutDevice(store.Device{DeviceID: dev, Hostname: "music-imac", EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	run := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := Main(append(args[:2:2], append([]string{"--data", dir}, args[2:]...)...), &out, &errb)
		return out.String(), errb.String(), code
	}
	bad := filepath.Join(dir, "bad.csv")
	os.WriteFile(bad, []byte("product,seats,expiry\nLogic Pro,5,\nGarageBand,5,soon\n"), 0o600)
	if _, stderr, code := run("licences", "import", bad); code == 0 || !strings.Contains(stderr, `line 3, column 3 (expiry): "soon"`) {
		t.Fatalf("bad file: exit %d, %s", code, stderr)
	}
	good := filepath.Join(dir, "good.csv")
	os.WriteFile(good, []byte("product,publisher,seats,reference\nLogic Pro,Apple,5,APP-1\n"), 0o600)
	if out, stderr, code := run("licences", "import", good); code != 0 || !strings.Contains(out, "1 added") {
		t.Fatalf("import: exit %d %s %s", code, out, stderr)
	}
	out, stderr, code := run("licences", "reconcile", "--json")
	var rep licences.Report
	if code != 0 || json.Unmarshal([]byte(out), &rep) != nil || len(rep.Products) != 1 || rep.Products[0].Unused != 5 {
		t.Fatalf("reconcile: exit %d %s %s", code, out, stderr)
	}
	if _, stderr, code := run("devices", "dispose", "--device", dev, "--authorised-by", "head", "--personal-data", "pupil recordings", "--method", "sale to staff", "--wiped", "erased"); code == 0 || !strings.Contains(stderr, "PAT") {
		t.Fatalf("sale without PAT: exit %d %s", code, stderr)
	}
	if out, stderr, code := run("devices", "dispose", "--device", dev, "--authorised-by", "head", "--personal-data", "pupil recordings",
		"--method", "WEEE recycler", "--wiped", "erased (APFS secure erase)", "--licences-verified"); code != 0 || !strings.Contains(out, "revoked") {
		t.Fatalf("dispose: exit %d %s %s", code, out, stderr)
	}
	out, _, code = run("inventory", "list", "--json")
	var items []inventory.Item
	if code != 0 || json.Unmarshal([]byte(out), &items) != nil || len(items) != 1 || items[0].Disposed == nil || !items[0].Revoked {
		t.Fatalf("inventory: exit %d %s", code, out)
	}
	if out, _, _ := run("inventory", "list"); !strings.Contains(out, "disposed") || !strings.Contains(out, "music-imac") {
		t.Errorf("inventory table:\n%s", out)
	}
}
