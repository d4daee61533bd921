// Package packaging builds the agent's installable packages (deb, rpm, MSI),
// each pre-configured for one device group: the collector address and an
// enrollment token (which carries the collector CA's fingerprint) are baked
// into the enrollment configuration the agent reads at its first start, so
// the technician never edits a file on a device.
//
// deb and rpm are written by the nfpm library; the MSI is compiled by wixl
// (msitools) from installer/windows/vigil-agent.wxs.tmpl. The files the
// packages install come from the installer package.
package packaging

import (
	"bytes"
	"context"
	"crypto/rand"
	"debug/buildinfo"
	"encoding/base64"
	"encoding/xml"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"text/template"
	"time"

	"github.com/goreleaser/nfpm/v2"
	"github.com/goreleaser/nfpm/v2/deb"
	"github.com/goreleaser/nfpm/v2/files"
	"github.com/goreleaser/nfpm/v2/rpm"

	"github.com/vigil-safeguarding/vigil/agent/enroll"
	"github.com/vigil-safeguarding/vigil/installer"
	"github.com/vigil-safeguarding/vigil/internal/identity"
)

// Format is a package format.
type Format string

// Supported formats.
const (
	Deb Format = "deb"
	RPM Format = "rpm"
	MSI Format = "msi"
)

// UpgradeCode is the same for every Vigil agent MSI ever built: Windows
// Installer finds the installed agent by it, so a newer MSI (for any group)
// replaces the older one in place. Never change it.
const UpgradeCode = "6B0E8D4A-3C1F-4E57-9A2D-7F1B5C9E0A41"

// Component GUIDs are fixed too: the same component at the same path must
// keep its GUID across versions for upgrades to be clean.
const (
	exeComponentGUID      = "1D7C4F0B-8E2A-4B6D-9C35-2A8F6E1B7D90"
	registryComponentGUID = "A3E5B7C9-1F2D-4A6B-8C0E-5D7F9B1A3C52"
)

// Paths the Linux packages install to (docs: installer/README.md).
const (
	LinuxBinary       = "/usr/bin/vigil-agent"
	LinuxEnrollConfig = "/etc/vigil-agent/enroll.conf"
	LinuxStateDir     = "/var/lib/vigil-agent"
)

// Spec says what to build.
type Spec struct {
	Format Format
	// Arch is amd64 or arm64.
	Arch string
	// Version of the package; empty takes the agent binary's own version.
	Version string
	Group   string
	// Collector is the HOST:PORT devices reach the collector's gRPC at.
	Collector string
	// Token is the group enrollment token (vgl1...), carrying the CA pin.
	Token string
	// AgentBinary is the vigil-agent executable for the target OS/arch.
	AgentBinary string
	// Wixl is the wixl command for MSIs (default: wixl on PATH).
	Wixl string
	// FallbackVersion is used when Version is empty and the binary does
	// not say (the collector passes its own: both come from one release).
	FallbackVersion string
	// ReleaseKey is the collector's release public key, written into the
	// enrollment configuration so devices pin it from the package too.
	ReleaseKey []byte
}

// GOOS is the operating system a format's binary must be built for.
func (f Format) GOOS() string {
	if f == MSI {
		return "windows"
	}
	return "linux"
}

var (
	groupRE   = regexp.MustCompile(`^[a-z0-9_-]{1,64}$`)
	versionRE = regexp.MustCompile(`^(\d+)\.(\d+)\.(\d+)`)
)

// Check validates a spec before anything is built (or a token spent).
func (s Spec) Check() error {
	if err := s.checkRequest(); err != nil {
		return err
	}
	if s.Token != "" {
		if _, err := identity.ParseToken(s.Token); err != nil {
			return err
		}
	}
	if s.AgentBinary == "" {
		return errors.New("no agent binary given")
	}
	if _, err := s.version(); err != nil {
		return err
	}
	return nil
}

// checkRequest checks what the requester chose (format, arch, group,
// address): all that can be checked before the agent binary is found.
func (s Spec) checkRequest() error {
	switch s.Format {
	case Deb, RPM, MSI:
	case "pkg":
		return errors.New("--format pkg: macOS flat packages cannot be built here (no pkgbuild/productbuild, xar or mkbom on Linux); see installer/README.md")
	default:
		return fmt.Errorf("--format %q: want deb, rpm or msi", s.Format)
	}
	if s.Arch != "amd64" && s.Arch != "arm64" {
		return fmt.Errorf("--arch %q: want amd64 or arm64", s.Arch)
	}
	if s.Format == MSI && s.Arch != "amd64" {
		return errors.New("--arch arm64: wixl builds x86/x64 MSIs only; Windows on Arm runs the amd64 MSI under emulation")
	}
	if !groupRE.MatchString(s.Group) {
		return fmt.Errorf("--group %q: use 1-64 of a-z 0-9 - _", s.Group)
	}
	if _, port, err := net.SplitHostPort(s.Collector); err != nil || port == "" {
		return fmt.Errorf("--collector-address %q: want HOST:PORT as devices reach the collector (e.g. vigil.school.lan:7443)", s.Collector)
	}
	if strings.ContainsAny(s.Collector, "\"'`$\\ \t\r\n") {
		return fmt.Errorf("--collector-address %q contains characters no host name has", s.Collector)
	}
	return nil
}

