package e2e

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestSchoolBundlesEndToEnd (issue 13): in a trust of two schools, each
// real agent gets its own school's rules bundle. A term Oak's DSL adds
// reaches Oak's agent and never the default school's; a trust lead who
// sees both schools sets a term trust-wide and it reaches both; Oak
// switches that term off for itself and only Oak's agent loses it; a rules
// override dropped into DATA/school-rules/oak/ reaches Oak's agent alone.
func TestSchoolBundlesEndToEnd(t *testing.T) {
	c := newCollector(t)
	mustRun(t, "vigil-collector", "school", "add", "--data", c.data, "--name", "Oak Primary", "--id", "oak")
	pwFile := filepath.Join(t.TempDir(), "pw")
	const pw = "correct horse battery staple 12"
	os.WriteFile(pwFile, []byte(pw+"\n"), 0o600)
	for _, u := range []struct{ name, school string }{{"lead", ""}, {"oakdsl", "oak"}} {
		args := []string{"user", "add", "--data", c.data, "--username", u.name, "--role", "dsl", "--display-name", u.name, "--password-file", pwFile}
		if u.school != "" {
			args = append(args, "--school", u.school)
		}
		mustRun(t, "vigil-collector", args...)
	}
	mustRun(t, "vigil-collector", "user", "grant", "--data", c.data, "--username", "lead", "--school", "oak", "--reason", "trust safeguarding lead")

	ash := enrollAgent(t, c, "pupils")
	oak := enrollWithToken(t, c, c.token("pupils", "--school", "oak"))
	for _, a := range []*agent{ash, oak} {
		a.start()
		waitFor(t, 30*time.Second, "agent has its first bundle", func() bool { return a.status().RulesHash != "" })
	}
	library := func(a *agent) string {
		b, _ := os.ReadFile(filepath.Join(a.state, "rules", "keywords", "school-bullying.txt"))
		return string(b)
	}
	term := func(text string, trust bool) map[string]any {
		return map[string]any{"term": text, "category": "bullying", "severity": "high", "rationale": "heard in school",
			"cases": "+ lol " + text + " again\n- nothing to see\n", "trust_wide": trust}
	}

	oakDSL, lead := signIn(t, c, "oakdsl", pw), signIn(t, c, "lead", pw)
	if code, b := oakDSL.do("POST", "/api/v1/terms", term("oakley spud", false), nil); code != 201 {
		t.Fatalf("oak adds a term: %d %s", code, b)
	}
	var trust struct{ ID string }
	if code, b := lead.do("POST", "/api/v1/terms", term("trusty rusty", true), &trust); code != 201 {
		t.Fatalf("the lead adds a trust-wide term: %d %s", code, b)
	}
	waitFor(t, 60*time.Second, "oak's agent has both terms", func() bool {
		l := library(oak)
		return strings.Contains(l, "oakley spud") && strings.Contains(l, "trusty rusty")
	})
	waitFor(t, 60*time.Second, "the default school's agent has the trust's term", func() bool {
		return strings.Contains(library(ash), "trusty rusty")
	})
	if strings.Contains(library(ash), "oakley spud") {
		t.Fatal("oak's term reached the default school's agent")
	}

	if code, b := oakDSL.do("POST", "/api/v1/terms/"+trust.ID+"/suppress", map[string]string{"reason": "a pupil's real name here"}, nil); code != 200 {
		t.Fatalf("oak suppresses the trust's term: %d %s", code, b)
	}
	waitFor(t, 60*time.Second, "oak's agent loses the suppressed term", func() bool {
		l := library(oak)
		return strings.Contains(l, "oakley spud") && !strings.Contains(l, "trusty rusty")
	})
	if !strings.Contains(library(ash), "trusty rusty") {
		t.Error("oak's suppression took the term from the default school's agent")
	}

	// A rules override for Oak, by file, as a technician drops it in.
	override := filepath.Join(c.data, "school-rules", "oak", "oak-local.yaml")
	if err := os.MkdirAll(filepath.Dir(override), 0o700); err != nil {
		t.Fatal(err)
	}
	if err := os.WriteFile(override, []byte("# Oak's own rules: none yet\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	waitFor(t, 60*time.Second, "oak's agent has oak's override file", func() bool {
		_, err := os.Stat(filepath.Join(oak.state, "rules", "oak-local.yaml"))
		return err == nil
	})
	if _, err := os.Stat(filepath.Join(ash.state, "rules", "oak-local.yaml")); err == nil {
		t.Error("oak's override reached the default school's agent")
	}
}
