package cli

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"filippo.io/age"
	"google.golang.org/protobuf/types/known/timestamppb"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/evidencekeys"
	"github.com/vigil-safeguarding/vigil/collector/pki"
	"github.com/vigil-safeguarding/vigil/collector/rulesdist"
	"github.com/vigil-safeguarding/vigil/collector/server"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/findings"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// TestSchoolCommands runs school add|list, token create --school and
// findings list --school as a trust's IT lead would, against a real admin
// socket over a real store.
func TestSchoolCommands(t *testing.T) {
	dir, err := os.MkdirTemp("", "vcli") // short: Unix socket paths are limited
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { os.RemoveAll(dir) })
	log := slog.New(slog.DiscardHandler)
	ca, err := pki.LoadOrCreate(filepath.Join(dir, "pki"), nil)
	if err != nil {
		t.Fatal(err)
	}
	st, err := store.Open(filepath.Join(dir, "badger"), store.Options{Logger: log})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	lis, err := admin.Listen(dir)
	if err != nil {
		t.Fatal(err)
	}
	base, err := pki.LoadOrCreateEvidenceKey(filepath.Join(dir, "pki"))
	if err != nil {
		t.Fatal(err)
	}
	keys, err := evidencekeys.Open(filepath.Join(dir, "pki"), base)
	if err != nil {
		t.Fatal(err)
	}
	dist, err := rulesdist.New(filepath.Join(dir, "rules"), log, rulesdist.WithSchools(nil, filepath.Join(dir, rulesdist.SchoolRulesDir)))
	if err != nil {
		t.Fatal(err)
	}
	hs := &http.Server{Handler: (&admin.Server{Store: st, CA: ca, Agents: server.New(server.Config{Store: st, Logger: log}), Logger: log, Keys: keys,
		SchoolRulesDir: filepath.Join(dir, rulesdist.SchoolRulesDir), SchoolRules: dist}).Handler()}
	go hs.Serve(lis)
	t.Cleanup(func() { hs.Close() })
	run := func(args ...string) (string, string, int) {
		var out, errb bytes.Buffer
		code := Main(append(args[:2:2], append([]string{"--data", dir}, args[2:]...)...), &out, &errb)
		return out.String(), errb.String(), code
	}

	if out, stderr, code := run("school", "list"); code != 0 || !strings.Contains(out, "default") || strings.Count(out, "\n") != 2 {
		t.Fatalf("a new collector is a trust of one: exit %d\n%s%s", code, out, stderr)
	}
	if out, stderr, code := run("school", "add", "--name", "Oak Primary"); code != 0 || !strings.Contains(out, "school oak-primary added") {
		t.Fatalf("add: exit %d %s %s", code, out, stderr)
	}
	if _, stderr, code := run("school", "add", "--name", "OAK PRIMARY"); code == 0 || !strings.Contains(stderr, "exists") {
		t.Fatalf("duplicate name: exit %d %s", code, stderr)
	}
	if _, stderr, code := run("school", "add"); code == 0 || !strings.Contains(stderr, "--name") {
		t.Fatalf("no name: exit %d %s", code, stderr)
	}
	out, _, code := run("school", "list", "--json")
	var all []store.School
	if code != 0 || json.Unmarshal([]byte(out), &all) != nil || len(all) != 2 || all[1].Name != "Oak Primary" {
		t.Fatalf("list: exit %d %s", code, out)
	}
	entries, _ := st.AccessLog()
	if len(entries) != 1 || entries[0].Action != "add-school" || !strings.Contains(entries[0].Detail, "oak-primary") {
		t.Errorf("adding a school is not in the access log: %+v", entries)
	}

	if _, stderr, code := run("token", "create", "--group", "pupils", "--school", "Elm High"); code == 0 || !strings.Contains(stderr, "no school") {
		t.Fatalf("token for an unknown school: exit %d %s", code, stderr)
	}
	if out, stderr, code := run("token", "create", "--group", "pupils", "--school", "Oak Primary"); code != 0 || out == "" {
		t.Fatalf("token create --school: exit %d %s %s", code, out, stderr)
	}
	if out, _, _ := run("token", "list"); !strings.Contains(out, "oak-primary") {
		t.Errorf("token list does not show the school:\n%s", out)
	}

	// school retention: a school's own, in the list and the access log;
	// the default school's is the installation's.
	if _, stderr, code := run("school", "retention", "--school", "default", "--retention", "default=30d", "--reason", "x"); code == 0 || !strings.Contains(stderr, "serve --retention") {
		t.Errorf("retention of the default school: exit %d %s", code, stderr)
	}
	if _, stderr, code := run("school", "retention", "--school", "Oak Primary", "--retention", "selftest=seven", "--reason", "x"); code == 0 || !strings.Contains(stderr, "selftest") {
		t.Errorf("a bad retention: exit %d %s", code, stderr)
	}
	if _, stderr, code := run("school", "retention", "--school", "Oak Primary", "--retention", "default=30d"); code == 0 || !strings.Contains(stderr, "--reason") {
		t.Errorf("a retention without a reason: exit %d %s", code, stderr)
	}
	if out, stderr, code := run("school", "retention", "--school", "Oak Primary", "--retention", "default=365d,selftest=30d", "--reason", "the academy's records policy"); code != 0 || !strings.Contains(out, "default=365d,selftest=30d") {
		t.Fatalf("school retention: exit %d %s %s", code, out, stderr)
	}
	if out, _, _ := run("school", "list"); !strings.Contains(out, "default=365d,selftest=30d") || !strings.Contains(out, "the installation's") {
		t.Errorf("school list does not show the retention:\n%s", out)
	}
	if entries, _ := st.AccessLog(); entries[len(entries)-1].Action != "school-retention" || entries[len(entries)-1].Reason != "the academy's records policy" {
		t.Errorf("the retention change is not in the access log: %+v", entries[len(entries)-1])
	}

	// school hours: checked as serve checks --working-hours.
	if _, stderr, code := run("school", "hours", "--school", "Oak Primary", "--working-hours", "sometimes", "--reason", "x"); code == 0 || !strings.Contains(stderr, "working hours") {
		t.Errorf("bad working hours: exit %d %s", code, stderr)
	}
	if _, stderr, code := run("school", "hours", "--school", "Oak Primary", "--working-hours", "mon-fri 08:30-15:00", "--timezone", "Mars/Olympus", "--reason", "x"); code == 0 || !strings.Contains(stderr, "Mars/Olympus") {
		t.Errorf("bad time zone: exit %d %s", code, stderr)
	}
	if _, stderr, code := run("school", "hours", "--school", "default", "--working-hours", "mon-fri 08:30-15:00", "--reason", "x"); code == 0 || !strings.Contains(stderr, "serve --working-hours") {
		t.Errorf("hours of the default school: exit %d %s", code, stderr)
	}
	if out, stderr, code := run("school", "hours", "--school", "Oak Primary", "--working-hours", "mon-fri 08:30-15:00", "--reason", "a primary's day"); code != 0 || !strings.Contains(out, "mon-fri 08:30-15:00 (Europe/London)") {
		t.Fatalf("school hours: exit %d %s %s", code, out, stderr)
	}
	if out, _, _ := run("school", "list"); !strings.Contains(out, "mon-fri 08:30-15:00 (Europe/London)") {
		t.Errorf("school list does not show the hours:\n%s", out)
	}
	if entries, _ := st.AccessLog(); entries[len(entries)-1].Action != "school-hours" {
		t.Errorf("the hours change is not in the access log: %+v", entries[len(entries)-1])
	}

	// school on-call: the school's own staff, never another school's.
	for _, u := range []store.User{{Username: "oakdsl", Role: "dsl", School: "oak-primary"}, {Username: "otherdsl", Role: "dsl"}} {
		u.PasswordHash = []byte("x")
		if err := st.CreateUser(u); err != nil {
			t.Fatal(err)
		}
	}
	if _, stderr, code := run("school", "on-call", "--school", "Oak Primary", "--users", "oakdsl,otherdsl", "--reason", "rota"); code == 0 || !strings.Contains(stderr, `"otherdsl" does not review school oak-primary`) {
		t.Fatalf("another school's account on call: exit %d %s", code, stderr)
	}
	if _, stderr, code := run("school", "on-call", "--school", "Oak Primary", "--users", "nobody", "--reason", "rota"); code == 0 || !strings.Contains(stderr, "no such console account") {
		t.Fatalf("unknown account on call: exit %d %s", code, stderr)
	}
	if out, stderr, code := run("school", "on-call", "--school", "Oak Primary", "--users", "oakdsl", "--reason", "autumn rota"); code != 0 || !strings.Contains(out, "on call out of hours: oakdsl") {
		t.Fatalf("school on-call: exit %d %s %s", code, out, stderr)
	}
	if out, _, _ := run("school", "list"); !strings.Contains(out, "oakdsl") {
		t.Errorf("school list does not show the on-call users:\n%s", out)
	}
	if entries, _ := st.AccessLog(); entries[len(entries)-1].Action != "school-on-call" || entries[len(entries)-1].Reason != "autumn rota" {
		t.Errorf("the on-call change is not in the access log: %+v", entries[len(entries)-1])
	}
	if _, stderr, code := run("school", "on-call", "--school", "default", "--users", "otherdsl", "--reason", "x"); code == 0 || !strings.Contains(stderr, "installation's") {
		t.Errorf("default school's on call: exit %d %s", code, stderr)
	}

	// school rules: a folder's files become the school's overrides once
	// they validate over the trust's pack; a bad set is refused whole with
	// file:line and changes nothing.
	over := t.TempDir()
	writeOver := func(rel, body string) {
		t.Helper()
		p := filepath.Join(over, filepath.FromSlash(rel))
		if err := os.MkdirAll(filepath.Dir(p), 0o700); err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(p, []byte(body), 0o600); err != nil {
			t.Fatal(err)
		}
	}
	writeOver("keywords/oak-slang.txt", "#! rule: keywords-oak-slang\n#! category: bullying\n#! severity: medium\n#! name: Oak slang\noakslang ; severity=high # heard at Oak\n")
	writeOver("broken.yaml", "id: [unclosed\n")
	if _, stderr, code := run("school", "rules", "--school", "Oak Primary", "--from", over, "--reason", "oak's words"); code == 0 || !strings.Contains(stderr, "broken.yaml:2:1") {
		t.Errorf("a broken override set: exit %d %s", code, stderr)
	}
	if _, err := os.Stat(filepath.Join(dir, rulesdist.SchoolRulesDir, "oak-primary")); !os.IsNotExist(err) {
		t.Errorf("a refused set changed the folder: %v", err)
	}
	os.Remove(filepath.Join(over, "broken.yaml"))
	if out, stderr, code := run("school", "rules", "--school", "Oak Primary", "--from", over, "--reason", "oak's words"); code != 0 || !strings.Contains(out, "1 override files validated") {
		t.Fatalf("school rules --from: exit %d %s %s", code, out, stderr)
	}
	if out, _, _ := run("school", "rules", "--school", "Oak Primary"); !strings.Contains(out, "keywords/oak-slang.txt") {
		t.Errorf("school rules does not list the override:\n%s", out)
	}
	if b := dist.Bundle("oak-primary", "pupils"); b == nil || !strings.Contains(string(b.Files["keywords/oak-slang.txt"]), "oakslang") {
		t.Error("the override is not in Oak's bundle")
	}
	if b := dist.Bundle("default", "pupils"); b.Files["keywords/oak-slang.txt"] != nil {
		t.Error("Oak's override reached the default school's bundle")
	}
	if entries, _ := st.AccessLog(); entries[len(entries)-1].Action != "school-rules" || !strings.Contains(entries[len(entries)-1].Detail, "1 files, sha256:") {
		t.Errorf("the rules change is not in the access log: %+v", entries[len(entries)-1])
	}
	if _, stderr, code := run("school", "rules", "--school", "default", "--from", over, "--reason", "x"); code == 0 || !strings.Contains(stderr, "trust's pack") {
		t.Errorf("default school's overrides: exit %d %s", code, stderr)
	}
	if out, _, code := run("school", "rules", "--school", "Oak Primary", "--clear", "--reason", "back to the pack"); code != 0 || !strings.Contains(out, "overrides removed") {
		t.Errorf("school rules --clear: exit %d %s", code, out)
	}
	if b := dist.Bundle("oak-primary", "pupils"); b.Files["keywords/oak-slang.txt"] != nil {
		t.Error("the override stayed in Oak's bundle after --clear")
	}

	// school mail: the school's own relay and sender, checked, logged.
	if _, stderr, code := run("school", "mail", "--school", "Oak Primary", "--relay", "smtp.oak.example", "--from", "safeguarding@oak.example", "--reason", "own domain"); code == 0 || !strings.Contains(stderr, "HOST:PORT") {
		t.Errorf("a relay without a port: exit %d %s", code, stderr)
	}
	if out, stderr, code := run("school", "mail", "--school", "Oak Primary", "--relay", "smtp.oak.example:25", "--from", "safeguarding@oak.example", "--reason", "own domain"); code != 0 || !strings.Contains(out, "by smtp.oak.example:25 from safeguarding@oak.example") {
		t.Fatalf("school mail: exit %d %s %s", code, out, stderr)
	}
	if out, _, _ := run("school", "list"); !strings.Contains(out, "safeguarding@oak.example via smtp.oak.example:25") {
		t.Errorf("school list does not show the school's relay:\n%s", out)
	}
	if entries, _ := st.AccessLog(); entries[len(entries)-1].Action != "school-mail" || entries[len(entries)-1].Reason != "own domain" {
		t.Errorf("the mail change is not in the access log: %+v", entries[len(entries)-1])
	}
	if _, stderr, code := run("school", "mail", "--school", "default", "--relay", "a:25", "--from", "a@b.example", "--reason", "x"); code == 0 || !strings.Contains(stderr, "installation's relay") {
		t.Errorf("default school's relay: exit %d %s", code, stderr)
	}
	if out, _, code := run("school", "mail", "--school", "Oak Primary", "--clear", "--reason", "back to the trust's"); code != 0 || !strings.Contains(out, "the installation's relay") {
		t.Errorf("school mail --clear: exit %d %s", code, out)
	}

	// findings list --school: a device of each school.
	if err := st.PutDevice(store.Device{DeviceID: "dev-default", EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	if err := st.PutDevice(store.Device{DeviceID: "dev-oak", School: "oak-primary", EnrolledAt: time.Now()}); err != nil {
		t.Fatal(err)
	}
	var fs []*vigilv1.Finding
	for _, d := range []string{"dev-default", "dev-oak"} {
		fs = append(fs, &vigilv1.Finding{DeviceId: d, Seq: 1, ObservedAt: timestamppb.Now(), Check: "selftest", RuleId: "selftest",
			RuleVersion: 1, Severity: vigilv1.Severity_SEVERITY_LOW, Category: "agent", Message: "self-test"})
	}
	if _, _, err := st.CommitFindings(context.Background(), fs); err != nil {
		t.Fatal(err)
	}
	for school, want := range map[string]string{"Oak Primary": "dev-oak", "default": "dev-default"} {
		out, stderr, code := run("findings", "list", "--school", school, "--json")
		var f findings.JSON
		if code != 0 || strings.Count(out, "\n") != 1 || json.Unmarshal([]byte(out), &f) != nil || f.DeviceID != want {
			t.Errorf("findings list --school %s: exit %d %s %s", school, code, out, stderr)
		}
	}

	// school export --evidence-key: the school leaves with a key that
	// opens its evidence, and handing it over is recorded.
	exp := filepath.Join(dir, "oak.jsonl")
	keyFile := filepath.Join(dir, "oak.agekey")
	if _, stderr, code := run("school", "export", "--school", "Oak Primary", "--out", exp, "--evidence-key", keyFile); code == 0 || !strings.Contains(stderr, "--reason") {
		t.Fatalf("evidence key without a reason: exit %d %s", code, stderr)
	}
	os.Remove(exp)
	if _, stderr, code := run("school", "export", "--school", "Oak Primary", "--out", exp, "--evidence-key", keyFile, "--reason", "leaving"); code == 0 || !strings.Contains(stderr, "no evidence key of its own") {
		t.Fatalf("evidence key before the school has one: exit %d %s", code, stderr)
	}
	os.Remove(exp)
	oakR, err := keys.Recipient("oak-primary")
	if err != nil {
		t.Fatal(err)
	}
	if out, stderr, code := run("school", "export", "--school", "Oak Primary", "--out", exp, "--evidence-key", keyFile, "--reason", "leaving the trust"); code != 0 || !strings.Contains(out, "evidence key of school oak-primary") {
		t.Fatalf("export with the evidence key: exit %d %s %s", code, out, stderr)
	}
	kf, err := os.Open(keyFile)
	if err != nil {
		t.Fatal(err)
	}
	ids, err := age.ParseIdentities(kf)
	kf.Close()
	if err != nil || len(ids) != 1 || ids[0].(*age.X25519Identity).Recipient().String() != oakR {
		t.Fatalf("the key file: %v %v", ids, err)
	}
	if fi, _ := os.Stat(keyFile); fi.Mode().Perm() != 0o600 {
		t.Errorf("key file mode %v", fi.Mode())
	}
	if entries, _ := st.AccessLog(); entries[len(entries)-1].Action != "export-evidence-key" || entries[len(entries)-1].Reason != "leaving the trust" {
		t.Errorf("handing the key over is not in the access log: %+v", entries[len(entries)-1])
	}
	if _, stderr, code := run("school", "export", "--school", "default", "--out", filepath.Join(dir, "d.jsonl"), "--evidence-key", filepath.Join(dir, "d.key"), "--reason", "x"); code == 0 || !strings.Contains(stderr, "installation's key") {
		t.Errorf("the installation's key handed over: exit %d %s", code, stderr)
	}

	if out, stderr, code := run("school", "delete", "--school", "Oak Primary", "--confirm", "oak-primary", "--reason", "left the trust"); code != 0 || !strings.Contains(out, "evidence key is destroyed") {
		t.Fatalf("school delete: exit %d %s %s", code, out, stderr)
	}
	if keys.Has("oak-primary") {
		t.Error("oak's key outlived its school")
	}
}
