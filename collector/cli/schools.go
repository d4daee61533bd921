package cli

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"text/tabwriter"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/console"
	"github.com/vigil-safeguarding/vigil/collector/schoolexport"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

// schoolAdd adds a school to the trust through the running collector's
// admin socket, as the other commands do.
func schoolAdd(args []string, stdout io.Writer) error {
	fs, data := dataFlags("school add")
	name := fs.String("name", "", "the school's name, as its staff know it")
	id := fs.String("id", "", "short ID used by --school and in the access log (default: derived from the name)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *name == "" {
		return errors.New("--name is required")
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "POST", "/v1/schools", admin.SchoolRequest{Name: *name, ID: *id})
	if err != nil {
		return err
	}
	defer body.Close()
	var sc store.School
	if err := json.NewDecoder(body).Decode(&sc); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	fmt.Fprintf(stdout, "school %s added (%s)\n", sc.ID, sc.Name)
	return nil
}

func schoolList(args []string, stdout io.Writer) error {
	fs, data := dataFlags("school list")
	asJSON := fs.Bool("json", false, "one JSON array")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	body, err := admin.NewClient(*data).Do(context.Background(), "GET", "/v1/schools", nil)
	if err != nil {
		return err
	}
	defer body.Close()
	if *asJSON {
		_, err = io.Copy(stdout, body)
		return err
	}
	var all []store.School
	if err := json.NewDecoder(body).Decode(&all); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
	fmt.Fprintln(tw, "ID\tNAME\tADDED\tRETENTION\tWORKING HOURS\tON CALL\tMAIL")
	for _, sc := range all {
		added := "-"
		if !sc.CreatedAt.IsZero() {
			added = sc.CreatedAt.Format("2006-01-02")
		}
		ret := "the installation's"
		if len(sc.Retention) > 0 {
			ret = sc.Retention.String()
		}
		hours := "the installation's"
		if sc.WorkingHours != "" {
			hours = sc.WorkingHours + " (" + sc.Timezone + ")"
		}
		oncall := "the installation's"
		if len(sc.OnCall) > 0 {
			oncall = strings.Join(sc.OnCall, ",")
		}
		mail := "the installation's"
		if sc.MailRelay != "" {
			mail = sc.MailFrom + " via " + sc.MailRelay
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\t%s\n", sc.ID, sc.Name, added, ret, hours, oncall, mail)
	}
	return tw.Flush()
}

// userGrant gives a trust role's account (tenancy.TrustRole) sight of a
// further school, or takes it away; both are in the access log.
func userGrant(args []string, stdout io.Writer, grant bool) error {
	name := "user grant"
	if !grant {
		name = "user ungrant"
	}
	fs, data := dataFlags(name)
	username := fs.String("username", "", "the dsl account")
	school := fs.String("school", "", "school (ID or name)")
	reason := fs.String("reason", "", "why (recorded in the access log)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *username == "" || *school == "" || *reason == "" {
		return errors.New("--username, --school and --reason are required")
	}
	path := "/v1/users/" + url.PathEscape(*username) + "/grant"
	if !grant {
		path = "/v1/users/" + url.PathEscape(*username) + "/ungrant"
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "POST", path, console.GrantRequest{School: *school, Reason: *reason})
	if err != nil {
		return err
	}
	defer body.Close()
	var u console.UserJSON
	if err := json.NewDecoder(body).Decode(&u); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	fmt.Fprintf(stdout, "%s (school %s) now also sees: %s\n", u.Username, u.School, strings.Join(append([]string{"-"}, u.Granted...)[min(1, len(u.Granted)):], ", "))
	return nil
}

// schoolExport writes everything a school owns (collector/schoolexport)
// to a file only its owner can read, and checks that the file is whole.
func schoolExport(args []string, stdout io.Writer) error {
	fs, data := dataFlags("school export")
	school := fs.String("school", "", "the school to export (ID or name)")
	out := fs.String("out", "", "file to write (JSON Lines, docs/scale.md)")
	keyOut := fs.String("evidence-key", "", "also write the school's own evidence key to this file (it opens the exported evidence; needs --reason)")
	reason := fs.String("reason", "", "why the evidence key is handed over (recorded)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *school == "" || *out == "" {
		return errors.New("--school and --out are required")
	}
	if *keyOut != "" && *reason == "" {
		return errors.New("--evidence-key needs --reason (recorded in the access log)")
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "GET", "/v1/schools/"+url.PathEscape(*school)+"/export", nil)
	if err != nil {
		return err
	}
	defer body.Close()
	f, err := os.OpenFile(*out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create the export file: %w", err)
	}
	// Read the stream line by line as it is written, to find its end line.
	var last schoolexport.Line
	sc := bufio.NewScanner(io.TeeReader(body, f))
	sc.Buffer(nil, 64<<20)
	for sc.Scan() {
		last = schoolexport.Line{}
		if err := json.Unmarshal(sc.Bytes(), &last); err != nil {
			f.Close()
			return fmt.Errorf("the collector's export is not JSON Lines: %w", err)
		}
	}
	if err := sc.Err(); err != nil {
		f.Close()
		return fmt.Errorf("read the export: %w", err)
	}
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the export file: %w", err)
	}
	if last.Kind != "end" || last.End == nil {
		return fmt.Errorf("the export in %s was cut short (no end line): see the collector's log", *out)
	}
	kinds := make([]string, 0, len(last.End.Counts))
	for k, n := range last.End.Counts {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
	}
	sort.Strings(kinds)
	fmt.Fprintf(stdout, "wrote %s: %s; the export is in the access log\n", *out, strings.Join(kinds, ", "))
	if *keyOut != "" {
		return schoolEvidenceKey(*data, *school, *keyOut, *reason, stdout)
	}
	return nil
}

