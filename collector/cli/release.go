package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"text/tabwriter"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/releases"
)

// releaseAdd signs and stores a binary. It works on the data dir directly
// (the collector may be stopped) and needs the release signing key: the
// data dir's by default, or --key when the school keeps it offline.
func releaseAdd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("release add")
	file := fs.String("file", "", "the agent binary to publish")
	ver := fs.String("version", "", "its version (what `vigil-agent version` prints)")
	goos := fs.String("os", "linux", "linux|windows|darwin")
	goarch := fs.String("arch", "amd64", "amd64|arm64")
	keyPath := fs.String("key", "", "release signing key (default DATA/releases/release.key; see docs/security.md to keep it offline)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *file == "" || *ver == "" {
		return errors.New("--file and --version are required")
	}
	if _, err := releases.EnsureKey(*data); err != nil {
		return err
	}
	kp := *keyPath
	if kp == "" {
		kp = releases.PrivateKeyPath(*data)
	}
	key, err := releases.LoadPrivateKey(kp)
	if err != nil {
		return fmt.Errorf("release signing key: %w (give --key FILE if it is kept offline)", err)
	}
	m, err := releases.Add(*data, key, *file, *ver, *goos, *goarch, time.Now())
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "release %s for %s/%s added: sha256 %s, %d bytes, signed\n", m.Version, m.OS, m.Arch, m.SHA256, m.Size)
	return nil
}

func releaseList(args []string, stdout io.Writer) error {
	fs, data := dataFlags("release list")
	asJSON := fs.Bool("json", false, "one JSON object per line")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	all, err := releases.List(*data)
	if err != nil {
		return err
	}
	if *asJSON {
		enc := json.NewEncoder(stdout)
		for _, m := range all {
			enc.Encode(m)
		}
		return nil
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "VERSION\tOS/ARCH\tSIZE\tSHA256\tADDED")
	for _, m := range all {
		fmt.Fprintf(tw, "%s\t%s/%s\t%d\t%s\t%s\n", m.Version, m.OS, m.Arch, m.Size, m.SHA256, m.AddedAt.Format(time.RFC3339))
	}
	return tw.Flush()
}

func releaseRollout(args []string, stdout io.Writer) error {
	fs, data := dataFlags("release rollout")
	group := fs.String("group", "", "device group (roll out to a pilot group first)")
	ver := fs.String("version", "", "release version")
	percent := fs.Int("percent", 100, "share of the group's devices offered the release (1-100)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *group == "" || *ver == "" {
		return errors.New("--group and --version are required")
	}
	return adminJSON(*data, "POST", "/v1/releases/rollout", admin.RolloutRequest{Group: *group, Version: *ver, Percent: *percent}, stdout)
}

func releaseRollback(args []string, stdout io.Writer) error {
	fs, data := dataFlags("release rollback")
	group := fs.String("group", "", "device group")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *group == "" {
		return errors.New("--group is required")
	}
	return adminJSON(*data, "POST", "/v1/releases/rollback", admin.RollbackRequest{Group: *group}, stdout)
}

func releaseMinimum(args []string, stdout io.Writer) error {
	fs, data := dataFlags("release minimum")
	ver := fs.String("version", "", "lowest version rollouts and rollbacks may target (X.Y.Z; empty clears it)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	return adminJSON(*data, "POST", "/v1/releases/minimum", admin.MinimumRequest{Version: *ver}, stdout)
}

func releaseStatus(args []string, stdout io.Writer) error {
	fs, data := dataFlags("release status")
	group := fs.String("group", "", "device group")
	asJSON := fs.Bool("json", false, "JSON")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *group == "" {
		return errors.New("--group is required")
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/releases/status?group="+url.QueryEscape(*group), nil)
	if err != nil {
		return err
	}
	defer body.Close()
	var st releases.GroupStatus
	if err := json.NewDecoder(body).Decode(&st); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(st)
	}
	if st.Rollout != nil {
		fmt.Fprintf(stdout, "group %s: rolling out %s to %d%% since %s\n", st.Group, st.Rollout.Version, st.Rollout.Percent, st.Rollout.StartedAt.Format(time.RFC3339))
	} else {
		fmt.Fprintf(stdout, "group %s: no rollout\n", st.Group)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tHOSTNAME\tVERSION\tCONNECTED\tSTATE\tREASON")
	for _, d := range st.Devices {
		reason := ""
		if d.Failed != nil {
			reason = d.Failed.Outcome + ": " + d.Failed.Reason
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%v\t%s\t%s\n", d.DeviceID, d.Hostname, d.Version, d.Connected, d.State, reason)
	}
	return tw.Flush()
}

// adminJSON sends body and prints the indented answer.
func adminJSON(data, method, path string, body any, stdout io.Writer) error {
	rc, err := admin.NewClient(data).Do(context.Background(), method, path, body)
	if err != nil {
		return err
	}
	defer rc.Close()
	var out any
	if err := json.NewDecoder(rc).Decode(&out); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	enc := json.NewEncoder(stdout)
	enc.SetIndent("", "  ")
	return enc.Encode(out)
}
