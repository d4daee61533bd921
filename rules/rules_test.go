package rules

import (
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"gopkg.in/yaml.v3"
)

// testKinds knows "selftest" (no params), "dns" (params validated with
// positions) and "plain" (params validated with a plain error).
var testKinds = KindMap{
	"selftest": NoParams,
	"dns": func(p *yaml.Node) error {
		if p == nil {
			return errors.New("needs params")
		}
		var errs Errors
		for i := 0; i+1 < len(p.Content); i += 2 {
			k, v := p.Content[i], p.Content[i+1]
			switch k.Value {
			case "domains":
				if v.Kind != yaml.SequenceNode {
					errs = append(errs, Error{Pos: Pos{Line: v.Line, Col: v.Column}, Msg: "domains must be a list"})
				}
			default:
				errs = append(errs, Error{Pos: Pos{Line: k.Line, Col: k.Column}, Msg: fmt.Sprintf("unknown param %q", k.Value)})
			}
		}
		return errs // typed, possibly empty: must count as no error
	},
	"plain": func(p *yaml.Node) error {
		if p == nil || len(p.Content) == 0 {
			return errors.New("threshold is required")
		}
		return nil
	},
	"panics": func(p *yaml.Node) error { panic("boom") },
}

const header = "apiVersion: vigil/v1\nid: r1\nname: N\nrationale: R\nseverity: low\ncategory: c\n"

func TestParseValid(t *testing.T) {
	src := `# comment
apiVersion: vigil/v1
id: web.filter-1
version: 3
name: Web filter reachable
rationale: Filtering must be on.
severity: high
category: filtering
check: dns
enabled: false
scope:
  groups: [pupils, "Year 7"]
  roles: [pupil, guest]
schedule:
  interval: 90m
  windows:
    - days: [mon, fri]
      from: "08:00"
      to: "16:30"
    - from: "22:00"
      to: "06:00"
params:
  domains: [example.org]
---
---
apiVersion: vigil/v1
id: second
name: 2024
rationale: yes
severity: critical
category: x
check: selftest
params:
`
	rules, errs := ParseFile("f.yaml", []byte(src), testKinds)
	if errs != nil {
		t.Fatalf("unexpected errors:\n%v", errs)
	}
	if len(rules) != 2 {
		t.Fatalf("got %d rules, want 2", len(rules))
	}
	r := rules[0]
	if r.ID != "web.filter-1" || r.Version != 3 || r.Name != "Web filter reachable" || r.Rationale != "Filtering must be on." ||
		r.Severity != High || r.Category != "filtering" || r.Check != "dns" || r.Enabled {
		t.Errorf("bad fields: %+v", r)
	}
	if r.Pos != (Pos{"f.yaml", 2, 1}) {
		t.Errorf("Pos = %v", r.Pos)
	}
	if strings.Join(r.Scope.Groups, ",") != "pupils,Year 7" || strings.Join(r.Scope.Roles, ",") != "pupil,guest" {
		t.Errorf("scope = %+v", r.Scope)
	}
	if r.Schedule.Interval != 90*time.Minute || len(r.Schedule.Windows) != 2 {
		t.Fatalf("schedule = %+v", r.Schedule)
	}
	w0 := Window{From: 8 * 60, To: 16*60 + 30}
	w0.Days[time.Monday], w0.Days[time.Friday] = true, true
	if r.Schedule.Windows[0] != w0 {
		t.Errorf("window 0 = %+v, want %+v", r.Schedule.Windows[0], w0)
	}
	w1 := Window{Days: [7]bool{true, true, true, true, true, true, true}, From: 22 * 60, To: 6 * 60}
	if r.Schedule.Windows[1] != w1 {
		t.Errorf("window 1 = %+v, want %+v", r.Schedule.Windows[1], w1)
	}
	if r.Params == nil || r.Params.Kind != yaml.MappingNode || r.Params.Line != 23 || r.Params.Content[0].Value != "domains" {
		t.Errorf("params = %+v", r.Params)
	}
	s := rules[1]
	if s.ID != "second" || s.Version != 1 || !s.Enabled || s.Name != "2024" || s.Rationale != "yes" || s.Severity != Critical || s.Params != nil {
		t.Errorf("defaults: %+v", s)
	}
	if s.Pos != (Pos{"f.yaml", 26, 1}) {
		t.Errorf("second Pos = %v", s.Pos)
	}
}

