package bluetooth

import (
	"bufio"
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/godbus/dbus/v5"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"

	"github.com/vigil-safeguarding/vigil/internal/testutil"
)

const python = "/usr/bin/python3"

type syncBuffer = testutil.SyncBuffer

// needTools skips when the D-Bus test tools are missing on a developer
// machine; in CI (CI set) their absence is a failure.
func needTools(t *testing.T) {
	t.Helper()
	var missing []string
	if _, err := exec.LookPath("dbus-daemon"); err != nil {
		missing = append(missing, "dbus-daemon (apt: dbus-daemon)")
	}
	if _, err := os.Stat("/usr/share/dbus-1/session.conf"); err != nil {
		missing = append(missing, "/usr/share/dbus-1/session.conf (apt: dbus-daemon)")
	}
	if err := exec.Command(python, "-c", "import dbusmock.templates.bluez5").Run(); err != nil {
		missing = append(missing, "python3-dbusmock")
	}
	if len(missing) == 0 {
		return
	}
	if os.Getenv("CI") == "" {
		t.Skipf("missing %s", strings.Join(missing, ", "))
	}
	t.Fatalf("missing %s", strings.Join(missing, ", "))
}

// mockBluez is a private bus with python3-dbusmock's bluez5 template on
// it, exported to this process as the system bus.
type mockBluez struct {
	t    *testing.T
	conn *dbus.Conn
}

func startBluez(t *testing.T) *mockBluez {
	t.Helper()
	needTools(t)
	dir := t.TempDir()
	sock := filepath.Join(dir, "bus.sock")
	daemon := exec.Command("dbus-daemon", "--config-file=/usr/share/dbus-1/session.conf", "--address=unix:path="+sock, "--nofork", "--print-address=1")
	out, err := daemon.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	var daemonLog, mockLog syncBuffer
	daemon.Stderr = &daemonLog
	if err := daemon.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { daemon.Process.Kill(); daemon.Wait() })
	addrc := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(out).ReadString('\n')
		addrc <- strings.TrimSpace(line)
	}()
	var addr string
	select {
	case addr = <-addrc:
	case <-time.After(10 * time.Second):
		t.Fatal("dbus-daemon did not print its address")
	}
	if addr == "" {
		t.Fatal("dbus-daemon exited")
	}
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", addr)

	mock := exec.Command(python, "-m", "dbusmock", "--system", "--template", "bluez5")
	mock.Env = append(os.Environ(), "HOME="+dir, "XDG_RUNTIME_DIR="+dir)
	mock.Stdout, mock.Stderr = &mockLog, &mockLog
	if err := mock.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		mock.Process.Kill()
		mock.Wait()
		if t.Failed() {
			t.Logf("dbus-daemon:\n%s\ndbusmock:\n%s", daemonLog.String(), mockLog.String())
		}
	})

	ctx, cancel := context.WithCancel(context.Background())
	t.Cleanup(cancel)
	conn, err := dbus.ConnectSystemBus(dbus.WithContext(ctx))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { conn.Close() })
	deadline := time.Now().Add(15 * time.Second)
	for {
		var has bool
		if err := conn.BusObject().Call("org.freedesktop.DBus.NameHasOwner", 0, bluezName).Store(&has); err != nil {
			t.Fatal(err)
		}
		if has {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("dbusmock did not claim org.bluez within 15s")
		}
		time.Sleep(50 * time.Millisecond)
	}
	return &mockBluez{t: t, conn: conn}
}

func (m *mockBluez) call(path dbus.ObjectPath, method string, args ...any) {
	m.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := m.conn.Object(bluezName, path).CallWithContext(ctx, method, 0, args...).Err; err != nil {
		m.t.Fatalf("%s %s: %v", path, method, err)
	}
}

func (m *mockBluez) addAdapter(name string) {
	m.call("/", "org.bluez.Mock.AddAdapter", name, "vigil-test")
}

func (m *mockBluez) removeAdapter(name string) {
	m.call("/", "org.bluez.Mock.RemoveAdapter", name)
}

func (m *mockBluez) set(adapter, prop string, v bool) {
	m.call(dbus.ObjectPath("/org/bluez/"+adapter), propertiesIface+".Set", adapterIface, prop, dbus.MakeVariant(v))
}

func pollOnce(t *testing.T, rule *rules.Rule) []checks.Observation {
	t.Helper()
	rec := newRecorder()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := (Check{}).Poll(ctx, rule, rec.emit); err != nil {
		t.Fatal(err)
	}
	return rec.all()
}

