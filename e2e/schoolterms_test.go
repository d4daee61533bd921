package e2e

import (
	"bytes"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// consoleSession is a signed-in console client (cookie plus CSRF token),
// as the browser app uses the API.
type consoleSession struct {
	t    *testing.T
	c    *collector
	hc   *http.Client
	csrf string
}

func signIn(t *testing.T, c *collector, username, password string) *consoleSession {
	t.Helper()
	hc := c.https()
	hc.Jar, _ = cookiejar.New(nil)
	s := &consoleSession{t: t, c: c, hc: hc}
	var me struct {
		CSRFToken string `json:"csrf_token"`
	}
	if code, b := s.do("POST", "/api/v1/session", map[string]string{"username": username, "password": password}, &me); code != 200 {
		t.Fatalf("sign in as %s: %d %s", username, code, b)
	}
	s.csrf = me.CSRFToken
	return s
}

func (s *consoleSession) do(method, path string, body, out any) (int, string) {
	s.t.Helper()
	var rd *bytes.Reader
	if body != nil {
		b, _ := json.Marshal(body)
		rd = bytes.NewReader(b)
	} else {
		rd = bytes.NewReader(nil)
	}
	req, _ := http.NewRequest(method, s.c.url(path), rd)
	req.Header.Set("Content-Type", "application/json")
	if s.csrf != "" {
		req.Header.Set("X-CSRF-Token", s.csrf)
	}
	resp, err := s.hc.Do(req)
	if err != nil {
		s.t.Fatalf("%s %s: %v", method, path, err)
	}
	defer resp.Body.Close()
	var buf bytes.Buffer
	buf.ReadFrom(resp.Body)
	if out != nil {
		json.Unmarshal(buf.Bytes(), out)
	}
	return resp.StatusCode, buf.String()
}

// TestSchoolTermEndToEnd (issue 12): a DSL adds a local term through the
// console API; a bad case is refused with its line; the valid term reaches
// the agent's bundle and a real X11 window title with it raises an alert
// with the DSL's category and severity; once removed the bundle no longer
// has it and the same title raises nothing from it; both decisions are in
// the log with who and why.
func TestSchoolTermEndToEnd(t *testing.T) {
	display, win := xsession(t)
	c := newCollector(t)
	pwFile := filepath.Join(t.TempDir(), "pw")
	const pw = "correct horse battery staple 12"
	os.WriteFile(pwFile, []byte(pw+"\n"), 0o600)
	mustRun(t, "vigil-collector", "user", "add", "--data", c.data, "--username", "dsl1", "--role", "dsl",
		"--display-name", "Dana Lead", "--password-file", pwFile)
	a := enrollAgent(t, c, "pupils")
	a.start()
	helper := start(t, "vigil-agent", "session", "--session-socket", a.sock, "--display", display)
	waitFor(t, 10*time.Second, "session helper connected", func() bool {
		return strings.Contains(helper.log.String(), "watching the screen")
	})
	waitFor(t, 30*time.Second, "agent has its first bundle", func() bool { return a.status().RulesHash != "" })
	defaultHash := a.status().RulesHash
	screen := func(library string) []finding {
		var out []finding
		for _, f := range c.findings(a.id) {
			if f.Check == "screen" && (library == "" || f.Details["library"] == library) {
				out = append(out, f)
			}
		}
		return out
	}
	const lib = "keywords-school-bullying"
	bundleFile := filepath.Join(a.state, "rules", "keywords", "school-bullying.txt")

	dsl := signIn(t, c, "dsl1", pw)
	term := map[string]string{"term": "wonky wes", "category": "bullying", "severity": "high",
		"rationale": "nickname Year 9 pupils use to taunt a classmate (reported by his form tutor)",
		"cases":     "+ lol wonky wes strikes again\n- wes anderson films\n- my wonky table\n+ Snapchat - w0nky wes\n"}

	// A must-not-match case that matches: refused, with its line.
	bad := map[string]string{}
	for k, v := range term {
		bad[k] = v
	}
	bad["cases"] = "+ wonky wes\n- wonky wes is a legend\n"
	var refused struct {
		Error    string
		Problems []struct {
			Field   string
			Line    int
			Message string
		}
	}
	if code, b := dsl.do("POST", "/api/v1/terms", bad, &refused); code != 400 || len(refused.Problems) == 0 ||
		refused.Problems[0].Field != "cases" || refused.Problems[0].Line != 2 {
		t.Fatalf("bad case: %d %s", code, b)
	}

	var added struct{ ID string }
	if code, b := dsl.do("POST", "/api/v1/terms", term, &added); code != 201 || added.ID == "" {
		t.Fatalf("add term: %d %s", code, b)
	}
	waitFor(t, 60*time.Second, "school term in the agent's bundle", func() bool {
		b, _ := os.ReadFile(bundleFile)
		return strings.Contains(string(b), "wonky wes ; severity=high")
	})
	waitFor(t, 30*time.Second, "agent applied the new bundle", func() bool { return a.status().RulesHash != defaultHash })

	setTitle(t, win, "Snapchat - wonky wes lol - Chromium")
	var f finding
	waitFor(t, 60*time.Second, "alert from the school term", func() bool {
		fs := screen(lib)
		if len(fs) > 0 {
			f = fs[0]
		}
		return len(fs) > 0
	})
	if f.Severity != "high" || f.Details["term"] != "wonky wes" || f.RuleID != "screen-keywords" {
		t.Errorf("finding: %+v", f)
	}

	if code, b := dsl.do("POST", "/api/v1/terms/"+added.ID+"/remove", map[string]string{"reason": "the form tutor says it has stopped"}, nil); code != 200 {
		t.Fatalf("remove term: %d %s", code, b)
	}
	waitFor(t, 60*time.Second, "school term gone from the agent's bundle", func() bool {
		_, err := os.Stat(bundleFile)
		return os.IsNotExist(err) && a.status().RulesHash == defaultHash
	})
	// One title with the removed term and a published one: the published
	// term's alert shows the title was matched, with nothing from the
	// removed term.
	before := len(screen(lib))
	setTitle(t, win, "wonky wes - how to kill myself - Google Search")
	waitFor(t, 60*time.Second, "alert from the published term", func() bool { return len(screen("keywords-self-harm")) > 0 })
	if n := len(screen(lib)); n != before {
		t.Errorf("the removed term still alerts: %d findings from %s, had %d", n, lib, before)
	}

	var log struct {
		Decisions []struct {
			Action, By, Reason string
			Term               struct{ ID, Term string }
		}
	}
	if code, b := dsl.do("GET", "/api/v1/terms/decisions", nil, &log); code != 200 || len(log.Decisions) != 2 {
		t.Fatalf("decision log: %d %s", code, b)
	}
	add, rm := log.Decisions[0], log.Decisions[1]
	if add.Action != "added" || add.By != "dsl1" || add.Term.ID != added.ID || !strings.Contains(add.Reason, "form tutor") ||
		rm.Action != "removed" || rm.By != "dsl1" || rm.Reason != "the form tutor says it has stopped" {
		t.Errorf("decision log: %+v", log.Decisions)
	}
}