func TestParseEmpty(t *testing.T) {
	for _, src := range []string{"", "# only a comment\n", "---\n", "---\n...\n---\n"} {
		rules, errs := ParseFile("e.yaml", []byte(src), testKinds)
		if errs != nil || len(rules) != 0 {
			t.Errorf("%q: rules=%v errs=%v", src, rules, errs)
		}
	}
}

func TestParseErrors(t *testing.T) {
	tests := []struct {
		name string
		src  string
		want []string // exact error lines
	}{
		{"not a mapping", "- a\n- b\n", []string{"f.yaml:1:1: rule must be a mapping, not a list"}},
		{"missing keys", "apiVersion: vigil/v1\nid: x\n", []string{
			`f.yaml:1:1: missing required key "name"`, `f.yaml:1:1: missing required key "rationale"`,
			`f.yaml:1:1: missing required key "severity"`, `f.yaml:1:1: missing required key "category"`,
			`f.yaml:1:1: missing required key "check"`}},
		{"bad apiVersion", "apiVersion: vigil/v2\nid: x\nname: N\nrationale: R\nseverity: low\ncategory: c\ncheck: selftest\n",
			[]string{`f.yaml:1:13: unsupported apiVersion "vigil/v2" (want "vigil/v1")`}},
		{"unknown key", header + "check: selftest\nsevrity: low\n", []string{`f.yaml:8:1: unknown key "sevrity" in rule`}},
		{"non-string key", header + "check: selftest\n1: x\n", []string{`f.yaml:8:1: keys in rule must be strings, not an integer`}},
		{"id type", strings.Replace(header, "id: r1", "id: 123", 1) + "check: selftest\n", []string{`f.yaml:2:5: id must be a string, not an integer`}},
		{"id pattern", strings.Replace(header, "id: r1", "id: Bad_ID", 1) + "check: selftest\n", []string{`f.yaml:2:5: invalid id "Bad_ID": must match [a-z0-9][a-z0-9._-]{0,63}`}},
		{"id too long", strings.Replace(header, "id: r1", "id: "+strings.Repeat("a", 65), 1) + "check: selftest\n", []string{`f.yaml:2:5: invalid id "` + strings.Repeat("a", 64) + `"...: must match [a-z0-9][a-z0-9._-]{0,63}`}},
		{"version type", header + "check: selftest\nversion: \"2\"\n", []string{`f.yaml:8:10: version must be a positive integer`}},
		{"version zero", header + "check: selftest\nversion: 0\n", []string{`f.yaml:8:10: version must be a positive integer`}},
		{"version float", header + "check: selftest\nversion: 1.5\n", []string{`f.yaml:8:10: version must be a positive integer`}},
		{"version huge", header + "check: selftest\nversion: 99999999999999999999\n", []string{`f.yaml:8:10: version must be a positive integer`}},
		{"empty name", strings.Replace(header, "name: N", "name: \"  \"", 1) + "check: selftest\n", []string{`f.yaml:3:7: name must not be empty`}},
		{"null rationale", strings.Replace(header, "rationale: R", "rationale:", 1) + "check: selftest\n", []string{`f.yaml:4:11: rationale must be text, not null`}},
		{"name mapping", strings.Replace(header, "name: N", "name: {a: b}", 1) + "check: selftest\n", []string{`f.yaml:3:7: name must be text, not a mapping`}},
		{"severity", strings.Replace(header, "severity: low", "severity: urgent", 1) + "check: selftest\n", []string{`f.yaml:5:11: unknown severity "urgent" (want info, low, medium, high or critical)`}},
		{"category", strings.Replace(header, "category: c", "category: Web Filter", 1) + "check: selftest\n", []string{`f.yaml:6:11: invalid category "Web Filter": must match [a-z0-9_-]{1,64}`}},
		{"unknown kind", header + "check: nope\n", []string{`f.yaml:7:8: unknown check kind "nope"`}},
		{"check type", header + "check: [a]\n", []string{`f.yaml:7:8: check must be a string, not a list`}},
		{"enabled type", header + "check: selftest\nenabled: yes\n", []string{`f.yaml:8:10: enabled must be true or false, not a string`}},
		{"scope type", header + "check: selftest\nscope: [a]\n", []string{`f.yaml:8:8: scope must be a mapping, not a list`}},
		{"scope unknown key", header + "check: selftest\nscope:\n  group: [a]\n", []string{`f.yaml:9:3: unknown key "group" in scope`}},
		{"groups not list", header + "check: selftest\nscope:\n  groups: pupils\n", []string{`f.yaml:9:11: groups must be a list, not a string`}},
		{"group entry type", header + "check: selftest\nscope:\n  groups: [a, 7]\n", []string{`f.yaml:9:15: groups entries must be strings, not an integer`}},
		{"group empty", header + "check: selftest\nscope:\n  groups: [\"\"]\n", []string{`f.yaml:9:12: invalid group "": must be 1-64 characters without leading or trailing spaces`}},
		{"role", header + "check: selftest\nscope:\n  roles: [pupil, parent]\n", []string{`f.yaml:9:18: unknown role "parent" (want pupil, staff, headteacher or guest)`}},
		{"role dup", header + "check: selftest\nscope:\n  roles: [staff, staff]\n", []string{`f.yaml:9:18: duplicate roles entry "staff"`}},
		{"schedule type", header + "check: selftest\nschedule: daily\n", []string{`f.yaml:8:11: schedule must be a mapping, not a string`}},
		{"schedule unknown key", header + "check: selftest\nschedule:\n  every: 1h\n", []string{`f.yaml:9:3: unknown key "every" in schedule`}},
		{"interval syntax", header + "check: selftest\nschedule:\n  interval: 1 day\n", []string{`f.yaml:9:13: invalid interval "1 day": want a duration such as 30m or 24h`}},
		{"interval type", header + "check: selftest\nschedule:\n  interval: 60\n", []string{`f.yaml:9:13: interval must be a string, not an integer`}},
		{"interval small", header + "check: selftest\nschedule:\n  interval: 500ms\n", []string{`f.yaml:9:13: interval "500ms" out of range: must be between 1s and 720h (30 days)`}},
		{"interval large", header + "check: selftest\nschedule:\n  interval: 721h\n", []string{`f.yaml:9:13: interval "721h" out of range: must be between 1s and 720h (30 days)`}},
		{"windows type", header + "check: selftest\nschedule:\n  windows: {from: \"08:00\"}\n", []string{`f.yaml:9:12: windows must be a list, not a mapping`}},
		{"windows empty", header + "check: selftest\nschedule:\n  windows: []\n", []string{`f.yaml:9:12: windows must not be empty (omit it to make the rule always active)`}},
		{"window unknown key", header + "check: selftest\nschedule:\n  windows:\n    - from: \"08:00\"\n      to: \"09:00\"\n      tz: UTC\n", []string{`f.yaml:12:7: unknown key "tz" in window`}},
		{"window missing to", header + "check: selftest\nschedule:\n  windows:\n    - from: \"08:00\"\n", []string{`f.yaml:10:7: missing required key "to" in window`}},
		{"window day", header + "check: selftest\nschedule:\n  windows:\n    - days: [mon, monday]\n      from: \"08:00\"\n      to: \"09:00\"\n", []string{`f.yaml:10:19: unknown day "monday" (want mon, tue, wed, thu, fri, sat or sun)`}},
		{"window days empty", header + "check: selftest\nschedule:\n  windows:\n    - days: []\n      from: \"08:00\"\n      to: \"09:00\"\n", []string{`f.yaml:10:13: days must not be empty (omit it for every day)`}},
		{"window time", header + "check: selftest\nschedule:\n  windows:\n    - from: \"8am\"\n      to: \"24:01\"\n", []string{`f.yaml:10:13: invalid time "8am": want HH:MM (24-hour, quoted)`, `f.yaml:11:11: invalid time "24:01": want HH:MM (24-hour, quoted)`}},
		{"window from from", header + "check: selftest\nschedule:\n  windows:\n    - from: \"24:00\"\n      to: \"01:00\"\n", []string{`f.yaml:10:13: invalid time "24:00": want HH:MM (24-hour, quoted)`}},
		{"window equal", header + "check: selftest\nschedule:\n  windows:\n    - from: \"08:00\"\n      to: \"08:00\"\n", []string{`f.yaml:11:11: window from and to must differ`}},
		{"window not mapping", header + "check: selftest\nschedule:\n  windows: [\"08:00-09:00\"]\n", []string{`f.yaml:9:13: window must be a mapping, not a string`}},
		{"params type", header + "check: selftest\nparams: [1]\n", []string{`f.yaml:8:9: params must be a mapping, not a list`}},
		{"params NoParams", header + "check: selftest\nparams:\n  x: 1\n", []string{`f.yaml:9:3: unknown parameter "x" (this check takes no parameters)`}},
		{"params positioned", header + "check: dns\nparams:\n  domains: example.org\n  bogus: 1\n", []string{`f.yaml:9:12: domains must be a list`, `f.yaml:10:3: unknown param "bogus"`}},
		{"params plain error", header + "check: plain\nparams: {}\n", []string{`f.yaml:8:1: invalid params: threshold is required`}},
		{"params plain error absent", header + "check: plain\n", []string{`f.yaml:7:8: invalid params: threshold is required`}},
		{"params kinds panic", header + "check: panics\n", []string{`f.yaml:7:8: invalid params: internal error in check "panics": "boom"`}},
		{"duplicate key", header + "check: selftest\nname: again\n", []string{`f.yaml:8:1: duplicate key "name" (first at line 3)`}},
		{"duplicate key in params", header + "check: dns\nparams: {domains: [], domains: []}\n", []string{`f.yaml:8:23: duplicate key "domains" (first at line 8)`}},
		{"anchor", header + "check: selftest\nparams: &p {}\n", []string{`f.yaml:8:9: YAML anchors are not allowed in rule files (&p)`}},
		{"alias", header + "check: &k selftest\nscope:\n  groups: [*k]\n", []string{`f.yaml:7:8: YAML anchors are not allowed in rule files (&k)`, `f.yaml:9:12: YAML aliases are not allowed in rule files (*k)`}},
		{"merge key", header + "check: selftest\nparams:\n  <<: {a: 1}\n", []string{`f.yaml:9:3: merge keys (<<) are not allowed in rule files`}},
		{"duplicate id in file", header + "check: selftest\n---\n" + header + "check: selftest\n", []string{`f.yaml:10:5: duplicate id "r1" (first defined at f.yaml:2)`}},
		{"yaml syntax", header + "check: selftest\nscope: [a, b\n", []string{`f.yaml:8:1: invalid YAML: did not find expected ',' or ']'`}},
		{"yaml parser error line", "a: b\n- c\n", []string{`f.yaml:2:1: invalid YAML: did not find expected key`}},
		{"yaml parser error line 1", "[a, b\n", []string{`f.yaml:2:1: invalid YAML: did not find expected ',' or ']'`}},
		{"yaml scanner error", "a: b\nc: d: e\n", []string{`f.yaml:2:1: invalid YAML: mapping values are not allowed in this context`}},
		{"yaml tab", header + "check: selftest\n\tx: 1\n", []string{`f.yaml:7:1: invalid YAML: found a tab character that violates indentation`}},
		{"control char", header + "check: self\x01test\n", []string{`f.yaml:7:12: control character U+0001 is not allowed`}},
		{"invalid utf8", header + "check: séle\xfftest\n", []string{`f.yaml:7:12: invalid UTF-8 (byte 0xFF)`}},
		{"error in second document only", header + "check: selftest\n---\napiVersion: vigil/v1\nbad: 1\n", []string{
			`f.yaml:10:1: unknown key "bad" in rule`, `f.yaml:9:1: missing required key "id"`, `f.yaml:9:1: missing required key "name"`,
			`f.yaml:9:1: missing required key "rationale"`, `f.yaml:9:1: missing required key "severity"`,
			`f.yaml:9:1: missing required key "category"`, `f.yaml:9:1: missing required key "check"`}},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			rules, errs := ParseFile("f.yaml", []byte(tc.src), testKinds)
			if rules != nil {
				t.Errorf("rules = %v, want nil on error", rules)
			}
			got := strings.Split(errs.Error(), "\n")
			if errs == nil {
				got = nil
			}
			if strings.Join(got, "\n") != strings.Join(tc.want, "\n") {
				t.Errorf("errors:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(tc.want, "\n"))
			}
			for _, e := range errs {
				if e.File != "f.yaml" || e.Line < 1 || e.Col < 1 {
					t.Errorf("bad position %+v", e.Pos)
				}
			}
		})
	}
}

