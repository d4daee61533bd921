package licences

import "testing"

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