// version is the package version: the agent's own if not given, made
// acceptable to dpkg and rpm (digits first, no '-'), and numeric for MSI.
func (s Spec) version() (string, error) {
	v := s.Version
	if v == "" {
		v = BinaryVersion(s.AgentBinary)
	}
	if (v == "" || v == "dev") && s.FallbackVersion != "" {
		v = s.FallbackVersion
	}
	v = strings.TrimPrefix(strings.TrimSpace(v), "v")
	v = strings.Map(func(r rune) rune {
		switch {
		case r >= '0' && r <= '9', r >= 'a' && r <= 'z', r >= 'A' && r <= 'Z', r == '.', r == '+', r == '~':
			return r
		}
		return '+'
	}, v)
	if s.Format == MSI {
		m := versionRE.FindStringSubmatch(v)
		if m == nil {
			return "", fmt.Errorf("an MSI needs a numeric version X.Y.Z (have %q from the agent binary or collector): pass --version", v)
		}
		return m[1] + "." + m[2] + "." + m[3], nil
	}
	// A bare commit hash may start with a digit; without X.Y.Z first it
	// would sort as a huge version and block every later upgrade.
	if !versionRE.MatchString(v) {
		v = strings.TrimSuffix("0.0.0+"+strings.TrimLeft(v, "+"), "+")
	}
	return v, nil
}

// FileName is the conventional output name for the spec.
func (s Spec) FileName() string {
	v, _ := s.version()
	switch s.Format {
	case Deb:
		return fmt.Sprintf("vigil-agent-%s_%s_%s.deb", s.Group, v, s.Arch)
	case RPM:
		a := map[string]string{"amd64": "x86_64", "arm64": "aarch64"}[s.Arch]
		return fmt.Sprintf("vigil-agent-%s-%s.%s.rpm", s.Group, v, a)
	default:
		return fmt.Sprintf("vigil-agent-%s-%s.msi", s.Group, v)
	}
}

// BinaryVersion is the version of an agent binary: the -X
// .../internal/version.Version value from its build info (recorded unless
// built with -trimpath), else what `BIN version` prints when the binary
// runs here, else "".
func BinaryVersion(path string) string {
	bi, err := buildinfo.ReadFile(path)
	if err != nil {
		return ""
	}
	var goos, goarch string
	for _, st := range bi.Settings {
		switch st.Key {
		case "GOOS":
			goos = st.Value
		case "GOARCH":
			goarch = st.Value
		case "-ldflags":
			const key = "internal/version.Version="
			if i := strings.Index(st.Value, key); i >= 0 {
				v := st.Value[i+len(key):]
				if j := strings.IndexAny(v, " '\""); j >= 0 {
					v = v[:j]
				}
				return v
			}
		}
	}
	if goos != runtime.GOOS || goarch != runtime.GOARCH {
		return ""
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, path, "version").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
}

// FindAgentBinary looks for the agent built for goos/goarch next to the
// running collector: DIR/dist/OS-ARCH/vigil-agent[.exe] and
// DIR/../dist/OS-ARCH/ (where `make cross` puts them), and DIR/vigil-agent
// when the target is the collector's own platform (`make build`). The
// collector does not assume a Go toolchain, so it never compiles one.
func FindAgentBinary(exe, goos, goarch, hostOS, hostArch string) (string, error) {
	name := "vigil-agent"
	if goos == "windows" {
		name += ".exe"
	}
	dir := filepath.Dir(exe)
	cands := []string{
		filepath.Join(dir, "dist", goos+"-"+goarch, name),
		filepath.Join(dir, "..", "dist", goos+"-"+goarch, name),
	}
	if goos == hostOS && goarch == hostArch {
		cands = append(cands, filepath.Join(dir, name))
	}
	for _, c := range cands {
		if st, err := os.Stat(c); err == nil && st.Mode().IsRegular() {
			return filepath.Clean(c), nil
		}
	}
	return "", fmt.Errorf("%w for %s/%s (looked in %s): build it with `make cross` or pass --agent-binary FILE",
		ErrNoAgentBinary, goos, goarch, strings.Join(cands, ", "))
}

