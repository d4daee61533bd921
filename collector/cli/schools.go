package cli

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/url"
	"strings"
	"text/tabwriter"

	"github.com/vigil-safeguarding/vigil/collector/admin"
	"github.com/vigil-safeguarding/vigil/collector/console"
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
	fmt.Fprintln(tw, "ID\tNAME\tADDED")
	for _, sc := range all {
		added := "-"
		if !sc.CreatedAt.IsZero() {
			added = sc.CreatedAt.Format("2006-01-02")
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\n", sc.ID, sc.Name, added)
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