// schoolEvidenceKey writes the school's own evidence key (an age identity
// file, owner-only, never overwriting) beside its export.
func schoolEvidenceKey(data, school, out, reason string, stdout io.Writer) error {
	body, err := admin.NewClient(data).DoAs(context.Background(), osUser(), "POST", "/v1/schools/"+url.PathEscape(school)+"/evidence-key",
		admin.EvidenceKeyRequest{Reason: reason})
	if err != nil {
		return err
	}
	defer body.Close()
	var k admin.EvidenceKey
	if err := json.NewDecoder(body).Decode(&k); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		return fmt.Errorf("create the evidence key file: %w", err)
	}
	fmt.Fprintf(f, "# evidence key of school %s: opens the evidence in its export (age -d -i %s)\n%s\n", k.School, out, k.Identity)
	if err := f.Close(); err != nil {
		return fmt.Errorf("write the evidence key file: %w", err)
	}
	fmt.Fprintf(stdout, "wrote %s: the evidence key of school %s; handing it over is in the access log. Keep it as safe as the evidence\n", out, k.School)
	return nil
}

// schoolDelete removes a school that leaves the trust, and everything it
// owns, through the running collector (store.DeleteSchool).
func schoolDelete(args []string, stdout io.Writer) error {
	fs, data := dataFlags("school delete")
	school := fs.String("school", "", "the school to delete (ID or name)")
	confirm := fs.String("confirm", "", "the school's ID again: nothing deleted comes back")
	reason := fs.String("reason", "", "why (recorded in the access log)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *school == "" || *reason == "" {
		return errors.New("--school and --reason are required (and --confirm ID)")
	}
	body, err := admin.NewClient(*data).DoAs(context.Background(), osUser(), "POST", "/v1/schools/"+url.PathEscape(*school)+"/delete",
		admin.DeleteSchoolRequest{Confirm: *confirm, Reason: *reason})
	if err != nil {
		return err
	}
	defer body.Close()
	var rep admin.SchoolDeleted
	if err := json.NewDecoder(body).Decode(&rep); err != nil {
		return fmt.Errorf("decode answer: %w", err)
	}
	kinds := make([]string, 0, len(rep.Keys))
	total := 0
	for k, n := range rep.Keys {
		kinds = append(kinds, fmt.Sprintf("%s %d", k, n))
		total += n
	}
	sort.Strings(kinds)
	fmt.Fprintf(stdout, "deleted school %s: %d devices, %d records (%s), %d grants taken back; in the access log\n", rep.School, rep.Devices, total, strings.Join(kinds, ", "), rep.Grants)
	if rep.EvidenceKeyDestroyed {
		fmt.Fprintf(stdout, "its evidence key is destroyed: no copy of its evidence (a backup, an export) can be opened again\n")
	}
	if rep.RulesOverridesRemoved > 0 {
		fmt.Fprintf(stdout, "its rules overrides (%d files) are removed\n", rep.RulesOverridesRemoved)
	}
	if rep.DataKeyDestroyed {
		fmt.Fprintf(stdout, "its data key is destroyed: no copy of its findings or review records in a store backup can be read again\n")
	}
	return nil
}

