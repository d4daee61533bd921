package cli

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net/url"
	"os"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/fleetcheck"
	"github.com/vigil-safeguarding/vigil/collector/reports"
	"github.com/vigil-safeguarding/vigil/collector/store"
	"github.com/vigil-safeguarding/vigil/internal/fsutil"
)

// listFlag collects a repeatable flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ", ") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

// dfeCmd runs the DfE evidence commands: dfe roles, dfe review add|list,
// dfe check [show ID], dfe pack.
func dfeCmd(cmd string, args []string, stdout, stderr io.Writer) error {
	sub := ""
	if len(args) > 0 && !strings.HasPrefix(args[0], "-") {
		sub, args = args[0], args[1:]
	}
	switch {
	case cmd == "dfe roles" && sub == "":
		return dfeRoles(args, stdout)
	case cmd == "dfe review" && sub == "add":
		return dfeReviewAdd(args, stdout)
	case cmd == "dfe review" && sub == "list":
		return dfeReviewList(args, stdout)
	case cmd == "dfe check" && sub == "":
		return dfeCheck(args, stdout, stderr)
	case cmd == "dfe check" && sub == "show":
		return dfeCheckShow(args, stdout)
	case cmd == "dfe pack" && sub == "":
		return dfePack(args, stdout)
	}
	return fmt.Errorf("unknown command %q (want dfe roles, dfe review add|list, dfe check [show ID], dfe pack)", strings.TrimSpace(cmd+" "+sub))
}

func byFlag(fs *flag.FlagSet) *string {
	return fs.String("by", "", "who does this (recorded; default the OS user)")
}

func whoOr(by string) string {
	if by != "" {
		return by
	}
	return osUser()
}

