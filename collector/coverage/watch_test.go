package coverage

import (
	"context"
	"io"
	"log/slog"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/notify"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tenancy"
)

// smtpServer starts a real SMTP server (aiosmtpd) on loopback filing every
// message into a Maildir.
func smtpServer(t *testing.T) (addr, maildir string) {
	t.Helper()
	if err := exec.Command("/usr/bin/python3", "-c", "import aiosmtpd").Run(); err != nil {
		t.Skip("python3-aiosmtpd is not installed (apt-get install python3-aiosmtpd)")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr = l.Addr().String()
	l.Close()
	maildir = filepath.Join(t.TempDir(), "mail")
	cmd := exec.Command("/usr/bin/python3", "-m", "aiosmtpd", "-n", "-l", addr, "-c", "aiosmtpd.handlers.Mailbox", maildir)
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	for deadline := time.Now().Add(60 * time.Second); ; time.Sleep(50 * time.Millisecond) {
		if c, err := net.Dial("tcp", addr); err == nil {
			c.Close()
			return addr, maildir
		}
		if time.Now().After(deadline) {
			t.Fatalf("aiosmtpd did not listen on %s", addr)
		}
	}
}

type msg struct{ to, subject, body string }

// mailbox lists what the SMTP server filed. smtp.SendMail returns after
// the server accepted the message, and aiosmtpd files it before it
// answers, so no waiting is needed.
func mailbox(t *testing.T, dir string) []msg {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "new", "*"))
	var out []msg
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		m, err := mail.ReadMessage(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		body, _ := io.ReadAll(m.Body)
		out = append(out, msg{m.Header.Get("To"), m.Header.Get("Subject"), string(body)})
	}
	return out
}

type clock struct {
	mu  sync.Mutex
	now time.Time
}

func (c *clock) Now() time.Time  { c.mu.Lock(); defer c.mu.Unlock(); return c.now }
func (c *clock) set(t time.Time) { c.mu.Lock(); c.now = t; c.mu.Unlock() }