// schoolRetention sets how long a school keeps its devices' findings,
// through the running collector (store.SetSchoolRetention).
func schoolRetention(args []string, stdout io.Writer) error {
	fs, data := dataFlags("school retention")
	school := fs.String("school", "", "the school (ID or name)")
	spec := fs.String("retention", "", `the school's retention per finding category, e.g. "default=365d,selftest=30d" (0 keeps forever; "default" for the categories not named, else the installation's applies to them)`)
	clear := fs.Bool("clear", false, "the installation's retention (serve --retention) again")
	reason := fs.String("reason", "", "why (recorded in the access log)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *school == "" || *reason == "" || (*spec == "") == !*clear {
		return errors.New("--school, --reason and one of --retention SPEC or --clear are required")
	}
	ret := store.Retention{}
	for _, part := range strings.Split(*spec, ",") {
		part = strings.TrimSpace(part)
		if part == "" {
			continue
		}
		k, v, ok := strings.Cut(part, "=")
		if !ok || k == "" {
			return fmt.Errorf("--retention: %q is not category=duration", part)
		}
		d, err := parseDays(v)
		if err != nil {
			return fmt.Errorf("--retention %s: %w", k, err)
		}
		ret[k] = d
	}
	sc, err := changeSchool(*data, *school, "/retention", admin.SchoolRetentionRequest{Retention: ret, Reason: *reason})
	if err != nil {
		return err
	}
	if len(sc.Retention) == 0 {
		fmt.Fprintf(stdout, "school %s keeps findings as the installation does (serve --retention)\n", sc.ID)
	} else {
		fmt.Fprintf(stdout, "school %s keeps findings %s (findings stored from now on); in the access log\n", sc.ID, sc.Retention.String())
	}
	return nil
}

// schoolHours sets a school's own working hours, through the running
// collector: its absent devices and out-of-hours alerts are judged by them.
func schoolHours(args []string, stdout io.Writer) error {
	fs, data := dataFlags("school hours")
	school := fs.String("school", "", "the school (ID or name)")
	hours := fs.String("working-hours", "", `the school's hours, e.g. "mon-thu 08:30-15:30, fri 08:30-14:00"`)
	tz := fs.String("timezone", "Europe/London", "the school's time zone")
	clear := fs.Bool("clear", false, "the installation's hours (serve --working-hours) again")
	reason := fs.String("reason", "", "why (recorded in the access log)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *school == "" || *reason == "" || (*hours == "") == !*clear {
		return errors.New("--school, --reason and one of --working-hours HOURS or --clear are required")
	}
	sc, err := changeSchool(*data, *school, "/hours", admin.SchoolHoursRequest{WorkingHours: *hours, Timezone: *tz, Reason: *reason})
	if err != nil {
		return err
	}
	if sc.WorkingHours == "" {
		fmt.Fprintf(stdout, "school %s works the installation's hours (serve --working-hours)\n", sc.ID)
	} else {
		fmt.Fprintf(stdout, "school %s works %s (%s); in the access log\n", sc.ID, sc.WorkingHours, sc.Timezone)
	}
	return nil
}

// schoolOnCall sets who is e-mailed first about the school's alerts out of
// its working hours.
func schoolOnCall(args []string, stdout io.Writer) error {
	fs, data := dataFlags("school on-call")
	school := fs.String("school", "", "the school (ID or name)")
	users := fs.String("users", "", "console usernames, comma-separated: the school's own accounts or ones granted it")
	clear := fs.Bool("clear", false, "the installation's on-call users (serve --out-of-hours-users) again")
	reason := fs.String("reason", "", "why (recorded in the access log)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *school == "" || *reason == "" || (*users == "") == !*clear {
		return errors.New("--school, --reason and one of --users U1,U2 or --clear are required")
	}
	var list []string
	for _, u := range strings.Split(*users, ",") {
		if u = strings.TrimSpace(u); u != "" {
			list = append(list, u)
		}
	}
	sc, err := changeSchool(*data, *school, "/on-call", admin.SchoolOnCallRequest{Users: list, Reason: *reason})
	if err != nil {
		return err
	}
	if len(sc.OnCall) == 0 {
		fmt.Fprintf(stdout, "school %s: the installation's on-call users (serve --out-of-hours-users)\n", sc.ID)
	} else {
		fmt.Fprintf(stdout, "school %s on call out of hours: %s; in the access log\n", sc.ID, strings.Join(sc.OnCall, ", "))
	}
	return nil
}

