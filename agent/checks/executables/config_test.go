package executables

import (
	"errors"
	"strings"
	"testing"

	"gopkg.in/yaml.v3"

	"github.com/vigil-safeguarding/vigil/agent/checks"
	"github.com/vigil-safeguarding/vigil/rules"
)

func paramsNode(t *testing.T, src string) *yaml.Node {
	var doc yaml.Node
	if err := yaml.Unmarshal([]byte(src), &doc); err != nil {
		t.Fatal(err)
	}
	return doc.Content[0]
}

func TestValidateParamsPositions(t *testing.T) {
	for _, tc := range []struct {
		src        string
		line, col  int
		msgContain string
	}{
		{"action: delete\n", 1, 9, "action must be alert or quarantine"},
		{"paths: [/tmp, relative/dir]\n", 1, 15, "must be absolute"},
		{"debounce: 1ms\n", 1, 11, "debounce"},
		{"max_depth: 3\n", 1, 12, "needs recursive"},
		{"recursive: true\nmax_depth: 99\n", 2, 12, "max_depth"},
		{"max_hash_bytes: lots\n", 1, 17, "bad size"},
		{"bogus: 1\n", 1, 1, "unknown param"},
		{"deny:\n  - {name: tor}\n", 2, 5, "needs a reason"},
		{"deny:\n  - {reason: why}\n", 2, 5, "at least one of"},
		{"deny:\n  - name: tor\n    reason: r\n    severity: urgent\n", 4, 15, "severity"},
		{"deny:\n  - name: tor\n    reason: r\n    category: Filter Bypass\n", 4, 15, "category"},
		{"deny:\n  - sha256: abc\n    reason: r\n", 2, 13, "64 hex"},
		{"deny:\n  - name: \"[tor\"\n    reason: r\n", 2, 11, "bad name glob"},
		{"deny:\n  - name: tor\n    reason: r\n    os: [beos]\n", 4, 10, "os must be"},
		{"allow:\n  - name: tor\n    reason: r\n    category: games\n", 4, 15, "only applies to deny"},
		{"allow:\n  - name: tor\n    reason: r\n    unknown: x\n", 4, 5, "unknown param"},
	} {
		err := Check{}.ValidateParams(paramsNode(t, tc.src))
		var re *rules.Error
		if !errors.As(err, &re) || re.Line != tc.line || re.Col != tc.col || !strings.Contains(re.Msg, tc.msgContain) {
			t.Errorf("%q: got %v, want %d:%d %q", tc.src, err, tc.line, tc.col, tc.msgContain)
		}
	}
	good := `paths: ['/home/*/Downloads', 'C:\Users\*\Downloads']
recursive: true
max_depth: 2
debounce: 200ms
max_hash_bytes: 64MiB
action: quarantine
kill: true
allow:
  - {sha256: 0123456789abcdef0123456789abcdef0123456789abcdef0123456789ABCDEF, reason: approved}
  - {name: "*.sh", path: "/home/*/Downloads/school-*", reason: school scripts}
deny:
  - {name: "tor*", category: filter_bypass, reason: Tor Browser bypasses the school filter}
  - {signer: "Psiphon Inc.", severity: high, action: alert, os: [windows], reason: Psiphon}
`
	if err := (Check{}).ValidateParams(paramsNode(t, good)); err != nil {
		t.Fatal(err)
	}
	c, _ := parseConfig(paramsNode(t, good), "linux")
	if c.maxHash != 64<<20 || c.maxDepth != 2 || len(c.paths) != 1 || len(c.deny) != 1 || c.allow[0].SHA256 != strings.ToLower(c.allow[0].SHA256) {
		t.Errorf("linux config %+v", c)
	}
	if c, _ := parseConfig(paramsNode(t, good), "windows"); len(c.paths) != 1 || c.paths[0] != `C:\Users\*\Downloads` || len(c.deny) != 2 {
		t.Errorf("windows config %+v", c)
	}
	if c, _ := parseConfig(nil, "linux"); c.action != "alert" || c.debounce != DefaultDebounce || c.maxHash != DefaultMaxHashBytes || len(c.paths) == 0 || !c.processes || !c.reportUnapproved {
		t.Errorf("defaults %+v", c)
	}
}

// The default pack's executables rule loads with the registry (this
// package registered) and is valid for every OS.
func TestDefaultPackLoads(t *testing.T) {
	_, errs := rules.LoadFiles(rules.Defaults(), checks.MustRegistry(Check{}))
	for _, e := range errs {
		if strings.Contains(e.File, "executables") {
			t.Errorf("%v", e)
		}
	}
	files := map[string][]byte{"executables.yaml": rules.Defaults()["executables.yaml"]}
	set, errs := rules.LoadFiles(files, checks.MustRegistry(Check{}))
	if errs != nil {
		t.Fatal(errs)
	}
	r := set.Rules[0]
	if r.Check != Kind || r.Schedule.Interval != DefaultInterval {
		t.Fatalf("%+v", r)
	}
	cats := map[string]int{}
	for _, goos := range []string{"linux", "windows", "darwin"} {
		c, err := parseConfig(r.Params, goos)
		if err != nil {
			t.Fatal(err)
		}
		for _, e := range c.deny {
			if len(e.Reason) < 20 {
				t.Errorf("deny[%d] reason too short: %q", e.index, e.Reason)
			}
			cats[e.Category]++
		}
	}
	for _, cat := range []string{"filter_bypass", "remote_access", "games", "hacking_tools"} {
		if cats[cat] == 0 {
			t.Errorf("no %s entries", cat)
		}
	}
	// Spot checks of the lists against names seen in the wild.
	c, _ := parseConfig(r.Params, "windows")
	for name, want := range map[string]string{
		"torbrowser-install-win64-13.0.1_ALL.exe": "filter_bypass",
		"tor.exe":                   "filter_bypass",
		"psiphon3.exe":              "filter_bypass",
		"u2208.exe":                 "filter_bypass",
		"ProtonVPN_v3.2.9.exe":      "filter_bypass",
		"NordVPNSetup.exe":          "filter_bypass",
		"openvpn-gui.exe":           "filter_bypass",
		"AnyDesk.exe":               "remote_access",
		"TeamViewer_Setup_x64.exe":  "remote_access",
		"rustdesk-1.2.3-x86_64.exe": "remote_access",
		"SteamSetup.exe":            "games",
		"EpicInstaller-15.17.1.msi": "games",
		"RobloxPlayerInstaller.exe": "games",
		"MinecraftInstaller.exe":    "games",
		"nmap-7.94-setup.exe":       "hacking_tools",
		"Wireshark-4.2.0-x64.exe":   "hacking_tools",
		"mimikatz.exe":              "hacking_tools",
		"hashcat.exe":               "hacking_tools",
		"john.exe":                  "hacking_tools",
		"msfconsole.bat":            "hacking_tools",
		"setup.exe":                 "",
		"homework.exe":              "",
		"torrent-notes.exe":         "",
		"john-smith-project.sh":     "",
	} {
		e, denied := c.evaluate(subject{names: []string{name}})
		got := ""
		if denied {
			got = e.Category
		}
		if got != want {
			t.Errorf("%s: category %q, want %q", name, got, want)
		}
	}
}
