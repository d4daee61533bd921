package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"text/tabwriter"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/packaging"
	"github.com/vigil-safeguarding/vigil/collector/releases"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
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
	fmt.Fprintln(tw, "TOKEN\tGROUP\tSTATE\tUSES\tCREATED\tEXPIRES\tSCHOOL")
	for _, t := range toks {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%d/%d\t%s\t%s\t%s\n", t.ID, t.Group, t.State, t.Uses, t.MaxUses,
			t.CreatedAt.Format(time.RFC3339), t.ExpiresAt.Format(time.RFC3339), t.School)
	}
	return tw.Flush()
}

func tokenRevoke(args []string, stdout io.Writer) error {
	fs, data := dataFlags("token revoke")
	id := fs.String("id", "", "token ID (first column of `token list`; the part after vgl1.)")
	reason := fs.String("reason", "", "why (recorded in the access log)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *id == "" {
		return errors.New("--id ID is required")
	}
	if _, err := (adminTokens{admin.NewClient(*data)}).Revoke(context.Background(), *id, osUser(), *reason); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "token %s revoked: no device can enroll with it now; enrolled devices are unaffected\n", *id)
	return nil
}

// adminTokens is packaging.Tokens over the running collector's admin
// socket: the CLI cannot open the store while the collector holds it.
type adminTokens struct{ c *admin.Client }

func (a adminTokens) CreateIn(ctx context.Context, school, group string, ttl time.Duration, uses int) (tokens.Issued, error) {
	var tok tokens.Issued
	body, err := a.c.Do(ctx, "POST", "/v1/tokens", admin.TokenRequest{School: school, Group: group, TTL: ttl, Uses: uses})
	if err != nil {
		return tok, err
	}
	defer body.Close()
	if err := json.NewDecoder(body).Decode(&tok); err != nil {
		return tok, fmt.Errorf("decode token answer: %w", err)
	}
	return tok, nil
}

func (a adminTokens) Revoke(ctx context.Context, id, who, reason string) (tokens.Info, error) {
	var info tokens.Info
	body, err := a.c.DoAs(ctx, who, "POST", "/v1/tokens/"+url.PathEscape(id)+"/revoke", admin.RevokeRequest{Reason: reason})
	if err != nil {
		return info, err
	}
	defer body.Close()
	json.NewDecoder(body).Decode(&info)
	return info, nil
}

// packageCmd builds an agent package for one device group. The token is
// made for the package (so revoking it retires exactly that package) and is
// revoked again if the build fails.
func packageCmd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("package")
	group := fs.String("group", "", "device group the package enrolls devices into")
	school := fs.String("school", "", "school (ID or name) the package's devices land in (default: the default school)")
	format := fs.String("format", "", "deb, rpm or msi")
	arch := fs.String("arch", "amd64", "amd64 or arm64")
	addr := fs.String("collector-address", "", "HOST:PORT at which devices reach this collector's gRPC listener (as on the server certificate)")
	out := fs.String("out", "", "output file (default vigil-agent-GROUP_VERSION_ARCH.deb etc. in the current directory)")
	bin := fs.String("agent-binary", "", "vigil-agent built for the target (default: dist/OS-ARCH/vigil-agent[.exe] next to this collector, see `make cross`)")
	pkgVersion := fs.String("version", "", "package version (default: the agent binary's; MSIs need X.Y.Z)")
	uses := fs.Int("uses", packaging.DefaultTokenUses, "how many devices may enroll with the package's token")
	ttl := fs.Duration("ttl", packaging.DefaultTokenTTL, "how long the package's token can enroll devices")
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
	if pub, err := releases.LoadPublicKey(releases.PublicKeyPath(*data)); err == nil {
		spec.ReleaseKey = pub
	}
	// The package holds a credential (the token), so it is written
	// owner-only like the collector's other secrets.
	f, err := os.CreateTemp(filepath.Dir(*out), ".vigil-package-*")
	if err != nil {
		return fmt.Errorf("create output: %w", err)
	}
	defer os.Remove(f.Name())
	defer f.Close()

	ctx := context.Background()
	toks := adminTokens{admin.NewClient(*data)}
	made, err := packaging.Make(ctx, packaging.Request{Spec: spec, School: *school, TTL: *ttl, Uses: *uses, Who: osUser()}, toks, f)
	if err != nil {
		return err
	}
	tok, path := made.Token, *out
	if path == "" {
		path = made.FileName
	}
	err = f.Close()
	if err == nil {
		err = os.Rename(f.Name(), path)
	}
	if err != nil {
		if _, rerr := toks.Revoke(ctx, tok.ID, osUser(), "package not written"); rerr != nil {
			err = fmt.Errorf("%w (and revoking its unused token %s failed: %v)", err, tok.ID, rerr)
		}
		return err
	}
	st, _ := os.Stat(path)
	fmt.Fprintf(stdout, "wrote %s (%d bytes): school %s, group %s, collector %s\n", path, st.Size(), tok.School, *group, *addr)
	fmt.Fprintf(stdout, "token %s: %d uses, expires %s; retire this package with `vigil-collector token revoke --data %s --id %s`\n",
		tok.ID, tok.Uses, tok.ExpiresAt.Format(time.RFC3339), *data, tok.ID)
	return nil
}
