package cli

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// parseWithID parses flags that may come before and after one positional
// argument (`audit show --data D ID --json`).
func parseWithID(fs *flag.FlagSet, args []string, data *string) (string, error) {
	if err := fs.Parse(args); err != nil {
		return "", err
	}
	id := ""
	if fs.NArg() > 0 {
		id = fs.Arg(0)
		if err := fs.Parse(fs.Args()[1:]); err != nil {
			return "", err
		}
		if fs.NArg() > 0 {
			return "", fmt.Errorf("unexpected arguments %q", fs.Args())
		}
	}
	if id == "" {
		return "", errors.New("name the audit: ID (see `vigil-collector audit list`)")
	}
	return id, needData(*data)
}

func decodeBody(body io.ReadCloser, v any) error {
	defer body.Close()
	return json.NewDecoder(body).Decode(v)
}

// auditRequestCmd starts an audit, shows progress on stderr until every
// connected device has answered (the rest stay queued until they
// reconnect) or --wait passes, then prints the audit ID alone on stdout.
func auditRequestCmd(args []string, stdout, stderr io.Writer) error {
	fs, data := dataFlags("audit request")
	device := fs.String("device", "", "audit one device (ID)")
	group := fs.String("group", "", "audit every device of a group")
	all := fs.Bool("all", false, "audit the whole fleet (of the school)")
	school := fs.String("school", "", "the school audited (ID or name); required once there is more than one: an audit covers one school")
	reason := fs.String("reason", "", "why the audit is asked for (recorded)")
	by := fs.String("by", "", "who asks (recorded; default the OS user)")
	expiry := fs.Duration("expiry", audit.DefaultExpiry, "how long offline devices are waited for; then 'not reached'")
	wait := fs.Duration("wait", 10*time.Minute, "how long to show progress before printing the ID (the audit goes on)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *reason == "" {
		return errors.New("--reason TEXT is required: an audit records why it was asked for")
	}
	who := *by
	if who == "" {
		who = osUser()
	}
	c := admin.NewClient(*data)
	ctx := context.Background()
	body, err := c.DoAs(ctx, who, "POST", "/v1/audits", admin.AuditRequest{Device: *device, Group: *group, All: *all, School: *school, Reason: *reason, Expiry: *expiry})
	if err != nil {
		return err
	}
	var h audit.Header
	if err := decodeBody(body, &h); err != nil {
		return fmt.Errorf("read the collector's answer: %w", err)
	}
	fmt.Fprintf(stderr, "audit %s of %s: %d devices\n", h.ID, h.Scope, len(h.Devices))
	term := isTerminal(stderr)
	deadline := time.Now().Add(*wait)
	last := ""
	var p audit.Progress
	for {
		body, err := c.Do(ctx, "GET", "/v1/audits/"+url.PathEscape(h.ID)+"/progress", nil)
		if err != nil {
			return err
		}
		if err := decodeBody(body, &p); err != nil {
			return fmt.Errorf("read progress: %w", err)
		}
		line := progressLine(p)
		settled := p.Done || p.Queued == p.Offline
		switch {
		case term:
			fmt.Fprintf(stderr, "\r%s %s\x1b[K", bar(p, 30), line)
		case line != last:
			fmt.Fprintln(stderr, line)
		}
		last = line
		if settled || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if term {
		fmt.Fprintln(stderr)
	}
	if p.Queued > 0 {
		fmt.Fprintf(stderr, "%d devices have not answered yet: they are asked when they next connect, until %s (then 'not reached')\n",
			p.Queued, p.ExpiresAt.Local().Format("2006-01-02 15:04"))
	}
	fmt.Fprintln(stdout, h.ID)
	return nil
}

func progressLine(p audit.Progress) string {
	s := fmt.Sprintf("%d/%d answered", p.Answered, p.Total)
	if n := p.NoAnswer - p.NotReached; n > 0 {
		s += fmt.Sprintf(", %d could not answer", n)
	}
	if p.NotReached > 0 {
		s += fmt.Sprintf(", %d not reached", p.NotReached)
	}
	if p.Offline > 0 {
		s += fmt.Sprintf(", %d offline: queued", p.Offline)
	}
	if n := p.Queued - p.Offline; n > 0 {
		s += fmt.Sprintf(", %d collecting", n)
	}
	return s
}

func bar(p audit.Progress, width int) string {
	if p.Total == 0 {
		return "[" + strings.Repeat(" ", width) + "]"
	}
	n := (p.Total - p.Queued) * width / p.Total
	return "[" + strings.Repeat("#", n) + strings.Repeat(".", width-n) + "]"
}

func isTerminal(w io.Writer) bool {
	f, ok := w.(*os.File)
	if !ok {
		return false
	}
	st, err := f.Stat()
	return err == nil && st.Mode()&os.ModeCharDevice != 0
}

func auditShowCmd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("audit show")
	asJSON := fs.Bool("json", false, "print the whole record as JSON")
	id, err := parseWithID(fs, args, data)
	if err != nil {
		return err
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "GET", "/v1/audits/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	if *asJSON {
		defer body.Close()
		_, err := io.Copy(stdout, body)
		return err
	}
	var r audit.Record
	if err := decodeBody(body, &r); err != nil {
		return fmt.Errorf("read the record: %w", err)
	}
	printRecord(stdout, r)
	return nil
}

