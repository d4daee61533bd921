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
	"github.com/vigil-safeguarding/vigil/collector/inventory"
	"github.com/vigil-safeguarding/vigil/collector/licences"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// licencesCmd runs the licence register, inventory and disposal commands,
// all over the admin socket of the running collector.
func licencesCmd(cmd string, args []string, stdout io.Writer) error {
	fs, data := dataFlags(cmd)
	asJSON := fs.Bool("json", false, "JSON")
	ctx := context.Background()
	switch cmd {
	case "licences import":
		if err := parse(fs, args, data); err != nil {
			return err
		}
		if fs.NArg() != 1 {
			return errors.New("licences import: name one CSV file")
		}
		b, err := os.ReadFile(fs.Arg(0))
		if err != nil {
			return fmt.Errorf("read licence file: %w", err)
		}
		var res licences.ImportResult
		if err := call(ctx, *data, "POST", "/v1/licences/import", admin.LicenceImport{CSV: string(b)}, &res); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "imported %s: %d added, %d updated\n", fs.Arg(0), res.Added, res.Updated)
		return nil
	case "licences list":
		if err := parse(fs, args, data); err != nil {
			return err
		}
		var ls []store.Licence
		if err := call(ctx, *data, "GET", "/v1/licences", nil, &ls); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(ls)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "ID\tPRODUCT\tPUBLISHER\tSEATS\tEXPIRY\tREFERENCE")
		for _, l := range ls {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%s\t%s\n", l.ID, l.Product, l.Publisher, l.Seats, day(l.Expiry.IsZero(), l.Expiry.Format("2006-01-02")), l.Reference)
		}
		return tw.Flush()
	case "licences add", "licences update":
		id := fs.String("id", "", "licence ID (update)")
		product := fs.String("product", "", "product name")
		publisher := fs.String("publisher", "", "publisher")
		seats := fs.Int("seats", 0, "seats purchased")
		expiry := fs.String("expiry", "", "expiry date YYYY-MM-DD (none: perpetual)")
		ref := fs.String("reference", "", "order or agreement reference")
		if err := parse(fs, args, data); err != nil {
			return err
		}
		var l store.Licence
		method, path := "POST", "/v1/licences"
		if cmd == "licences update" {
			if *id == "" {
				return errors.New("--id is required (see `vigil-collector licences list`)")
			}
			var ls []store.Licence
			if err := call(ctx, *data, "GET", "/v1/licences", nil, &ls); err != nil {
				return err
			}
			found := false
			for _, x := range ls {
				if x.ID == *id {
					l, found = x, true
				}
			}
			if !found {
				return fmt.Errorf("no licence %q (see `vigil-collector licences list`)", *id)
			}
			method, path = "PUT", "/v1/licences/"+url.PathEscape(*id)
		}
		set := map[string]bool{}
		fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
		if set["product"] {
			l.Product = *product
		}
		if set["publisher"] {
			l.Publisher = *publisher
		}
		if set["seats"] {
			l.Seats = *seats
		}
		if set["reference"] {
			l.Reference = *ref
		}
		if set["expiry"] {
			if *expiry == "" || *expiry == "none" {
				l.Expiry = time.Time{}
			} else {
				t, err := licences.ParseDate(*expiry)
				if err != nil {
					return fmt.Errorf("--expiry: %w", err)
				}
				l.Expiry = t
			}
		}
		if err := call(ctx, *data, method, path, l, &l); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "licence %s: %s, %d seats\n", l.ID, l.Product, l.Seats)
		return nil
	case "licences remove":
		id := fs.String("id", "", "licence ID")
		if err := parse(fs, args, data); err != nil {
			return err
		}
		if *id == "" {
			return errors.New("--id is required")
		}
		if err := call(ctx, *data, "DELETE", "/v1/licences/"+url.PathEscape(*id), nil, nil); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "licence %s removed\n", *id)
		return nil
	case "licences alias", "licences unalias":
		title := fs.String("title", "", "installed title, as an audit lists it (versions and editions do not matter)")
		lic := fs.String("licence", "", "licence ID to count it against")
		ignore := fs.Bool("ignore", false, "leave this title out of the reconciliation")
		if err := parse(fs, args, data); err != nil {
			return err
		}
		if *title == "" {
			return errors.New("--title is required")
		}
		if cmd == "licences unalias" {
			if err := call(ctx, *data, "DELETE", "/v1/licences/aliases?"+url.Values{"title": {*title}}.Encode(), nil, nil); err != nil {
				return err
			}
			fmt.Fprintf(stdout, "%q is matched automatically again\n", licences.Normalise(*title))
			return nil
		}
		var a store.LicenceAlias
		if err := call(ctx, *data, "POST", "/v1/licences/aliases", admin.LicenceAliasRequest{Title: *title, LicenceID: *lic, Ignore: *ignore}, &a); err != nil {
			return err
		}
		if a.Ignore {
			fmt.Fprintf(stdout, "%q is ignored\n", a.Title)
		} else {
			fmt.Fprintf(stdout, "%q counts against licence %s\n", a.Title, a.LicenceID)
		}
		return nil
	case "licences reconcile":
		matches := fs.Bool("matches", false, "also list every install and the rule that matched it")
		if err := parse(fs, args, data); err != nil {
			return err
		}
		var rep licences.Report
		if err := call(ctx, *data, "GET", "/v1/licences/reconcile", nil, &rep); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(rep)
		}
		return printReconcile(stdout, rep, *matches)
	case "inventory list":
		if err := parse(fs, args, data); err != nil {
			return err
		}
		var items []inventory.Item
		if err := call(ctx, *data, "GET", "/v1/inventory", nil, &items); err != nil {
			return err
		}
		if *asJSON {
			return json.NewEncoder(stdout).Encode(items)
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tHOSTNAME\tGROUP\tOS\tENROLLED\tLAST SEEN\tLAST AUDIT\tSTATE")
		for _, it := range items {
			state := "active"
			switch {
			case it.Disposed != nil:
				state = fmt.Sprintf("disposed %s (%s, authorised by %s", it.Disposed.Date.Format("2006-01-02"), it.Disposed.Method, it.Disposed.AuthorisedBy)
				if !it.Disposed.LicencesVerified {
					state += "; licences NOT verified"
				}
				state += ")"
			case it.Revoked:
				state = "revoked"
			case it.Connected:
				state = "connected"
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\t%s\n", it.DeviceID, it.Hostname, it.Group, it.OS,
				it.EnrolledAt.Local().Format("2006-01-02"), day(it.LastSeen.IsZero(), it.LastSeen.Local().Format("2006-01-02 15:04")),
				day(it.LastAudit.IsZero(), it.LastAudit.Local().Format("2006-01-02 15:04")), state)
		}
		return tw.Flush()
	case "devices dispose":
		var req inventory.DisposeRequest
		device := fs.String("device", "", "device ID")
		fs.StringVar(&req.AuthorisedBy, "authorised-by", "", "who authorised the disposal")
		fs.BoolVar(&req.LicencesVerified, "licences-verified", false, "the device's software licences were checked (released or transferred)")
		fs.StringVar(&req.PersonalData, "personal-data", "", "personal data the device was likely to hold (none if none)")
		fs.StringVar(&req.Wiped, "wiped", "", "how its storage was wiped or destroyed (required unless --personal-data none)")
		fs.StringVar(&req.Method, "method", "", "how it was disposed of (waste, gift, sale, recycler)")
		fs.StringVar(&req.Date, "date", "", "date disposed of, YYYY-MM-DD (default today)")
		fs.StringVar(&req.Receipt, "receipt", "", "the authorised agency's written receipt")
		fs.StringVar(&req.PATCertificate, "pat-certificate", "", "electrical safety check (required for sale or gift)")
		fs.StringVar(&req.Notes, "notes", "", "notes")
		if err := parse(fs, args, data); err != nil {
			return err
		}
		if *device == "" {
			return errors.New("--device is required (see `vigil-collector inventory list`)")
		}
		var d store.Disposal
		if err := call(ctx, *data, "POST", "/v1/devices/"+url.PathEscape(*device)+"/dispose", req, &d); err != nil {
			return err
		}
		fmt.Fprintf(stdout, "device %s disposed of on %s and revoked: it stays in the inventory\n", d.DeviceID, d.Date.Format("2006-01-02"))
		if len(d.Licensed) > 0 {
			fmt.Fprintf(stdout, "licensed software on it at its last audit: %s\n", strings.Join(d.Licensed, ", "))
		}
		return nil
	}
	return fmt.Errorf("unknown command %q", cmd)
}