// Build writes the package for s to w.
func Build(ctx context.Context, s Spec, w io.Writer) error {
	if err := s.Check(); err != nil {
		return err
	}
	if s.Token == "" {
		return errors.New("no enrollment token")
	}
	if err := CheckBinary(s); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp("", "vigil-package-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	switch s.Format {
	case MSI:
		return buildMSI(ctx, s, tmp, w)
	default:
		return buildNFPM(s, tmp, w)
	}
}

// CheckBinary refuses an agent built for the wrong OS or CPU: a package that
// installs cleanly and then cannot run is the worst failure for a fleet.
func CheckBinary(s Spec) error {
	bi, err := buildinfo.ReadFile(s.AgentBinary)
	if err != nil {
		return fmt.Errorf("agent binary %s: not a Go executable: %w", s.AgentBinary, err)
	}
	var goos, goarch string
	for _, st := range bi.Settings {
		switch st.Key {
		case "GOOS":
			goos = st.Value
		case "GOARCH":
			goarch = st.Value
		}
	}
	if goos != s.Format.GOOS() || goarch != s.Arch {
		return fmt.Errorf("agent binary %s is built for %s/%s, the %s package needs %s/%s", s.AgentBinary, goos, goarch, s.Format, s.Format.GOOS(), s.Arch)
	}
	if strings.Contains(bi.Path, "vigil") && !strings.HasSuffix(bi.Path, "/vigil-agent") {
		return fmt.Errorf("agent binary %s is %s, not the agent", s.AgentBinary, bi.Path)
	}
	return nil
}

func bootstrap(s Spec) enroll.Bootstrap {
	tok, _ := identity.ParseToken(s.Token)
	return enroll.Bootstrap{Collector: s.Collector, Token: s.Token, Group: s.Group, CAFingerprint: tok.CAFingerprint,
		ReleaseKey: base64.StdEncoding.EncodeToString(s.ReleaseKey)}
}

func buildNFPM(s Spec, tmp string, w io.Writer) error {
	version, _ := s.version()
	conf := filepath.Join(tmp, "enroll.conf")
	if err := enroll.WriteBootstrap(conf, bootstrap(s)); err != nil {
		return err
	}
	inst := installer.Files()
	stage := func(name string) (string, error) {
		b, err := fs.ReadFile(inst, name)
		if err != nil {
			return "", fmt.Errorf("installer file %s: %w", name, err)
		}
		p := filepath.Join(tmp, strings.ReplaceAll(name, "/", "_"))
		return p, os.WriteFile(p, b, 0o644)
	}
	unit, err := stage("linux/vigil-agent.service")
	if err != nil {
		return err
	}
	desktop, err := stage("linux/vigil-session.desktop")
	if err != nil {
		return err
	}
	file := func(src, dst string, mode os.FileMode, typ string) *files.Content {
		return &files.Content{Source: src, Destination: dst, Type: typ,
			FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: mode}}
	}
	contents := files.Contents{
		file(s.AgentBinary, LinuxBinary, 0o755, ""),
		file(desktop, "/etc/xdg/autostart/vigil-session.desktop", 0o644, ""),
		{Destination: "/etc/vigil-agent", Type: files.TypeDir, FileInfo: &files.ContentFileInfo{Owner: "root", Group: "root", Mode: 0o755}},
		// Not a conffile: it is generated per package, and an upgrade must
		// never stop to ask about it (the agent ignores it once enrolled).
		file(conf, LinuxEnrollConfig, 0o600, ""),
	}
	info := &nfpm.Info{
		Name: "vigil-agent", Arch: s.Arch, Platform: "linux", Version: version, VersionSchema: "none",
		Section: "admin", Priority: "optional", Maintainer: "Vigil <vigil@localhost>", Vendor: "Vigil",
		Homepage:    "https://github.com/vigil-safeguarding/vigil",
		License:     "Apache-2.0",
		Description: fmt.Sprintf("Vigil safeguarding and device-compliance agent (group %s, collector %s)", s.Group, s.Collector),
		MTime:       time.Now().UTC().Truncate(time.Second),
	}
	var pkgr nfpm.Packager
	switch s.Format {
	case Deb:
		initScript, err := stage("linux/vigil-agent.init")
		if err != nil {
			return err
		}
		contents = append(contents,
			file(unit, "/lib/systemd/system/vigil-agent.service", 0o644, ""),
			file(initScript, "/etc/init.d/vigil-agent", 0o755, files.TypeConfig))
		for _, sc := range []struct {
			name string
			dst  *string
		}{{"linux/deb/postinst", &info.Scripts.PostInstall}, {"linux/deb/prerm", &info.Scripts.PreRemove}, {"linux/deb/postrm", &info.Scripts.PostRemove}} {
			if *sc.dst, err = stage(sc.name); err != nil {
				return err
			}
		}
		pkgr = deb.Default
	case RPM:
		contents = append(contents, file(unit, "/usr/lib/systemd/system/vigil-agent.service", 0o644, ""))
		for _, sc := range []struct {
			name string
			dst  *string
		}{{"linux/rpm/post", &info.Scripts.PostInstall}, {"linux/rpm/preun", &info.Scripts.PreRemove}, {"linux/rpm/postun", &info.Scripts.PostRemove}} {
			if *sc.dst, err = stage(sc.name); err != nil {
				return err
			}
		}
		info.RPM.Summary = "Vigil safeguarding and device-compliance agent"
		info.RPM.Group = "System Environment/Daemons"
		pkgr = rpm.DefaultRPM
	}
	info.Contents = contents
	info = nfpm.WithDefaults(info)
	if err := nfpm.PrepareForPackager(info, string(s.Format)); err != nil {
		return fmt.Errorf("prepare %s contents: %w", s.Format, err)
	}
	if err := pkgr.Package(info, w); err != nil {
		return fmt.Errorf("write %s: %w", s.Format, err)
	}
	return nil
}