func TestNilKinds(t *testing.T) {
	rules, errs := ParseFile("f.yaml", []byte(header+"check: anything\nparams: {x: 1}\n"), nil)
	if errs != nil || len(rules) != 1 || rules[0].Check != "anything" {
		t.Fatalf("rules=%v errs=%v", rules, errs)
	}
}

func TestSeverity(t *testing.T) {
	for i, name := range []string{"info", "low", "medium", "high", "critical"} {
		s, ok := ParseSeverity(name)
		if !ok || s != Severity(i+1) || s.String() != name {
			t.Errorf("%s: %v %v %q", name, s, ok, s.String())
		}
	}
	for _, bad := range []string{"", "Info", "unspecified", "severe"} {
		if _, ok := ParseSeverity(bad); ok {
			t.Errorf("ParseSeverity(%q) ok", bad)
		}
	}
	if Severity(0).String() != "unspecified" || Severity(9).String() != "Severity(9)" {
		t.Error("String of out-of-range severities")
	}
	if !(Info < Low && Low < Medium && Medium < High && High < Critical) {
		t.Error("severities not ordered")
	}
}

func TestErrorFormat(t *testing.T) {
	es := Errors{{Pos{"a.yaml", 3, 5}, "bad"}, {Pos{"dir", 0, 0}, "whole dir"}}
	if got := es.Error(); got != "a.yaml:3:5: bad\ndir: whole dir" {
		t.Errorf("got %q", got)
	}
	var none Errors
	if none.Err() != nil || es.Err() == nil {
		t.Error("Err()")
	}
	var e error = &es[0]
	if e.Error() != "a.yaml:3:5: bad" {
		t.Errorf("*Error: %q", e.Error())
	}
}

