package packaging

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
)

const tok = "vgl1.0123456789abcdef.AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA.zOvDP0RF714zOQtj2mSfEYLNyXlPxJWSuWy2E_bo8kM"

func spec(f Format) Spec {
	return Spec{Format: f, Arch: "amd64", Version: "1.2.3", Group: "pupils", Collector: "vigil.school.lan:7443", Token: tok, AgentBinary: "x"}
}

func TestCheckRefuses(t *testing.T) {
	cases := map[string]func(*Spec){
		"pkg":            func(s *Spec) { s.Format = "pkg" },
		"zip":            func(s *Spec) { s.Format = "zip" },
		"arch":           func(s *Spec) { s.Arch = "386" },
		"msi arm64":      func(s *Spec) { s.Format, s.Arch = MSI, "arm64" },
		"group":          func(s *Spec) { s.Group = "Year 7" },
		"no port":        func(s *Spec) { s.Collector = "vigil.school.lan" },
		"quote":          func(s *Spec) { s.Collector = `a"b:1` },
		"token":          func(s *Spec) { s.Token = "vgl1.nope" },
		"no binary":      func(s *Spec) { s.AgentBinary = "" },
		"msi no version": func(s *Spec) { s.Format, s.Version = MSI, "abc123" },
	}
	for name, mod := range cases {
		s := spec(Deb)
		mod(&s)
		if err := s.Check(); err == nil {
			t.Errorf("%s: accepted %+v", name, s)
		}
	}
	for _, f := range []Format{Deb, RPM, MSI} {
		if err := spec(f).Check(); err != nil {
			t.Errorf("%s: %v", f, err)
		}
	}
	s := spec(Deb)
	s.Format = "pkg"
	if err := s.Check(); !strings.Contains(err.Error(), "pkgbuild") {
		t.Errorf("pkg refusal does not say what is missing: %v", err)
	}
}

func TestVersions(t *testing.T) {
	for _, c := range []struct {
		f        Format
		in, want string
	}{
		{Deb, "v1.4.0", "1.4.0"},
		{Deb, "1.4.0-3-gabcdef", "1.4.0+3+gabcdef"},
		{RPM, "5bb358f-dirty", "0.0.0+5bb358f+dirty"},
		{Deb, "dev", "0.0.0+dev"},
		{MSI, "v2.3.4-rc1", "2.3.4"},
	} {
		s := spec(c.f)
		s.Version = c.in
		got, err := s.version()
		if err != nil || got != c.want {
			t.Errorf("%s %q: %q %v, want %q", c.f, c.in, got, err, c.want)
		}
	}
	s := spec(Deb)
	s.Version, s.FallbackVersion = "", "3.0.0"
	if v, _ := s.version(); v != "3.0.0" {
		t.Errorf("fallback version: %q", v)
	}
	if n := spec(RPM).FileName(); n != "vigil-agent-pupils-1.2.3.x86_64.rpm" {
		t.Errorf("rpm file name %q", n)
	}
}

func TestMSIEscape(t *testing.T) {
	if got := msiEscape(`[::1]:7443<&>`); got != `[\[]::1[\]]:7443&lt;&amp;&gt;` {
		t.Errorf("msiEscape: %q", got)
	}
}

func TestFindAgentBinary(t *testing.T) {
	dir := t.TempDir()
	exe := filepath.Join(dir, "bin", "vigil-collector")
	os.MkdirAll(filepath.Dir(exe), 0o755)
	if _, err := FindAgentBinary(exe, "windows", "amd64", "linux", "amd64"); err == nil || !strings.Contains(err.Error(), "--agent-binary") {
		t.Fatalf("missing binary: %v", err)
	}
	// make cross layout: bin/../dist/windows-amd64/vigil-agent.exe
	want := filepath.Join(dir, "dist", "windows-amd64", "vigil-agent.exe")
	os.MkdirAll(filepath.Dir(want), 0o755)
	os.WriteFile(want, []byte("x"), 0o755)
	if got, err := FindAgentBinary(exe, "windows", "amd64", "linux", "amd64"); err != nil || got != want {
		t.Errorf("dist layout: %q %v", got, err)
	}
	// make build layout: bin/vigil-agent, only for the host platform.
	host := filepath.Join(dir, "bin", "vigil-agent")
	os.WriteFile(host, []byte("x"), 0o755)
	if got, _ := FindAgentBinary(exe, "linux", "amd64", "linux", "amd64"); got != host {
		t.Errorf("host layout: %q", got)
	}
	if _, err := FindAgentBinary(exe, "linux", "arm64", "linux", "amd64"); err == nil {
		t.Error("took the host binary for another arch")
	}
}

func TestCheckBinaryRefusesWrongPlatform(t *testing.T) {
	exe, err := os.Executable() // this test binary: linux/amd64 (or the host)
	if err != nil {
		t.Fatal(err)
	}
	s := spec(MSI)
	s.AgentBinary = exe
	if err := CheckBinary(s); err == nil || !strings.Contains(err.Error(), "windows/amd64") {
		t.Errorf("a %s binary for an MSI: %v", "host", err)
	}
	s.AgentBinary = "/etc/hostname"
	if err := CheckBinary(s); err == nil {
		t.Error("accepted a file that is not a Go executable")
	}
}
