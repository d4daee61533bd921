package e2e

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestScreenLanguagePacksEndToEnd: a school enables language packs in its
// copy of the default screen rule on the collector; the pushed bundle
// makes an Urdu title (Arabic script, from a real X11 window title) a
// critical finding from the Urdu pack; a Welsh help-seeking title is a
// finding one level lower that says why (help_context); a Cyrillic
// homoglyph attack on an English term is still caught, and a Russian title
// that looks like an English term is not.
func TestScreenLanguagePacksEndToEnd(t *testing.T) {
	display, win := xsession(t)
	c := newCollector(t)
	a := enrollAgent(t, c, "pupils")
	a.start()
	helper := start(t, "vigil-agent", "session", "--session-socket", a.sock, "--display", display)
	waitFor(t, 10*time.Second, "session helper connected", func() bool {
		return strings.Contains(helper.log.String(), "watching the screen")
	})
	waitFor(t, 15*time.Second, "first rules bundle applied", func() bool { return a.status().RulesHash != "" })
	before := a.status().RulesHash

	p := filepath.Join(c.data, "rules", "default", "screen.yaml")
	raw, err := os.ReadFile(p)
	if err != nil {
		t.Fatal(err)
	}
	const off = "  languages: []\n"
	if strings.Count(string(raw), off) != 1 {
		t.Fatalf("the seeded screen rule has no single %q", off)
	}
	if err := os.WriteFile(p, []byte(strings.Replace(string(raw), off, "  languages: [ur, cy]\n", 1)), 0o600); err != nil {
		t.Fatal(err)
	}
	// Applied: the agent's copy of the bundle has the edit, and its rules
	// hash has moved on from the one it had before.
	waitFor(t, 30*time.Second, "bundle with language packs applied on the agent", func() bool {
		got, _ := os.ReadFile(filepath.Join(a.state, "rules", "screen.yaml"))
		h := a.status().RulesHash
		return strings.Contains(string(got), "languages: [ur, cy]") && h != "" && h != before
	})

	screenFindings := func() []finding {
		var out []finding
		for _, f := range c.findings(a.id) {
			if f.Check == "screen" {
				out = append(out, f)
			}
		}
		return out
	}
	// The finding from library lib (waiting for it).
	from := func(what, lib string) finding {
		t.Helper()
		var f finding
		waitFor(t, 30*time.Second, what, func() bool {
			for _, x := range screenFindings() {
				if x.Details["library"] == lib {
					f = x
					return true
				}
			}
			return false
		})
		return f
	}

	setTitleUTF8(t, win, "Ноты: сборник нот для фортепиано - Поиск в Google")
	setTitleUTF8(t, win, "میں مرنا چاہتا ہوں - Google Search")
	f := from("Urdu finding", "keywords-ur-self-harm")
	if f.Severity != "critical" || f.Details["term"] != "مرنا چاہتا" || f.Details["title"] != "میں مرنا چاہتا ہوں - Google Search" {
		t.Errorf("Urdu finding: %s %+v", f.Severity, f.Details)
	}

	setTitleUTF8(t, win, "sut i helpu ffrind gyda hunan-niwed - Meic Cymru")
	f = from("Welsh help-seeking finding", "keywords-cy-self-harm")
	if f.Severity != "medium" || f.Details["help_context"] != "meic" || f.Details["severity_before_help"] != "high" {
		t.Errorf("Welsh help-seeking finding: %s %+v", f.Severity, f.Details)
	}

	setTitleUTF8(t, win, "how to кіll mуself - Google Search")
	f = from("homoglyph finding", "keywords-self-harm")
	if f.Severity != "critical" || f.Details["term"] != "kill myself" {
		t.Errorf("homoglyph finding: %s %+v", f.Severity, f.Details)
	}
	// The Russian title before them gave nothing ("нот" is not "hot").
	for _, f := range screenFindings() {
		if strings.Contains(f.Details["title"].(string), "фортепиано") {
			t.Errorf("Russian title matched: %+v", f.Details)
		}
	}
}

// setTitleUTF8 sets the window's _NET_WM_NAME as UTF8_STRING, as browsers
// and toolkits do (xdotool writes it as STRING, which the agent, asking
// for UTF8_STRING, does not read, falling back to WM_NAME as Latin-1).
func setTitleUTF8(t *testing.T, win, title string) {
	t.Helper()
	cmd := exec.Command("xprop", "-id", win, "-f", "_NET_WM_NAME", "8u", "-set", "_NET_WM_NAME", title)
	cmd.Env = append(os.Environ(), "LC_ALL=C.UTF-8")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("xprop: %v %s", err, out)
	}
}