func day(empty bool, s string) string {
	if empty {
		return "-"
	}
	return s
}

// call does one admin request as the OS user and decodes the answer.
func call(ctx context.Context, data, method, path string, body, out any) error {
	rc, err := admin.NewClient(data).DoAs(ctx, osUser(), method, path, body)
	if err != nil {
		return err
	}
	if out == nil {
		rc.Close()
		return nil
	}
	return decodeBody(rc, out)
}

func printReconcile(w io.Writer, rep licences.Report, matches bool) error {
	fmt.Fprintf(w, "%d device(s) with an audit", rep.Devices)
	if !rep.OldestAnswer.IsZero() {
		fmt.Fprintf(w, "; oldest answer %s", rep.OldestAnswer.Local().Format("2006-01-02"))
	}
	fmt.Fprintln(w)
	if len(rep.IncompleteDevices) > 0 {
		fmt.Fprintf(w, "partial software lists (over the cap) on: %s\n", strings.Join(rep.IncompleteDevices, ", "))
	}
	tw := tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "PRODUCT\tPURCHASED\tVALID\tINSTALLED\tOVER QUOTA\tUNUSED\tEXPIRED SEATS\tNEXT EXPIRY")
	for _, p := range rep.Products {
		flag := ""
		if p.OverQuota > 0 {
			flag = "  OVER"
		}
		if p.Expired {
			flag += "  EXPIRED"
		}
		fmt.Fprintf(tw, "%s\t%d\t%d\t%d\t%d\t%d\t%d\t%s%s\n", p.Product, p.Purchased, p.Valid, p.Installed, p.OverQuota, p.Unused, p.ExpiredSeats, day(p.NextExpiry == "", p.NextExpiry), flag)
	}
	if err := tw.Flush(); err != nil {
		return err
	}
	if len(rep.Unlicensed) > 0 {
		fmt.Fprintln(w, "\ninstalled with no licence record (applications with a publisher; correct with `licences alias`):")
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "TITLE\tPUBLISHER\tDEVICES\tAS INSTALLED")
		for _, u := range rep.Unlicensed {
			fmt.Fprintf(tw, "%s\t%s\t%d\t%s\n", u.Title, u.Publisher, u.Installed, strings.Join(u.Names, "; "))
		}
		if err := tw.Flush(); err != nil {
			return err
		}
	}
	if matches {
		fmt.Fprintln(w, "\nmatches (rule: alias, ignored, exact, prefix, none):")
		tw = tabwriter.NewWriter(w, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "DEVICE\tINSTALLED\tVERSION\tNORMALISED\tRULE\tPRODUCT\tLICENCE")
		for _, m := range rep.Matches {
			fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", m.DeviceID, m.Name, m.Version, m.Title, m.Rule, m.Product, m.LicenceID)
		}
		return tw.Flush()
	}
	return nil
}