// msiEscape makes a value safe inside an MSI formatted string in XML:
// '[' and ']' would otherwise be read as property references.
func msiEscape(v string) string {
	var b strings.Builder
	for _, r := range v {
		switch r {
		case '[':
			b.WriteString(`[\[]`)
		case ']':
			b.WriteString(`[\]]`)
		default:
			b.WriteRune(r)
		}
	}
	var x bytes.Buffer
	xml.EscapeText(&x, []byte(b.String()))
	return x.String()
}

func newGUID() string {
	var b [16]byte
	rand.Read(b[:])
	b[6] = b[6]&0x0f | 0x40
	b[8] = b[8]&0x3f | 0x80
	return strings.ToUpper(fmt.Sprintf("%x-%x-%x-%x-%x", b[0:4], b[4:6], b[6:8], b[8:10], b[10:16]))
}

func buildMSI(ctx context.Context, s Spec, tmp string, w io.Writer) error {
	wixl := s.Wixl
	if wixl == "" {
		wixl = "wixl"
	}
	wixlPath, err := exec.LookPath(wixl)
	if err != nil {
		return fmt.Errorf("building an MSI needs wixl (Debian: apt-get install wixl): %w", err)
	}
	version, _ := s.version()
	tmplText, err := fs.ReadFile(installer.Files(), "windows/vigil-agent.wxs.tmpl")
	if err != nil {
		return err
	}
	tmpl, err := template.New("wxs").Option("missingkey=error").Parse(string(tmplText))
	if err != nil {
		return fmt.Errorf("parse MSI template: %w", err)
	}
	exe := filepath.Join(tmp, "vigil-agent.exe")
	if err := copyFile(s.AgentBinary, exe); err != nil {
		return err
	}
	var wxs bytes.Buffer
	err = tmpl.Execute(&wxs, map[string]string{
		"ProductCode": newGUID(), "UpgradeCode": UpgradeCode, "Version": version,
		"ComponentGUID": exeComponentGUID, "RegistryGUID": registryComponentGUID,
		"Group": msiEscape(s.Group), "Collector": msiEscape(s.Collector), "Token": msiEscape(s.Token),
		// wixl resolves sources relative to its working directory only.
		"AgentExe": filepath.Base(exe),
	})
	if err != nil {
		return fmt.Errorf("render MSI source: %w", err)
	}
	src, out := filepath.Join(tmp, "vigil-agent.wxs"), filepath.Join(tmp, "vigil-agent.msi")
	if err := os.WriteFile(src, wxs.Bytes(), 0o600); err != nil {
		return err
	}
	ctx, cancel := context.WithTimeout(ctx, 5*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, wixlPath, "-a", "x64", "-o", out, src)
	cmd.Dir = tmp
	if b, err := cmd.CombinedOutput(); err != nil {
		return fmt.Errorf("wixl: %w: %s", err, strings.TrimSpace(string(b)))
	}
	f, err := os.Open(out)
	if err != nil {
		return err
	}
	defer f.Close()
	_, err = io.Copy(w, f)
	return err
}

func copyFile(src, dst string) error {
	in, err := os.Open(src)
	if err != nil {
		return err
	}
	defer in.Close()
	out, err := os.OpenFile(dst, os.O_CREATE|os.O_TRUNC|os.O_WRONLY, 0o755)
	if err != nil {
		return err
	}
	if _, err := io.Copy(out, in); err != nil {
		out.Close()
		return fmt.Errorf("copy %s: %w", src, err)
	}
	return out.Close()
}
