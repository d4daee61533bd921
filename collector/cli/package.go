package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"runtime"
	"text/tabwriter"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/packaging"
	"github.com/vigil-safeguarding/vigil/internal/version"
)

func tokenList(args []string, stdout io.Writer) error {
	fs, data := dataFlags("token list")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/tokens", nil)
	if err != nil {
		return err
	}
	defer body.Close()
	var toks []admin.TokenInfo
	if err := json.NewDecoder(body).Decode(&toks); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, t := range toks {
			enc.Encode(t)
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "TOKEN\tGROUP\tSTATE\tUSES\tCREATED\tEXPIRES")
	for _, t := range toks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\n", t.ID, t.Group, t.State, t.Uses, t.MaxUses,
			t.CreatedAt.Format(time.RFC3339), t.ExpiresAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func tokenRevoke(args []string, stdout io.Writer) error {
	fs, data := dataFlags("token revoke")
	id := fs.String("id", "", "token ID (first column of `token list`; the part after vgl1.)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *id == "" {
		return errors.New("--id ID is required")
	}
	if err := revokeToken(*data, *id); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "token %s revoked: no device can enroll with it now; enrolled devices are unaffected\n", *id)
	return nil
}

func revokeToken(data, id string) error {
	body, err := admin.NewClient(data).Do(context.Background(), "POST", "/v1/tokens/"+id+"/revoke", nil)
	if err != nil {
		return err
	}
	return body.Close()
}

// packageCmd builds an agent package for one device group. The token is
// made for the package (so revoking it retires exactly that package) and is
// revoked again if the build fails.
func packageCmd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("package")
	group := fs.String("group", "", "device group the package enrolls devices into")
	format := fs.String("format", "", "deb, rpm or msi")
	arch := fs.String("arch", "amd64", "amd64 or arm64")
	addr := fs.String("collector-address", "", "HOST:PORT at which devices reach this collector's gRPC listener (as on the server certificate)")
	out := fs.String("out", "", "output file (default vigil-agent-GROUP_VERSION_ARCH.deb etc. in the current directory)")
	bin := fs.String("agent-binary", "", "vigil-agent built for the target (default: dist/OS-ARCH/vigil-agent[.exe] next to this collector, see `make cross`)")
	pkgVersion := fs.String("version", "", "package version (default: the agent binary's; MSIs need X.Y.Z)")
	uses := fs.Int("uses", 2000, "how many devices may enroll with the package's token")
	ttl := fs.Duration("ttl", 365*24*time.Hour, "how long the package's token can enroll devices")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *group == "" || *format == "" || *addr == "" {
		return errors.New("--group, --format and --collector-address are required")
	}
	if *uses < 1 {
		return errors.New("--uses must be at least 1")
	}
	spec := packaging.Spec{Format: packaging.Format(*format), Arch: *arch, Version: *pkgVersion, Group: *group, Collector: *addr, AgentBinary: *bin,
		FallbackVersion: version.Version}
	if spec.AgentBinary == "" && (spec.Format == packaging.Deb || spec.Format == packaging.RPM || spec.Format == packaging.MSI) {
		exe, err := os.Executable()
		if err != nil {
			return err
		}
		if spec.AgentBinary, err = packaging.FindAgentBinary(exe, spec.Format.GOOS(), *arch, runtime.GOOS, runtime.GOARCH); err != nil {
			return err
		}
	}
	// Everything that can be checked is checked before a token is made.
	if err := spec.Check(); err != nil {
		return err
	}
	if err := packaging.CheckBinary(spec); err != nil {
		return err
	}
	// The package holds a credential (the token), so it is written
	// owner-only like the collector's other secrets.
	path := *out
	if path == "" {
		path = spec.FileName()
	}
	f, err := os.CreateTemp(filepath.Dir(path), ".vigil-package-*")
	if err != nil {
		return fmt.Errorf("create output: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()

	ctx := context.Background()
	body, err := admin.NewClient(*data).Do(ctx, "POST", "/v1/tokens", admin.TokenRequest{Group: *group, TTL: *ttl, Uses: *uses})
	if err != nil {
		return err
	}
	var tok admin.TokenResponse
	err = json.NewDecoder(body).Decode(&tok)
	body.Close()
	if err != nil {
		return fmt.Errorf("decode token answer: %w", err)
	}
	spec.Token = tok.Token
	err = packaging.Build(ctx, spec, f)
	if err == nil {
		err = f.Close()
	}
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		if rerr := revokeToken(*data, tok.ID); rerr != nil {
			err = fmt.Errorf("%w (and revoking its unused token %s failed: %v)", err, tok.ID, rerr)
		}
		return err
	}
	st, _ := os.Stat(path)
	fmt.Fprintf(stdout, "wrote %s (%d bytes): group %s, collector %s, agent %s\n", path, st.Size(), *group, *addr, spec.AgentBinary)
	fmt.Fprintf(stdout, "token %s: %d uses, expires %s; retire this package with `vigil-collector token revoke --data %s --id %s`\n",
		tok.ID, tok.Uses, tok.ExpiresAt.Format(time.RFC3339), *data, tok.ID)
	return nil
}
