package notify

import (
	"errors"
	"net"
	"net/mail"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/auth"
	"github.com/vigil-safeguarding/vigil/collector/store"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// smtpServer starts a real SMTP server (aiosmtpd) on loopback that files
// every message into a Maildir.
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
	deadline := time.Now().Add(60 * time.Second)
	for {
		c, err := net.Dial("tcp", addr)
		if err == nil {
			c.Close()
			return addr, maildir
		}
		if time.Now().After(deadline) {
			t.Fatalf("aiosmtpd did not listen on %s", addr)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

type received struct {
	to, subject, body string
	raw               string
}

func mailbox(t *testing.T, dir string) []received {
	t.Helper()
	files, _ := filepath.Glob(filepath.Join(dir, "new", "*"))
	var out []received
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			continue
		}
		m, err := mail.ReadMessage(strings.NewReader(string(b)))
		if err != nil {
			t.Fatalf("%s: %v", f, err)
		}
		body := new(strings.Builder)
		buf := make([]byte, 4096)
		for {
			n, err := m.Body.Read(buf)
			body.Write(buf[:n])
			if err != nil {
				break
			}
		}
		out = append(out, received{to: m.Header.Get("To"), subject: m.Header.Get("Subject"), body: body.String(), raw: string(b)})
	}
	return out
}

// waitMail waits for n messages. within is raised to 60 s: it is a
// liveness bound, and mail goes through a Python SMTP server that a busy
// 2-core machine can make slow.
func waitMail(t *testing.T, dir string, n int, within time.Duration) []received {
	t.Helper()
	within = max(within, 60*time.Second)
	deadline := time.Now().Add(within)
	for {
		got := mailbox(t, dir)
		if len(got) >= n {
			return got
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d messages after %v, want %d: %+v", len(got), within, n, got)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// TestNotificationsOverSMTP: a new alert at or above the severity e-mails
// the routed reviewers with a link and nothing sensitive; unacknowledged,
// it escalates to the headteacher, who may then open it (the console's
// rule); an acknowledged alert does not escalate; a low alert is not
// e-mailed.
func TestNotificationsOverSMTP(t *testing.T) {
	addr, maildir := smtpServer(t)
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "dsl1@school.test")
	e.user("dsl2", RoleDSL, false, "") // no address: skipped
	head := e.user("head", RoleHeadteacher, false, "head@school.test")
	e.people(store.Person{Username: "pupil1", DisplayName: "Alice Pupil", Role: "pupil"})
	// The clock stands still until the test moves it past the escalation
	// time, so acknowledging "before the escalation" does not depend on
	// how fast the machine is.
	t0 := time.Now()
	e.setNow(t0)
	e.run(e.notifier(Config{SMTPAddr: addr, From: "vigil@school.test", MinSeverity: vigilv1.Severity_SEVERITY_HIGH,
		EscalateAfter: 1500 * time.Millisecond, ConsoleURL: "https://vigil.school.test/", Interval: 100 * time.Millisecond}))

	e.alert("pupil1", "bullying", vigilv1.Severity_SEVERITY_MEDIUM, "below threshold", time.Now())
	ackDev, ackSeq := e.alert("pupil1", "drugs", vigilv1.Severity_SEVERITY_HIGH, "acked term", time.Now())
	dev, seq := e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "kill myself", time.Now())
	id := store.AlertID(dev, seq)
	msgs := waitMail(t, maildir, 2, 10*time.Second)
	// Acknowledge one before the escalation time.
	if _, err := e.st.UpdateAlertState(ackDev, ackSeq, func(st *store.AlertState) error {
		st.Status = "in_review"
		st.History = append(st.History, store.HistoryEntry{Time: t0, By: "dsl1", Action: "start_review"})
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for _, m := range msgs {
		if m.to != "dsl1@school.test" || m.subject != "Vigil: new alert needs review" {
			t.Errorf("message: to %q subject %q", m.to, m.subject)
		}
	}
	link := "https://vigil.school.test/#/alerts/" + id
	found := false
	for _, m := range msgs {
		found = found || strings.Contains(m.body, link)
	}
	if !found {
		t.Errorf("no message links %s: %+v", link, msgs)
	}
	for _, m := range msgs {
		for _, secret := range []string{"kill myself", "acked term", "pupil1", "Alice", "self_harm", "drugs", "below threshold"} {
			if strings.Contains(m.raw, secret) {
				t.Errorf("message contains %q:\n%s", secret, m.raw)
			}
		}
	}
	visibleToHead := func() bool {
		t.Helper()
		a, err := e.st.GetAlert(dev, seq)
		if err != nil {
			t.Fatal(err)
		}
		return e.cons.Visible(&head, a)
	}
	// The headteacher cannot see the pupil alert before escalation.
	if visibleToHead() {
		t.Errorf("headteacher sees the pupil alert before escalation")
	}
	e.setNow(t0.Add(2 * time.Second))
	waitMail(t, maildir, 3, 10*time.Second)
	time.Sleep(500 * time.Millisecond) // anything else would have arrived by now
	msgs = mailbox(t, maildir)
	if len(msgs) != 3 {
		t.Fatalf("%d messages, want 3 (2 new + 1 escalation): %+v", len(msgs), msgs)
	}
	var esc *received
	for i := range msgs {
		if msgs[i].to == "head@school.test" {
			esc = &msgs[i]
		}
	}
	if esc == nil || !strings.Contains(esc.body, link) || strings.Contains(esc.raw, "kill myself") {
		t.Fatalf("escalation: %+v", esc)
	}
	if !visibleToHead() {
		t.Fatalf("headteacher cannot see the alert after escalation")
	}
	a, err := e.st.GetAlert(dev, seq)
	if err != nil {
		t.Fatal(err)
	}
	var actions []string
	for _, h := range a.State.History {
		actions = append(actions, h.By+":"+h.Action)
	}
	if strings.Join(actions, " ") != "vigil:notified vigil:escalated" {
		t.Errorf("history %v", actions)
	}
}

// unreadableAlerts is the real store with GetAlert failing while fail is
// set, as it does when the database cannot be read (a damaged block).
type unreadableAlerts struct {
	Store
	fail   atomic.Bool
	failed atomic.Int32
}

func (u *unreadableAlerts) GetAlert(device string, seq uint64) (*store.Alert, error) {
	if u.fail.Load() {
		u.failed.Add(1)
		return nil, errors.New("read alert: simulated damaged block")
	}
	return u.Store.GetAlert(device, seq)
}

// TestEscalationSurvivesAReadError: while the store cannot read an
// unacknowledged alert, the notifier retries instead of taking the error
// for "acknowledged"; once the read works again the alert escalates.
func TestEscalationSurvivesAReadError(t *testing.T) {
	addr, maildir := smtpServer(t)
	e := newEnv(t)
	e.user("dsl1", RoleDSL, false, "dsl1@school.test")
	e.user("head", RoleHeadteacher, false, "head@school.test")
	e.people(store.Person{Username: "pupil1", DisplayName: "Alice Pupil", Role: "pupil"})
	t0 := time.Now()
	e.setNow(t0)
	n := e.notifier(Config{SMTPAddr: addr, From: "vigil@school.test", MinSeverity: vigilv1.Severity_SEVERITY_HIGH,
		EscalateAfter: time.Second, ConsoleURL: "https://vigil.school.test/", Interval: 50 * time.Millisecond})
	flaky := &unreadableAlerts{Store: n.st}
	n.st = flaky
	e.run(n)
	e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "kill myself", time.Now())
	waitMail(t, maildir, 1, 60*time.Second)
	flaky.fail.Store(true)
	e.setNow(t0.Add(5 * time.Second)) // past the escalation time
	for deadline := time.Now().Add(60 * time.Second); flaky.failed.Load() < 3; {
		if time.Now().After(deadline) {
			t.Fatalf("the notifier read the alert %d times in 60 s, want 3 failed reads", flaky.failed.Load())
		}
		time.Sleep(20 * time.Millisecond)
	}
	if n := len(mailbox(t, maildir)); n != 1 {
		t.Fatalf("%d messages while the alert could not be read, want 1", n)
	}
	flaky.fail.Store(false)
	msgs := waitMail(t, maildir, 2, 60*time.Second)
	if msgs[0].to != "head@school.test" && msgs[1].to != "head@school.test" {
		t.Errorf("no escalation to the headteacher: %+v", msgs)
	}
}

const (
	RoleDSL         = auth.RoleDSL
	RoleHeadteacher = auth.RoleHeadteacher
	RoleGovernor    = auth.RoleGovernor
)

// TestCoverageMailBySchool: a device's coverage alarm is e-mailed to its
// own school's technicians (and a trust IT lead granted that school), never
// to another school's: the same tenancy policy as every console page.
func TestCoverageMailBySchool(t *testing.T) {
	addr, dir := smtpServer(t)
	e := newEnv(t)
	if _, err := e.st.AddSchool(store.School{ID: "oak", Name: "Oak"}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.PutDevice(store.Device{DeviceID: testDevice, Hostname: "ash-lap"}); err != nil {
		t.Fatal(err)
	}
	e.user("ashtech", auth.RoleTechnician, false, "ashtech@school.test")
	oaktech := e.user("oaktech", auth.RoleTechnician, false, "oaktech@school.test")
	e.user("trustit", auth.RoleTechnician, false, "trustit@school.test")
	for name, fn := range map[string]func(*store.User) error{
		oaktech.Username: func(u *store.User) error { u.School = "oak"; return nil },
		"trustit":        func(u *store.User) error { u.School = "oak"; u.Granted = []string{store.DefaultSchool}; return nil },
	} {
		if _, err := e.st.UpdateUser(name, fn); err != nil {
			t.Fatal(err)
		}
	}
	n := e.notifier(Config{SMTPAddr: addr, From: "vigil@school.test", ConsoleURL: "https://vigil.school.test"})
	sent, err := n.MailCoverage(t.Context(), []string{auth.RoleTechnician}, testDevice, false)
	if err != nil || sent != 2 {
		t.Fatalf("MailCoverage: %d sent, %v; want 2", sent, err)
	}
	got := waitMail(t, dir, 2, time.Minute)
	var to []string
	for _, m := range got {
		to = append(to, m.to)
	}
	sort.Strings(to)
	if strings.Join(to, " ") != "ashtech@school.test trustit@school.test" {
		t.Errorf("coverage e-mail went to %v", to)
	}
}

// TestMailBySchoolRelay: a school that set its own relay and sender
// (store.SetSchoolMail) has its alert and coverage e-mails sent through
// them, from its own address; a school that did not, through the
// installation's. Two real SMTP servers.
func TestMailBySchoolRelay(t *testing.T) {
	instAddr, instDir := smtpServer(t)
	oakAddr, oakDir := smtpServer(t)
	e := newEnv(t)
	if _, err := e.st.AddSchool(store.School{ID: "oak", Name: "Oak"}); err != nil {
		t.Fatal(err)
	}
	if _, err := e.st.SetSchoolMail("oak", oakAddr, "safeguarding@oak.test"); err != nil {
		t.Fatal(err)
	}
	const ashDevice = "ashashashashashashashashas"
	if err := e.st.PutDevice(store.Device{DeviceID: testDevice, School: "oak", Group: "pupils"}); err != nil {
		t.Fatal(err)
	}
	if err := e.st.PutDevice(store.Device{DeviceID: ashDevice, Group: "pupils"}); err != nil {
		t.Fatal(err)
	}
	for _, u := range []struct{ name, role, school string }{{"oakdsl", RoleDSL, "oak"}, {"oaktech", auth.RoleTechnician, "oak"}, {"ashtech", auth.RoleTechnician, ""}} {
		e.user(u.name, u.role, false, u.name+"@school.test")
		if _, err := e.st.UpdateUser(u.name, func(x *store.User) error { x.School = u.school; return nil }); err != nil {
			t.Fatal(err)
		}
	}
	mailOf := func(device string) (string, string) {
		school, _ := e.st.DeviceSchool(device)
		sc, err := e.st.FindSchool(school)
		if err != nil {
			return "", ""
		}
		return sc.MailRelay, sc.MailFrom
	}
	n := e.notifier(Config{SMTPAddr: instAddr, From: "vigil@trust.test", MailOf: mailOf, MinSeverity: vigilv1.Severity_SEVERITY_HIGH,
		ConsoleURL: "https://vigil.trust.test", Interval: 100 * time.Millisecond})
	for _, dev := range []string{testDevice, ashDevice} {
		if sent, err := n.MailCoverage(t.Context(), []string{auth.RoleTechnician}, dev, false); err != nil || sent != 1 {
			t.Fatalf("coverage mail about %s: %d sent, %v", dev, sent, err)
		}
	}
	e.run(n)
	e.alert("pupil1", "self_harm", vigilv1.Severity_SEVERITY_CRITICAL, "oak term", time.Now()) // on testDevice, Oak's
	oak := waitMail(t, oakDir, 2, time.Minute)
	inst := waitMail(t, instDir, 1, time.Minute)
	from := func(m received) string {
		msg, err := mail.ReadMessage(strings.NewReader(m.raw))
		if err != nil {
			t.Fatal(err)
		}
		return msg.Header.Get("From")
	}
	var oakTo []string
	for _, m := range oak {
		oakTo = append(oakTo, m.to)
		if from(m) != "safeguarding@oak.test" {
			t.Errorf("Oak's mail to %s is from %q", m.to, from(m))
		}
	}
	sort.Strings(oakTo)
	if strings.Join(oakTo, " ") != "oakdsl@school.test oaktech@school.test" {
		t.Errorf("through Oak's relay: %v", oakTo)
	}
	if len(inst) != 1 || inst[0].to != "ashtech@school.test" || from(inst[0]) != "vigil@trust.test" {
		t.Errorf("through the installation's relay: %+v", inst)
	}
	for _, bad := range [][2]string{{"oak-relay", "x@oak.test"}, {oakAddr, "Oak <x@oak.test>"}, {oakAddr, ""}} {
		if _, err := e.st.SetSchoolMail("oak", bad[0], bad[1]); !errors.Is(err, store.ErrBadSchool) {
			t.Errorf("SetSchoolMail(%q, %q): %v", bad[0], bad[1], err)
		}
	}
	if _, err := e.st.SetSchoolMail(store.DefaultSchool, oakAddr, "x@oak.test"); !errors.Is(err, store.ErrBadSchool) {
		t.Errorf("the default school's relay set: %v", err)
	}
}
