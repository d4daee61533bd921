package executables

import "testing"

func TestMatchPrecedence(t *testing.T) {
	h1 := "1111111111111111111111111111111111111111111111111111111111111111"
	h2 := "2222222222222222222222222222222222222222222222222222222222222222"
	r := testRule(t, `allow:
  - {sha256: `+h1+`, reason: approved build}
  - {name: "openvpn*", path: "/opt/school/*", reason: school VPN}
  - {name: "*.sh", reason: scripts ok}
deny:
  - {name: "openvpn*", category: filter_bypass, reason: VPN}
  - {sha256: `+h2+`, reason: bad build}
  - {name: "evil*", signer: "Evil Corp*", reason: evil}
`)
	c, err := testCheck.compile(r)
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name, path, hash, signer string
		list                     string
		denied                   bool
	}{
		{"openvpn-gui.exe", "/home/p/Downloads/openvpn-gui.exe", h1, "", "allow", false}, // allow by hash beats deny by name
		{"openvpn-gui.exe", "/home/p/Downloads/openvpn-gui.exe", "", "", "deny", true},
		{"openvpn", "/opt/school/openvpn", "", "", "deny", true}, // deny by name beats allow by name+path
		{"x.sh", "/tmp/x.sh", h2, "", "deny", true},              // deny by hash beats allow by name
		{"x.sh", "/tmp/x.sh", "", "", "allow", false},
		{"evil.exe", "/tmp/evil.exe", "", "", "", false}, // signer required too
		{"EVIL.EXE", "/tmp/EVIL.EXE", "", "evil corp ltd", "deny", true},
		{"game.exe", "/tmp/game.exe", "", "", "", false},
	} {
		s := subject{names: []string{tc.name}, path: tc.path, sha256: tc.hash}
		if tc.signer != "" {
			s.signers = []string{tc.signer}
		}
		e, denied := c.evaluate(s)
		list := ""
		if e != nil {
			list = e.list
		}
		if list != tc.list || denied != tc.denied {
			t.Errorf("%+v: got %s %v", tc, list, denied)
		}
	}
}
