package reports

import (
	"encoding/csv"
	"fmt"
	"io"
	"sort"
	"strconv"
	"strings"
	"time"

	"google.golang.org/protobuf/encoding/protojson"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

// auditDevice is one device of a record with its answer decoded.
type auditDevice struct {
	audit.DeviceResult
	inv *vigilv1.Inventory // nil: no answer (or it did not decode)
	err string             // why the stored answer could not be read
}

func decodeDevices(rec audit.Record) []auditDevice {
	out := make([]auditDevice, 0, len(rec.Results))
	for _, r := range rec.Results {
		d := auditDevice{DeviceResult: r}
		if len(r.Inventory) > 0 {
			inv := &vigilv1.Inventory{}
			if err := (protojson.UnmarshalOptions{DiscardUnknown: true}).Unmarshal(r.Inventory, inv); err != nil {
				d.err = "stored answer does not decode: " + err.Error()
			} else {
				d.inv = inv
			}
		}
		out = append(out, d)
	}
	return out
}

func deviceName(d audit.DeviceInfo) string {
	if d.Hostname != "" {
		return d.Hostname
	}
	return d.DeviceID
}

func stamp(t time.Time) string {
	if t.IsZero() {
		return "-"
	}
	return t.UTC().Format("2006-01-02 15:04 UTC")
}

func gib(b uint64) string { return fmt.Sprintf("%.1f GiB", float64(b)/(1<<30)) }

// why says why a device has no answer, for the report.
func why(d auditDevice) string {
	switch {
	case d.NoAnswer != nil && d.NoAnswer.Detail != "":
		return d.NoAnswer.Reason + ": " + d.NoAnswer.Detail
	case d.NoAnswer != nil:
		return d.NoAnswer.Reason
	case d.Status == "queued":
		return "queued: not answered yet (offline devices are asked when they reconnect)"
	case d.err != "":
		return d.err
	}
	return ""
}

// AuditPDF renders an audit record as the report the headteacher keeps: who
// asked, scope, reason, the hash and whether it verifies, progress, a
// compliance chart by check, per device hardware, OS, agent health,
// compliance and software (or why there is no answer), the changes since the
// previous audit of the scope, and the sign-offs.
func AuditPDF(w io.Writer, rec audit.Record) error {
	devs := decodeDevices(rec)
	d := newDoc("Vigil device audit " + rec.ID)
	d.Title("Device audit " + rec.ID)
	d.Field("Scope", rec.Scope.String())
	d.Field("Requested by", rec.RequestedBy)
	d.Field("Reason", rec.Reason)
	d.Field("Requested at", stamp(rec.RequestedAt))
	d.Field("Expires at", stamp(rec.ExpiresAt))
	d.Field("Record hash", rec.Hash)
	if rec.Verified {
		d.Field("Verification", "verified: every entry hashes to its recorded value and the chain is complete")
	} else {
		d.Field("Verification", "DOES NOT VERIFY: "+rec.VerifyError)
	}
	p := rec.Progress
	d.Field("Progress", fmt.Sprintf("%d of %d answered, %d without an answer (%d not reached), %d queued (%d offline)",
		p.Answered, p.Total, p.NoAnswer, p.NotReached, p.Queued, p.Offline))

	d.Heading("Sign-off")
	if len(rec.Signoffs) == 0 {
		d.Para("Not signed off.")
	}
	for _, s := range rec.Signoffs {
		d.Para("Signed off by " + s.By + " at " + stamp(s.At) + " (entry " + short(s.Hash) + ")")
		if s.Note != "" {
			d.Field("Note", s.Note)
		}
	}

	// Compliance by check across the answering devices: a picture shows at
	// a glance which check fails where, which a table of devices does not.
	type counts struct{ pass, fail int }
	byCheck := map[string]*counts{}
	for _, dv := range devs {
		if dv.inv == nil {
			continue
		}
		for _, c := range dv.inv.GetCompliance() {
			name := c.GetCheck()
			if name == "" {
				name = c.GetRuleId()
			}
			k := byCheck[name]
			if k == nil {
				k = &counts{}
				byCheck[name] = k
			}
			if c.GetStatus() == "pass" {
				k.pass++
			} else {
				k.fail++
			}
		}
	}
	if len(byCheck) > 0 {
		d.Heading("Compliance by check")
		names := make([]string, 0, len(byCheck))
		for n := range byCheck {
			names = append(names, n)
		}
		sort.Strings(names)
		bars := make([]Bar, 0, len(names))
		for _, n := range names {
			bars = append(bars, Bar{Label: n, Parts: []float64{float64(byCheck[n].pass), float64(byCheck[n].fail)}})
		}
		d.BarChart(bars, []string{"pass", "fail"}, [][3]int{{70, 150, 90}, {200, 70, 60}})
	}

	d.Heading("Devices")
	rows := make([][]string, 0, len(devs))
	for _, dv := range devs {
		osName, sw := "-", "-"
		if dv.inv != nil {
			osName = strings.TrimSpace(dv.inv.GetOs().GetName() + " " + dv.inv.GetOs().GetVersion())
			sw = strconv.Itoa(len(dv.inv.GetSoftware()))
		}
		rows = append(rows, []string{deviceName(dv.DeviceInfo), dv.Group, dv.Status, osName, sw})
	}
	d.Table([]float64{0.28, 0.14, 0.14, 0.32, 0.12}, []string{"Device", "Group", "Status", "OS", "Software"}, rows)

	for _, dv := range devs {
		d.Heading(deviceName(dv.DeviceInfo) + " (" + dv.DeviceID + ")")
		if dv.inv == nil {
			d.Field("No answer", why(dv))
			continue
		}
		inv := dv.inv
		hw, o, ag := inv.GetHardware(), inv.GetOs(), inv.GetAgent()
		d.Field("Answered at", stamp(dv.AnsweredAt))
		d.Field("Hardware", strings.TrimSpace(fmt.Sprintf("%s %s, serial %s", hw.GetManufacturer(), hw.GetModel(), orDash(hw.GetSerial()))))
		d.Field("CPU, memory", fmt.Sprintf("%s (%d cores), %s", orDash(hw.GetCpuModel()), hw.GetCpuCores(), gib(hw.GetMemoryBytes())))
		for _, dk := range hw.GetDisks() {
			d.Field("Disk "+dk.GetMountpoint(), fmt.Sprintf("%s total, %s free (%s)", gib(dk.GetTotalBytes()), gib(dk.GetFreeBytes()), dk.GetFstype()))
		}
		for _, ni := range hw.GetInterfaces() {
			d.Field("Interface "+ni.GetName(), strings.TrimSpace(ni.GetMac()+" "+strings.Join(ni.GetAddresses(), ", ")))
		}
		d.Field("OS", fmt.Sprintf("%s %s build %s, kernel %s, %s", o.GetName(), o.GetVersion(), orDash(o.GetBuild()), orDash(o.GetKernel()), o.GetArch()))
		if o.GetLastBoot() != nil {
			d.Field("Last boot", stamp(o.GetLastBoot().AsTime()))
		}
		var admins []string
		for _, a := range inv.GetAccounts() {
			if a.GetAdministrator() {
				admins = append(admins, a.GetName())
			}
		}
		d.Field("Accounts", fmt.Sprintf("%d local; administrators: %s", len(inv.GetAccounts()), orDash(strings.Join(admins, ", "))))
		selftest := "never"
		if ag.GetLastSelftest() != nil {
			selftest = stamp(ag.GetLastSelftest().AsTime())
		}
		d.Field("Agent health", fmt.Sprintf("version %s, rules %s, spool %d findings, last selftest %s", orDash(ag.GetVersion()), short(ag.GetRulesHash()), ag.GetSpoolDepth(), selftest))
		for _, e := range inv.GetErrors() {
			d.Field("Not collected", e.GetPart()+": "+e.GetError())
		}
		if cs := inv.GetCompliance(); len(cs) > 0 {
			crow := make([][]string, 0, len(cs))
			for _, c := range cs {
				crow = append(crow, []string{c.GetCheck(), c.GetRuleId(), c.GetKey(), c.GetStatus()})
			}
			d.Table([]float64{0.25, 0.3, 0.3, 0.15}, []string{"Check", "Rule", "Subject", "Status"}, crow)
		}
		sw := inv.GetSoftware()
		srow := make([][]string, 0, len(sw))
		for _, s := range sw {
			srow = append(srow, []string{s.GetName(), s.GetVersion(), s.GetPublisher(), s.GetInstallDate()})
		}
		d.Table([]float64{0.35, 0.22, 0.3, 0.13}, []string{"Software", "Version", "Publisher", "Installed"}, srow)
		if n := inv.GetSoftwareOmitted(); n > 0 {
			d.Para(fmt.Sprintf("%d more packages installed, beyond the answer's cap.", n))
		}
	}

	d.Heading("Changes since the previous audit of this scope")
	if rec.Diff == nil {
		d.Para("No earlier audit of this scope.")
	} else {
		df := rec.Diff
		d.Para("Compared with " + df.Previous + " (" + df.PreviousAt + ").")
		if len(df.DevicesNew) > 0 {
			d.Field("New devices", strings.Join(df.DevicesNew, ", "))
		}
		if len(df.DevicesMissing) > 0 {
			d.Field("Missing devices", strings.Join(df.DevicesMissing, ", "))
		}
		for _, c := range df.Devices {
			for _, s := range c.SoftwareAdded {
				d.Field(c.DeviceID, "software added: "+s)
			}
			for _, s := range c.SoftwareRemoved {
				d.Field(c.DeviceID, "software removed: "+s)
			}
			for _, cc := range c.ComplianceChanges {
				d.Field(c.DeviceID, fmt.Sprintf("%s %s: %s -> %s", cc.RuleID, cc.Key, orDash(cc.Was), orDash(cc.Now)))
			}
		}
		if len(df.DevicesNew)+len(df.DevicesMissing)+len(df.Devices) == 0 {
			d.Para("No changes.")
		}
	}
	return d.Write(w)
}

func orDash(s string) string {
	if s == "" {
		return "-"
	}
	return s
}

func short(h string) string {
	if len(h) > 12 {
		return h[:12]
	}
	return h
}

// AuditCSV writes an audit record as CSV: one row per installed package
// per device (the form a spreadsheet reconciles against licences), and one
// row for a device with no answer saying why. The record's id, scope,
// reason and hash are on every row so a filtered sheet still says what it
// came from.
func AuditCSV(w io.Writer, rec audit.Record) error {
	cw := csv.NewWriter(w)
	head := []string{"audit", "scope", "reason", "record_hash", "verified", "device_id", "hostname", "group", "status",
		"os", "manufacturer", "model", "serial", "software", "version", "publisher", "install_date", "no_answer"}
	if err := cw.Write(head); err != nil {
		return fmt.Errorf("writing audit CSV: %w", err)
	}
	for _, dv := range decodeDevices(rec) {
		base := []string{rec.ID, rec.Scope.String(), rec.Reason, rec.Hash, strconv.FormatBool(rec.Verified),
			dv.DeviceID, dv.Hostname, dv.Group, dv.Status}
		if dv.inv == nil {
			if err := cw.Write(defuse(append(base, "", "", "", "", "", "", "", "", why(dv)))); err != nil {
				return fmt.Errorf("writing audit CSV: %w", err)
			}
			continue
		}
		o, hw := dv.inv.GetOs(), dv.inv.GetHardware()
		base = append(base, strings.TrimSpace(o.GetName()+" "+o.GetVersion()), hw.GetManufacturer(), hw.GetModel(), hw.GetSerial())
		sw := dv.inv.GetSoftware()
		if len(sw) == 0 {
			if err := cw.Write(defuse(append(base, "", "", "", "", ""))); err != nil {
				return fmt.Errorf("writing audit CSV: %w", err)
			}
		}
		for _, s := range sw {
			row := append(append([]string{}, base...), s.GetName(), s.GetVersion(), s.GetPublisher(), s.GetInstallDate(), "")
			if err := cw.Write(defuse(row)); err != nil {
				return fmt.Errorf("writing audit CSV: %w", err)
			}
		}
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("writing audit CSV: %w", err)
	}
	return nil
}

// defuse stops a spreadsheet running a cell as a formula: software names
// and reasons come from devices and people.
func defuse(row []string) []string {
	for i, c := range row {
		if c != "" && strings.ContainsRune("=+-@\t\r", rune(c[0])) {
			row[i] = "'" + c
		}
	}
	return row
}