func printRecord(w io.Writer, r audit.Record) {
	fmt.Fprintf(w, "audit %s of %s\nrequested by %s at %s: %s\n", r.ID, r.Scope, r.RequestedBy, r.RequestedAt.Local().Format(time.RFC3339), r.Reason)
	ver := "verified"
	if !r.Verified {
		ver = "DOES NOT VERIFY: " + r.VerifyError
	}
	fmt.Fprintf(w, "hash %s (%s)\n%s\n\n", r.Hash, ver, progressLine(r.Progress))
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tHOSTNAME\tGROUP\tSTATUS\tMODEL\tOS\tSOFTWARE\tFAILING CHECKS")
	for _, d := range r.Results {
		var inv struct {
			Hardware   struct{ Manufacturer, Model string }
			Os         struct{ Name, Version string }
			Software   []json.RawMessage
			Compliance []struct {
				RuleID string `json:"rule_id"`
				Status string
			}
		}
		status := d.Status
		if d.NoAnswer != nil {
			status = d.NoAnswer.Reason
		}
		json.Unmarshal(d.Inventory, &inv)
		var failing []string
		for _, c := range inv.Compliance {
			if c.Status == "fail" {
				failing = append(failing, c.RuleID)
			}
		}
		sw := ""
		if d.Status == "answered" {
			sw = fmt.Sprint(len(inv.Software))
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", d.DeviceID, d.Hostname, d.Group, status,
			strings.TrimSpace(inv.Hardware.Manufacturer+" "+inv.Hardware.Model), strings.TrimSpace(inv.Os.Name+" "+inv.Os.Version), sw, strings.Join(failing, ","))
	}
	tw.Flush()
	for _, s := range r.Signoffs {
		fmt.Fprintf(w, "\nsigned off by %s at %s %s", s.By, s.At.Local().Format(time.RFC3339), s.Note)
	}
	if len(r.Signoffs) > 0 {
		fmt.Fprintln(w)
	}
	if d := r.Diff; d != nil {
		fmt.Fprintf(w, "\nsince audit %s (%s): %d new devices, %d missing\n", d.Previous, d.PreviousAt, len(d.DevicesNew), len(d.DevicesMissing))
		for _, c := range d.Devices {
			fmt.Fprintf(w, "  %s: +%d -%d software, %d compliance changes\n", c.DeviceID, len(c.SoftwareAdded), len(c.SoftwareRemoved), len(c.ComplianceChanges))
			for _, s := range c.SoftwareAdded {
				fmt.Fprintf(w, "    + %s\n", s)
			}
			for _, s := range c.SoftwareRemoved {
				fmt.Fprintf(w, "    - %s\n", s)
			}
			for _, cc := range c.ComplianceChanges {
				fmt.Fprintf(w, "    %s %s: %s -> %s\n", cc.RuleID, cc.Key, orNone(cc.Was), orNone(cc.Now))
			}
		}
	}
}

