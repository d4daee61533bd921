package inventory

import (
	"errors"
	"strings"
	"testing"
)

// TestDisposalRecordRules: the record seed 000 §4.13 asks for is complete
// before a device is disposed of.
func TestDisposalRecordRules(t *testing.T) {
	ok := DisposeRequest{AuthorisedBy: "head", PersonalData: "pupil work", Wiped: "overwritten 3 passes", Method: "WEEE recycler"}
	for _, c := range []struct {
		name string
		edit func(*DisposeRequest)
		want string
	}{
		{"complete", func(*DisposeRequest) {}, ""},
		{"no storage data", func(r *DisposeRequest) { r.PersonalData, r.Wiped = "none", "" }, ""},
		{"not authorised", func(r *DisposeRequest) { r.AuthorisedBy = " " }, "authorised by"},
		{"no method", func(r *DisposeRequest) { r.Method = "" }, "method"},
		{"personal data unsaid", func(r *DisposeRequest) { r.PersonalData = "" }, "personal data"},
		{"not wiped", func(r *DisposeRequest) { r.Wiped = "" }, "wiped"},
		{"sold without PAT", func(r *DisposeRequest) { r.Method = "sale to staff" }, "PAT"},
		{"gift with PAT", func(r *DisposeRequest) { r.Method, r.PATCertificate = "gift to charity", "PAT-9" }, ""},
	} {
		r := ok
		c.edit(&r)
		err := r.check()
		if c.want == "" && err != nil || c.want != "" && (err == nil || !errors.Is(err, ErrBadRequest) || !strings.Contains(err.Error(), c.want)) {
			t.Errorf("%s: %v, want %q", c.name, err, c.want)
		}
	}
}
