package licences

import (
	"testing"
	"time"

	"github.com/vigil-safeguarding/vigil/collector/audit"
	"github.com/vigil-safeguarding/vigil/collector/store"
)

func TestNormalise(t *testing.T) {
	for _, c := range []struct{ in, want string }{
		{"Microsoft Office Professional Plus 2021 16.0.1", "microsoft office 2021"},
		{"Microsoft Office 2021", "microsoft office 2021"},
		{"Microsoft Office Standard 2019 - en-us", "microsoft office 2019"},
		{"Adobe Acrobat Reader DC (64-bit)", "adobe acrobat reader"},
		{"Adobe Acrobat Reader", "adobe acrobat reader"},
		{"Adobe Acrobat Pro DC", "adobe acrobat"},
		{"SMART Notebook® 22.1", "smart notebook"},
		{"Autodesk 3ds Max 2024", "autodesk 3ds max 2024"},
		{"Microsoft 365 Apps for enterprise - en-gb", "microsoft 365 apps"},
		{"Office365", "office365"},
		{"Mozilla Firefox (x64 en-GB) v121.0.1", "mozilla firefox"},
		{"Scratch 3", "scratch"},
		{"  Python   3.12.1 (64-bit) ", "python"},
		{"", ""},
	} {
		if got := Normalise(c.in); got != c.want {
			t.Errorf("Normalise(%q) = %q, want %q", c.in, got, c.want)
		}
	}
}

// TestPrefixRule: a licence's title that starts an install's counts it
// (most specific licence first), except for a product's free companion.
func TestPrefixRule(t *testing.T) {
	ls := []store.Licence{{ID: "acro", Product: "Adobe Acrobat", Seats: 5}, {ID: "zoom", Product: "Zoom", Seats: 5}, {ID: "ps", Product: "Adobe Photoshop", Seats: 1}}
	latest := map[string]audit.LatestAnswer{"d1": {DeviceID: "d1", Software: []audit.Software{
		{Name: "Adobe Acrobat Reader DC", Publisher: "Adobe", Source: "registry"},
		{Name: "Adobe Acrobat Pro DC 2024.001", Publisher: "Adobe", Source: "registry"},
		{Name: "Zoom Workplace (64-bit)", Publisher: "Zoom", Source: "registry"},
		{Name: "Adobe Photoshop 2024", Publisher: "Adobe", Source: "registry"},
	}}}
	rep := Reconcile(time.Now(), ls, nil, latest)
	got := map[string]string{}
	for _, m := range rep.Matches {
		got[m.Name] = m.Rule + ":" + m.LicenceID
	}
	for name, want := range map[string]string{
		"Adobe Acrobat Reader DC":       "none:",
		"Adobe Acrobat Pro DC 2024.001": "exact:acro",
		"Zoom Workplace (64-bit)":       "prefix:zoom",
		"Adobe Photoshop 2024":          "prefix:ps",
	} {
		if got[name] != want {
			t.Errorf("%s: %q, want %q", name, got[name], want)
		}
	}
}