func orNone(s string) string {
	if s == "" {
		return "(none)"
	}
	return s
}

func auditListCmd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("audit list")
	asJSON := fs.Bool("json", false, "JSON")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/audits", nil)
	if err != nil {
		return err
	}
	var list []audit.Summary
	if err := decodeBody(body, &list); err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(list)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tREQUESTED\tBY\tSCHOOL\tSCOPE\tDEVICES\tREASON")
	for _, s := range list {
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%d\t%s\n", s.ID, s.RequestedAt.Local().Format("2006-01-02 15:04"), s.RequestedBy, store.SchoolOf(s.School), s.Scope, s.Devices, s.Reason)
	}
	return tw.Flush()
}

func auditSignCmd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("audit sign")
	by := fs.String("by", "", "who signs the audit off (the headteacher)")
	note := fs.String("note", "", "optional note")
	id, err := parseWithID(fs, args, data)
	if err != nil {
		return err
	}
	if *by == "" {
		return errors.New("--by NAME is required")
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "POST", "/v1/audits/"+url.PathEscape(id)+"/sign", admin.SignRequest{By: *by, Note: *note})
	if err != nil {
		return err
	}
	var res struct {
		Hash string `json:"hash"`
	}
	if err := decodeBody(body, &res); err != nil {
		return err
	}
	fmt.Fprintf(stdout, "audit %s signed off by %s; record hash now %s\n", id, *by, res.Hash)
	return nil
}

func auditExportCmd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("audit export")
	out := fs.String("out", "", "write to FILE (default stdout)")
	id, err := parseWithID(fs, args, data)
	if err != nil {
		return err
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "GET", "/v1/audits/"+url.PathEscape(id)+"/export", nil)
	if err != nil {
		return err
	}
	defer body.Close()
	if *out == "" {
		_, err = io.Copy(stdout, body)
		return err
	}
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return err
	}
	if _, err := io.Copy(f, body); err != nil {
		f.Close()
		os.Remove(*out)
		return err
	}
	return f.Close()
}

// errNotVerified makes `audit verify` exit non-zero.
var errNotVerified = errors.New("the audit record does not verify")

// auditVerifyCmd checks an audit's hash chain: the stored one (--data DIR
// ID) or an exported file (--file F), which needs no collector.
func auditVerifyCmd(args []string, stdout io.Writer) error {
	fs := flag.NewFlagSet("audit verify", flag.ContinueOnError)
	data := fs.String("data", "", "collector data directory")
	file := fs.String("file", "", "an exported audit (`audit export`) to verify without the collector")
	if err := fs.Parse(args); err != nil {
		return err
	}
	var res admin.VerifyResult
	if *file != "" {
		b, err := os.ReadFile(*file)
		if err != nil {
			return err
		}
		var c audit.Chain
		if err := json.Unmarshal(b, &c); err != nil {
			return fmt.Errorf("%s is not an exported audit: %w", *file, err)
		}
		res = admin.VerifyResult{OK: true, Hash: c.Head.Hash}
		if len(c.Entries) > 0 {
			var h audit.Header
			json.Unmarshal(c.Entries[0].Body, &h)
			res.ID = h.ID
		}
		if err := audit.VerifyChain(c); err != nil {
			res.OK, res.Error = false, err.Error()
		}
	} else {
		id, err := parseWithID(fs, fs.Args(), data)
		if err != nil {
			return err
		}
		body, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/audits/"+url.PathEscape(id)+"/verify", nil)
		if err != nil {
			return err
		}
		if err := decodeBody(body, &res); err != nil {
			return err
		}
	}
	if !res.OK {
		fmt.Fprintf(stdout, "audit %s: DOES NOT VERIFY: %s\n", res.ID, res.Error)
		return errNotVerified
	}
	fmt.Fprintf(stdout, "audit %s: verified, hash %s\n", res.ID, res.Hash)
	return nil
}
