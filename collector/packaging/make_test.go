package packaging

import (
	"bytes"
	"errors"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
	"github.com/vigil-safeguarding/vigil/internal/identity"
)

func tokenService(t *testing.T) *tokens.Service {
	t.Helper()
	st, err := store.Open(filepath.Join(t.TempDir(), "badger"), store.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { st.Close() })
	return &tokens.Service{Store: st, CAFingerprint: identity.Fingerprint([]byte("test CA")), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
}

type failWriter struct{}

func (failWriter) Write([]byte) (int, error) { return 0, errors.New("disk gone") }

// Make is the one path from request to package: nothing refused spends a
// token, a failed build revokes the token it made, a good build carries a
// fresh long-lived group token.
func TestMakeTokenLifecycle(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("builds a linux agent with the host toolchain")
	}
	toks := tokenService(t)
	ctx := t.Context()
	empty := t.TempDir()
	base := Spec{Format: Deb, Arch: "amd64", Group: "pupils", Collector: "vigil.school.lan:7443", FallbackVersion: "1.0.0"}

	if _, err := Make(ctx, Request{Spec: base, AgentDir: empty}, toks, io.Discard); !errors.Is(err, ErrNoAgentBinary) {
		t.Errorf("missing agent: %v", err)
	}
	bad := base
	bad.Group = "Year 7"
	if _, err := Make(ctx, Request{Spec: bad}, toks, io.Discard); !errors.Is(err, ErrBadSpec) {
		t.Errorf("bad group: %v", err)
	}
	wrong := base
	wrong.Format = MSI
	wrong.AgentBinary = AgentBinary(t) // a linux binary for an MSI
	if _, err := Make(ctx, Request{Spec: wrong}, toks, io.Discard); !errors.Is(err, ErrNoAgentBinary) {
		t.Errorf("wrong-platform agent: %v", err)
	}
	if l, _ := toks.List(ctx); len(l) != 0 {
		t.Fatalf("refused requests minted tokens: %+v", l)
	}

	good := base
	good.AgentBinary = AgentBinary(t)
	if _, err := Make(ctx, Request{Spec: good, Who: "tech"}, toks, failWriter{}); err == nil {
		t.Fatal("build to a failing writer succeeded")
	}
	l, _ := toks.List(ctx)
	if len(l) != 1 || !l[0].Revoked {
		t.Fatalf("token of a failed build not revoked: %+v", l)
	}

	var buf bytes.Buffer
	made, err := Make(ctx, Request{Spec: good}, toks, &buf)
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.HasPrefix(buf.Bytes(), []byte("!<arch>\n")) || !strings.HasPrefix(made.FileName, "vigil-agent-pupils_") || !strings.HasSuffix(made.FileName, "_amd64.deb") {
		t.Errorf("package %q, file %q", buf.Bytes()[:min(16, buf.Len())], made.FileName)
	}
	if made.Token.Uses != DefaultTokenUses || time.Until(made.Token.ExpiresAt) < DefaultTokenTTL-time.Hour || made.Token.Group != "pupils" {
		t.Errorf("package token policy: %+v", made.Token)
	}
}

var agentBin string

// AgentBinary builds the real agent for linux/amd64 once.
func AgentBinary(t *testing.T) string {
	t.Helper()
	if agentBin != "" {
		return agentBin
	}
	p := filepath.Join(t.TempDir(), "vigil-agent")
	cmd := exec.Command("go", "build", "-o", p, "../../agent/cmd/vigil-agent")
	cmd.Env = append(os.Environ(), "GOOS=linux", "GOARCH=amd64", "CGO_ENABLED=0")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Fatalf("build agent: %v\n%s", err, out)
	}
	agentBin = p
	return p
}