func dfeRoles(args []string, stdout io.Writer) error {
	fs, data := dataFlags("dfe roles")
	names := map[string]*string{}
	contacts := map[string]*string{}
	for _, k := range store.DFERoleKeys {
		flagName := strings.ReplaceAll(k, "_", "-")
		names[k] = fs.String(flagName, "", "name the "+store.DFERoleLabels[k]+" (\"-\" clears the role)")
		contacts[k] = fs.String(flagName+"-contact", "", "contact of the "+store.DFERoleLabels[k]+" (e-mail, phone, company)")
	}
	by := byFlag(fs)
	asJSON := fs.Bool("json", false, "print the register as JSON")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	c := admin.NewClient(*data)
	var holders []store.RoleHolder
	for _, k := range store.DFERoleKeys {
		n := *names[k]
		if n == "" && *contacts[k] == "" {
			continue
		}
		if n == "" {
			return fmt.Errorf("--%s-contact needs --%s NAME", strings.ReplaceAll(k, "_", "-"), strings.ReplaceAll(k, "_", "-"))
		}
		if n == "-" {
			n = ""
		}
		holders = append(holders, store.RoleHolder{Role: k, Name: n, Contact: *contacts[k]})
	}
	method, body := "GET", any(nil)
	if len(holders) > 0 {
		method, body = "PUT", admin.RolesBody{Roles: holders}
	}
	rd, err := c.DoAs(context.Background(), whoOr(*by), method, "/v1/dfe/roles", body)
	if err != nil {
		return err
	}
	var rs store.DFERoles
	if err := decodeBody(rd, &rs); err != nil {
		return fmt.Errorf("read the roles register: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rs)
	}
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ROLE\tNAME\tCONTACT\tSINCE")
	for _, k := range store.DFERoleKeys {
		h := rs.Holder(k)
		name := h.Name
		if name == "" {
			name = "(not named)"
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", reports.DFERoleShort(k), name, h.Contact, reports.Day(h.Since))
	}
	return tw.Flush()
}

func dfeReviewAdd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("dfe review add")
	date := fs.String("date", "", "the review's date, YYYY-MM-DD")
	next := fs.String("next", "", "the next review's date, YYYY-MM-DD (default a year on)")
	findings := fs.String("findings", "", "what the review found")
	var attendees, actions listFlag
	fs.Var(&attendees, "attendee", "who attended (repeatable)")
	fs.Var(&actions, "action", "an action agreed (repeatable)")
	by := byFlag(fs)
	if err := parse(fs, args, data); err != nil {
		return err
	}
	r := store.DFEReview{Attendees: attendees, Actions: actions, Findings: *findings}
	var err error
	if r.Date, err = time.Parse("2006-01-02", *date); err != nil {
		return fmt.Errorf("--date %q: want YYYY-MM-DD", *date)
	}
	if *next != "" {
		if r.NextReview, err = time.Parse("2006-01-02", *next); err != nil {
			return fmt.Errorf("--next %q: want YYYY-MM-DD", *next)
		}
	}
	rd, err := admin.NewClient(*data).DoAs(context.Background(), whoOr(*by), "POST", "/v1/dfe/reviews", admin.ReviewBody{Review: r})
	if err != nil {
		return err
	}
	var got store.DFEReview
	if err := decodeBody(rd, &got); err != nil {
		return fmt.Errorf("read the collector's answer: %w", err)
	}
	fmt.Fprintf(stdout, "review %s of %s recorded; next review due %s\n", got.ID, reports.Day(got.Date), reports.Day(got.NextReview))
	return nil
}

func dfeReviewList(args []string, stdout io.Writer) error {
	fs, data := dataFlags("dfe review list")
	asJSON := fs.Bool("json", false, "print JSON")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	rd, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/dfe/reviews", nil)
	if err != nil {
		return err
	}
	var out struct {
		Reviews []store.DFEReview    `json:"reviews"`
		Status  reports.ReviewStatus `json:"status"`
	}
	if err := decodeBody(rd, &out); err != nil {
		return fmt.Errorf("read reviews: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(out)
	}
	for _, r := range out.Reviews {
		fmt.Fprintf(stdout, "%s  %s  attendees: %s  next: %s\n  findings: %s\n", reports.Day(r.Date), r.ID, strings.Join(r.Attendees, ", "), reports.Day(r.NextReview), r.Findings)
		for _, a := range r.Actions {
			fmt.Fprintf(stdout, "  action: %s\n", a)
		}
	}
	if out.Status.Reminder != "" {
		fmt.Fprintln(stdout, "REMINDER: "+out.Status.Reminder)
	} else {
		fmt.Fprintf(stdout, "next review due %s\n", reports.Day(out.Status.Due))
	}
	return nil
}

// checkProgress counts a check's settled parts.
func checkProgress(c store.FleetCheck) (settled, working int) {
	for _, d := range c.Devices {
		if d.Outcome != fleetcheck.Pending {
			settled++
		}
		if d.Outcome == fleetcheck.Working {
			working++
		}
	}
	return
}

// dfeCheck runs a fleet-wide end-to-end check, shows progress on stderr,
// then prints the check's ID alone on stdout.
func dfeCheck(args []string, stdout, stderr io.Writer) error {
	fs, data := dataFlags("dfe check")
	reason := fs.String("reason", "", "why the check is run (recorded)")
	wait := fs.Duration("wait", 10*time.Minute, "how long to show progress before printing the ID (the check goes on)")
	by := byFlag(fs)
	if err := parse(fs, args, data); err != nil {
		return err
	}
	c := admin.NewClient(*data)
	ctx := context.Background()
	rd, err := c.DoAs(ctx, whoOr(*by), "POST", "/v1/dfe/checks", admin.CheckBody{Reason: *reason})
	if err != nil {
		return err
	}
	var chk store.FleetCheck
	if err := decodeBody(rd, &chk); err != nil {
		return fmt.Errorf("read the collector's answer: %w", err)
	}
	fmt.Fprintf(stderr, "fleet check %s: %d devices\n", chk.ID, len(chk.Devices))
	deadline := time.Now().Add(*wait)
	last := ""
	for {
		rd, err := c.Do(ctx, "GET", "/v1/dfe/checks/"+url.PathEscape(chk.ID), nil)
		if err != nil {
			return err
		}
		if err := decodeBody(rd, &chk); err != nil {
			return fmt.Errorf("read progress: %w", err)
		}
		settled, working := checkProgress(chk)
		line := fmt.Sprintf("%d/%d settled, %d working end to end", settled, len(chk.Devices), working)
		if line != last {
			fmt.Fprintln(stderr, line)
			last = line
		}
		if !chk.CompletedAt.IsZero() || time.Now().After(deadline) {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	fmt.Fprintln(stdout, chk.ID)
	return nil
}

func dfeCheckShow(args []string, stdout io.Writer) error {
	fs, data := dataFlags("dfe check show")
	asJSON := fs.Bool("json", false, "print the record as JSON")
	id, err := parseWithID(fs, args, data)
	if err != nil {
		return err
	}
	rd, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/dfe/checks/"+url.PathEscape(id), nil)
	if err != nil {
		return err
	}
	var chk store.FleetCheck
	if err := decodeBody(rd, &chk); err != nil {
		return fmt.Errorf("read the check: %w", err)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(chk)
	}
	fmt.Fprintf(stdout, "check %s requested by %s at %s, completed %s\n", chk.ID, chk.RequestedBy, chk.RequestedAt.Local().Format(time.RFC3339), reports.Day(chk.CompletedAt))
	tw := tabwriter.NewWriter(stdout, 0, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "DEVICE\tHOSTNAME\tOUTCOME\tLAST PROVED\tDETAIL")
	for _, d := range chk.Devices {
		lp := "never"
		if !d.LastProved.IsZero() {
			lp = d.LastProved.Local().Format(time.RFC3339)
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", d.DeviceID, d.Hostname, d.Outcome, lp, d.Detail)
	}
	return tw.Flush()
}

func dfePack(args []string, stdout io.Writer) error {
	fs, data := dataFlags("dfe pack")
	format := fs.String("format", "pdf", "pdf, csv or json")
	out := fs.String("out", "", "file to write (default stdout)")
	from := fs.String("from", "", "first day, YYYY-MM-DD (default a year ago)")
	to := fs.String("to", "", "day after the last, YYYY-MM-DD (default tomorrow)")
	by := byFlag(fs)
	if err := parse(fs, args, data); err != nil {
		return err
	}
	q := url.Values{"format": {*format}}
	if *from != "" {
		q.Set("from", *from)
	}
	if *to != "" {
		q.Set("to", *to)
	}
	rd, err := admin.NewClient(*data).DoAs(context.Background(), whoOr(*by), "GET", "/v1/dfe/pack?"+q.Encode(), nil)
	if err != nil {
		return err
	}
	defer rd.Close()
	b, err := io.ReadAll(rd)
	if err != nil {
		return fmt.Errorf("read the pack: %w", err)
	}
	if *out == "" {
		_, err = stdout.Write(b)
		return err
	}
	if err := fsutil.WriteFileAtomic(*out, b, 0o600); err != nil {
		return fmt.Errorf("write %s: %w", *out, err)
	}
	fmt.Fprintf(os.Stderr, "evidence pack written to %s\n", *out)
	return nil
}