func date(wd time.Weekday, hh, mm int, loc *time.Location) time.Time {
	// 2024-01-07 is a Sunday.
	return time.Date(2024, 1, 7+int(wd), hh, mm, 0, 0, loc)
}

func TestActiveAt(t *testing.T) {
	src := header + `check: selftest
schedule:
  windows:
    - days: [mon, tue, wed, thu, fri]
      from: "08:00"
      to: "16:00"
    - days: [fri]
      from: "22:00"
      to: "06:00"
    - days: [sun]
      from: "20:00"
      to: "24:00"
`
	rules, errs := ParseFile("f.yaml", []byte(src), testKinds)
	if errs != nil {
		t.Fatal(errs)
	}
	r := rules[0]
	utc := time.UTC
	tests := []struct {
		t    time.Time
		want bool
	}{
		{date(time.Monday, 7, 59, utc), false},
		{date(time.Monday, 8, 0, utc), true},
		{date(time.Wednesday, 15, 59, utc), true},
		{date(time.Wednesday, 16, 0, utc), false},
		{date(time.Saturday, 10, 0, utc), false},
		{date(time.Friday, 21, 59, utc), false},
		{date(time.Friday, 22, 0, utc), true},
		{date(time.Friday, 23, 59, utc), true},
		{date(time.Saturday, 0, 0, utc), true}, // overnight part belongs to Friday
		{date(time.Saturday, 5, 59, utc), true},
		{date(time.Saturday, 6, 0, utc), false},
		{date(time.Thursday, 23, 0, utc), false}, // no Thursday overnight window
		{date(time.Friday, 3, 0, utc), false},    // would be Thursday's night
		{date(time.Saturday, 22, 30, utc), false},
		{date(time.Sunday, 23, 59, utc), true},
		{date(time.Sunday, 19, 59, utc), false},
		{date(time.Monday, 0, 0, utc), false},
	}
	for _, tc := range tests {
		if got := r.ActiveAt(tc.t); got != tc.want {
			t.Errorf("ActiveAt(%s) = %v, want %v", tc.t.Format("Mon 15:04"), got, tc.want)
		}
	}
	// Windows are evaluated in t's location: 09:00 Monday in UTC+10 is
	// 23:00 Sunday UTC.
	east := time.FixedZone("E", 10*3600)
	tm := date(time.Monday, 9, 0, east)
	if !r.ActiveAt(tm) || !r.ActiveAt(tm.UTC()) {
		t.Error("location handling")
	}
	if r.ActiveAt(date(time.Monday, 17, 0, east)) || !r.ActiveAt(date(time.Monday, 17, 0, east).UTC()) == false {
		// Monday 17:00 (E) is inactive; in UTC it is Monday 07:00, also inactive.
		t.Error("location handling 2")
	}
	always := Rule{}
	if !always.ActiveAt(time.Now()) {
		t.Error("rule without windows must always be active")
	}
	never := Rule{Schedule: Schedule{Windows: []Window{{From: 0, To: 1440}}}}
	if never.ActiveAt(time.Now()) {
		t.Error("window without days must never be active")
	}
}

func TestApplies(t *testing.T) {
	r := Rule{}
	if !r.Applies("any", "guest") || !r.Applies("", "") {
		t.Error("empty scope must match everything")
	}
	r.Scope = Scope{Groups: []string{"pupils", "lab"}}
	if !r.Applies("lab", "staff") || r.Applies("staff-laptops", "staff") {
		t.Error("groups")
	}
	r.Scope.Roles = []string{"pupil"}
	if !r.Applies("pupils", "pupil") || r.Applies("pupils", "staff") || r.Applies("other", "pupil") {
		t.Error("groups and roles")
	}
	r.Scope.Groups = nil
	if !r.Applies("whatever", "pupil") || r.Applies("whatever", "headteacher") {
		t.Error("roles only")
	}
}