// TestWatcherMailsOnceAndEscalates: with a controllable clock over a real
// store and the real notifier (collector/notify) to a real SMTP server, a
// staff laptop and a pupil laptop going quiet mid-lesson are e-mailed once
// (technician; DSL too for the pupil's), nothing is sent for the same
// silence after school, the unacknowledged alarm escalates once to the
// headteacher while the acknowledged one does not, and an alarm closes
// when its device is back.
func TestWatcherMailsOnceAndEscalates(t *testing.T) {
	addr, maildir := smtpServer(t)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	clk := &clock{}
	for _, u := range []struct{ name, role string }{{"tech", auth.RoleTechnician}, {"dsl", auth.RoleDSL}, {"head", auth.RoleHeadteacher}} {
		nu, err := auth.NewUser(u.name, u.name, u.role, "a long enough password 1", u.name+"@school.test", false, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		if err := st.CreateUser(nu); err != nil {
			t.Fatal(err)
		}
	}
	london, _ := time.LoadLocation("Europe/London")
	hours, err := notify.ParseSchedule("mon-fri 08:00-16:00", london)
	if err != nil {
		t.Fatal(err)
	}
	w := NewWatcher(Config{Devices: st, Schedule: Schedule{Hours: hours, Heartbeat: 30 * time.Second}, Now: clk.Now,
		Mailer: notify.New(notify.Config{Store: st, Schools: &tenancy.Policy{Dir: st}, Logger: quiet, Now: clk.Now,
			SMTPAddr: addr, From: "vigil@school.test", ConsoleURL: "https://vigil.school.test"}),
		EscalateAfter: 30 * time.Minute, Logger: quiet,
		First: []string{auth.RoleTechnician}, Pupil: []string{auth.RoleDSL}, Escalation: []string{auth.RoleHeadteacher}})

	// Wednesday: both laptops last heard at 17:00, after school.
	lastHeard := time.Date(2026, 12, 2, 17, 0, 0, 0, london)
	for _, d := range []struct{ id, role string }{{"STAFF00000000000000000000A", "staff"}, {"PUPIL00000000000000000000B", "pupil"}} {
		if err := st.PutDevice(store.Device{DeviceID: d.id, Hostname: strings.ToLower(d.id[:5]), LastSeen: lastHeard,
			Presence: store.Presence{Role: d.role}}); err != nil {
			t.Fatal(err)
		}
	}
	ctx := context.Background()
	clk.set(time.Date(2026, 12, 2, 21, 0, 0, 0, london))
	w.Check(ctx)
	clk.set(time.Date(2026, 12, 3, 10, 0, 0, 0, london)) // next morning, in school hours
	w.Check(ctx)
	if got := mailbox(t, maildir); len(got) != 0 {
		t.Fatalf("silence that began after school was e-mailed: %+v", got)
	}
	for _, r := range w.Judge() {
		if r.State != Dormant || r.Alarm.Open {
			t.Fatalf("%s: %s (%s), alarm %+v; want dormant", r.DeviceID, r.State, r.Why, r.Alarm)
		}
	}

	// Thursday: both heard at 10:00, then quiet mid-lesson.
	for _, id := range []string{"STAFF00000000000000000000A", "PUPIL00000000000000000000B"} {
		st.UpdateDevice(id, func(d *store.Device) { d.LastSeen = time.Date(2026, 12, 3, 10, 0, 0, 0, london) })
	}
	clk.set(time.Date(2026, 12, 3, 10, 5, 0, 0, london))
	w.Check(ctx)
	w.Check(ctx) // once: a second pass sends nothing more
	got := mailbox(t, maildir)
	to := map[string]int{}
	for _, m := range got {
		to[m.to]++
		if !strings.Contains(m.body, "https://vigil.school.test/#/devices/") || strings.Contains(m.body, "pupil") || strings.Contains(m.body, "staff") {
			t.Fatalf("mail is not a bare link: %q", m.body)
		}
	}
	if len(got) != 3 || to["tech@school.test"] != 2 || to["dsl@school.test"] != 1 {
		t.Fatalf("first e-mails: %v, want the technician for both and the DSL for the pupil laptop", to)
	}
	if err := w.Ack("STAFF00000000000000000000A", "tech"); err != nil {
		t.Fatal(err)
	}
	if err := w.Ack("UNKNOWN0000000000000000000", "tech"); err == nil {
		t.Fatal("acknowledged an unknown device's alarm")
	}
	clk.set(time.Date(2026, 12, 3, 10, 40, 0, 0, london))
	w.Check(ctx)
	w.Check(ctx)
	got = mailbox(t, maildir)
	if len(got) != 4 || !hasEscalation(got) {
		t.Fatalf("after 35 min: %+v, want one escalation to the headteacher (the acknowledged alarm not escalated)", got)
	}
	// The pupil laptop is back: its alarm closes.
	st.UpdateDevice("PUPIL00000000000000000000B", func(d *store.Device) { d.LastSeen, d.Connected = clk.Now(), true })
	w.Check(ctx)
	for _, r := range w.Judge() {
		if r.DeviceID == "PUPIL00000000000000000000B" && (r.State != Connected || r.Alarm.Open) {
			t.Fatalf("back: %s alarm %+v", r.State, r.Alarm)
		}
		if r.DeviceID == "STAFF00000000000000000000A" && (r.State != Silent || !r.Alarm.Open || r.Alarm.AckedBy != "tech") {
			t.Fatalf("still quiet: %s alarm %+v", r.State, r.Alarm)
		}
	}
}

func hasEscalation(ms []msg) bool {
	n := 0
	for _, m := range ms {
		if m.to == "head@school.test" && strings.Contains(m.subject, "not yet acknowledged") {
			n++
		}
	}
	return n == 1
}