func TestBluezPollPupilPowered(t *testing.T) {
	m := startBluez(t)
	rule := loadRule(t, "bluetooth-pupils")

	obs := pollOnce(t, rule)
	if len(obs) != 1 || obs[0].Key != "" || obs[0].Status != "pass" || obs[0].Message != "no Bluetooth adapter" || obs[0].Details["source"] != "bluez" {
		t.Fatalf("no adapter: %+v", obs)
	}

	m.addAdapter("hci0")
	m.set("hci0", "Powered", true)
	obs = pollOnce(t, rule)
	if len(obs) != 1 {
		t.Fatalf("%+v", obs)
	}
	o := obs[0]
	if o.Status != "fail" || o.Key != "hci0" || o.Message != "Bluetooth adapter hci0 is powered on (policy: off)" {
		t.Errorf("powered: %+v", o)
	}
	if o.Details["adapter"] != "hci0" || o.Details["address"] != "00:01:02:03:04:05" || o.Details["powered"] != true || o.Details["discoverable"] != false || o.Details["source"] != "bluez" {
		t.Errorf("details: %v", o.Details)
	}

	m.set("hci0", "Powered", false)
	if obs = pollOnce(t, rule); len(obs) != 1 || obs[0].Status != "pass" {
		t.Errorf("off: %+v", obs)
	}
}

func TestBluezStaffDiscoverable(t *testing.T) {
	m := startBluez(t)
	rule := loadRule(t, "bluetooth-staff")
	m.addAdapter("hci0")
	m.set("hci0", "Powered", true)
	m.set("hci0", "Discoverable", false)
	if obs := pollOnce(t, rule); len(obs) != 1 || obs[0].Status != "pass" || !strings.Contains(obs[0].Message, "not discoverable") {
		t.Errorf("hidden: %+v", obs)
	}
	m.set("hci0", "Discoverable", true)
	obs := pollOnce(t, rule)
	if len(obs) != 1 || obs[0].Status != "fail" || obs[0].Message != "Bluetooth adapter hci0 is discoverable (policy: hidden or off)" || obs[0].Details["discoverable"] != true {
		t.Errorf("discoverable: %+v", obs)
	}
}

// TestBluezRunPowerOff: in run mode, switching the adapter off over D-Bus
// gives a pass within 2 s (signal-driven, not the 5 min re-poll).
func TestBluezRunPowerOff(t *testing.T) {
	m := startBluez(t)
	m.addAdapter("hci0")
	m.set("hci0", "Powered", true)
	rule := loadRule(t, "bluetooth-pupils")
	rec := newRecorder()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- (Check{}).Run(ctx, []*rules.Rule{rule}, rec.emit) }()
	defer func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Error(err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return within 5s of cancel")
		}
	}()
	rec.waitFor(t, 5*time.Second, "initial fail", func(o checks.Observation) bool { return o.Key == "hci0" && o.Status == "fail" })
	// Let the subscription settle so the measurement is of the signal path.
	time.Sleep(300 * time.Millisecond)

	start := time.Now()
	m.set("hci0", "Powered", false)
	o := rec.waitFor(t, 2*time.Second, "pass after power-off", func(o checks.Observation) bool { return o.Key == "hci0" && o.Status == "pass" })
	lat := time.Since(start)
	t.Logf("D-Bus Powered=false -> pass observation latency: %v (%s)", lat, o.Message)

	// A second adapter appearing (InterfacesAdded) is reported too, and
	// its removal (InterfacesRemoved) gives a final pass.
	m.addAdapter("hci1")
	rec.waitFor(t, 2*time.Second, "hci1 fail", func(o checks.Observation) bool { return o.Key == "hci1" && o.Status == "fail" })
	m.removeAdapter("hci1")
	rec.waitFor(t, 2*time.Second, "hci1 gone", func(o checks.Observation) bool {
		return o.Key == "hci1" && o.Status == "pass" && o.Details["gone"] == true
	})
}

// TestRfkillFallback: with no reachable bus, the Linux reader falls back
// to rfkill (fixture tree).
func TestRfkillFallback(t *testing.T) {
	t.Setenv("DBUS_SYSTEM_BUS_ADDRESS", "unix:path="+filepath.Join(t.TempDir(), "nobus.sock"))
	old := rfkillDir
	rfkillDir = filepath.Join("testdata", "rfkill")
	defer func() { rfkillDir = old }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := readAdapters(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if s.Source != "rfkill" || len(s.Adapters) != 3 || !strings.Contains(s.Note, "BlueZ not reachable") {
		t.Fatalf("%+v", s)
	}
	obs := pollOnce(t, loadRule(t, "bluetooth-pupils"))
	if len(obs) != 3 || obs[0].Key != "hci0" || obs[0].Status != "fail" || obs[0].Details["source"] != "rfkill" {
		t.Errorf("%+v", obs)
	}
	// Neither BlueZ nor rfkill: no adapter, a pass that says why.
	rfkillDir = filepath.Join(t.TempDir(), "none")
	obs = pollOnce(t, loadRule(t, "bluetooth-pupils"))
	if len(obs) != 1 || obs[0].Message != "no Bluetooth adapter" || !strings.Contains(obs[0].Details["note"].(string), "BlueZ not reachable") {
		t.Errorf("%+v", obs)
	}
}