// schoolRules shows a school's rules overrides, or replaces them with the
// files of a folder (validated by the running collector over every group's
// pack), or removes them.
func schoolRules(args []string, stdout io.Writer) error {
	fs, data := dataFlags("school rules")
	school := fs.String("school", "", "the school (ID or name)")
	from := fs.String("from", "", "a folder whose files (*.yaml, keywords/*.txt, ...) become the school's whole set of overrides")
	clear := fs.Bool("clear", false, "remove the school's overrides (its devices get the trust's pack)")
	reason := fs.String("reason", "", "why (recorded in the access log)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *school == "" {
		return errors.New("--school is required")
	}
	cl := admin.NewClient(*data)
	if *from == "" && !*clear {
		body, err := cl.DoAs(context.Background(), osUser(), "GET", "/v1/schools/"+url.PathEscape(*school)+"/rules", nil)
		if err != nil {
			return err
		}
		defer body.Close()
		var files []admin.SchoolRulesFile
		if err := json.NewDecoder(body).Decode(&files); err != nil {
			return fmt.Errorf("decode answer: %w", err)
		}
		if len(files) == 0 {
			fmt.Fprintln(stdout, "no overrides: the school's devices get the trust's pack")
			return nil
		}
		tw := tabwriter.NewWriter(stdout, 2, 4, 2, ' ', 0)
		fmt.Fprintln(tw, "PATH\tSIZE\tSHA-256")
		for _, f := range files {
			fmt.Fprintf(tw, "%s\t%d\t%s\n", f.Path, f.Size, f.SHA256)
		}
		return tw.Flush()
	}
	if *reason == "" || (*from != "") == *clear {
		return errors.New("--reason and one of --from DIR or --clear are required")
	}
	files := map[string][]byte{}
	if *from != "" {
		root, err := filepath.Abs(*from)
		if err != nil {
			return err
		}
		if err := filepath.WalkDir(root, func(p string, e os.DirEntry, err error) error {
			if err != nil || !e.Type().IsRegular() {
				return err
			}
			rel, err := filepath.Rel(root, p)
			if err != nil {
				return err
			}
			b, err := os.ReadFile(p)
			files[filepath.ToSlash(rel)] = b
			return err
		}); err != nil {
			return fmt.Errorf("read %s: %w", *from, err)
		}
		if len(files) == 0 {
			return fmt.Errorf("%s holds no files (use --clear to remove the overrides)", *from)
		}
	}
	sc, err := changeSchool(*data, *school, "/rules", admin.SchoolRulesRequest{Files: files, Reason: *reason})
	if err != nil {
		return err
	}
	if len(files) == 0 {
		fmt.Fprintf(stdout, "school %s: overrides removed; its devices get the trust's pack; in the access log\n", sc.ID)
	} else {
		fmt.Fprintf(stdout, "school %s: %d override files validated and in force; pushed to its devices; in the access log\n", sc.ID, len(files))
	}
	return nil
}

// schoolMail sets the relay and sender of the school's alert e-mails.
func schoolMail(args []string, stdout io.Writer) error {
	fs, data := dataFlags("school mail")
	school := fs.String("school", "", "the school (ID or name)")
	relay := fs.String("relay", "", "the school's mail relay, HOST:PORT")
	from := fs.String("from", "", "the sender of its alert e-mails, e.g. safeguarding@school.example")
	clear := fs.Bool("clear", false, "the installation's relay (serve --smtp, --smtp-from) again")
	reason := fs.String("reason", "", "why (recorded in the access log)")
	if err := parse(fs, args, data); err != nil {
		return err
	}
	if *school == "" || *reason == "" || (*relay == "") == !*clear || (*relay == "") != (*from == "") {
		return errors.New("--school, --reason and either --relay HOST:PORT --from ADDRESS or --clear are required")
	}
	sc, err := changeSchool(*data, *school, "/mail", admin.SchoolMailRequest{Relay: *relay, From: *from, Reason: *reason})
	if err != nil {
		return err
	}
	if sc.MailRelay == "" {
		fmt.Fprintf(stdout, "school %s: alert e-mails by the installation's relay (serve --smtp)\n", sc.ID)
	} else {
		fmt.Fprintf(stdout, "school %s: alert e-mails by %s from %s; in the access log\n", sc.ID, sc.MailRelay, sc.MailFrom)
	}
	return nil
}

// changeSchool posts a change of a school's settings to the admin socket
// and answers the school's record.
func changeSchool(data, school, what string, req any) (store.School, error) {
	body, err := admin.NewClient(data).DoAs(context.Background(), osUser(), "POST", "/v1/schools/"+url.PathEscape(school)+what, req)
	if err != nil {
		return store.School{}, err
	}
	defer body.Close()
	var sc store.School
	if err := json.NewDecoder(body).Decode(&sc); err != nil {
		return store.School{}, fmt.Errorf("decode answer: %w", err)
	}
	return sc, nil
}
