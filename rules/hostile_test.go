package rules

import (
	"fmt"
	"gopkg.in/yaml.v3"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"
)

const billionLaughs = `apiVersion: vigil/v1
id: lol
name: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]
rationale: &b [*a,*a,*a,*a,*a,*a,*a,*a,*a]
severity: &c [*b,*b,*b,*b,*b,*b,*b,*b,*b]
category: &d [*c,*c,*c,*c,*c,*c,*c,*c,*c]
check: &e [*d,*d,*d,*d,*d,*d,*d,*d,*d]
params: &f [*e,*e,*e,*e,*e,*e,*e,*e,*e]
scope: &g [*f,*f,*f,*f,*f,*f,*f,*f,*f]
schedule: &h [*g,*g,*g,*g,*g,*g,*g,*g,*g]
enabled: &i [*h,*h,*h,*h,*h,*h,*h,*h,*h]
`

// panicKinds panics if ever consulted: hostile documents must be rejected
// before kinds see them.
type panicKinds struct{ t *testing.T }

func (k panicKinds) Known(string) bool { k.t.Error("Known called"); return true }
func (k panicKinds) ValidateParams(string, *yaml.Node) error {
	k.t.Error("ValidateParams called")
	return nil
}

func TestHostile(t *testing.T) {
	tests := []struct {
		name  string
		data  string
		first string // exact first error
	}{
		{"billion laughs", billionLaughs, "h.yaml:3:7: YAML anchors are not allowed in rule files (&a)"},
		{"10k deep flow", strings.Repeat("[", 10000) + strings.Repeat("]", 10000), "h.yaml:1:33: nesting deeper than 32 levels"},
		{"10k deep unclosed", strings.Repeat("[", 10000), "h.yaml:1:33: nesting deeper than 32 levels"},
		{"1M deep flow", strings.Repeat("[", MaxFileSize), "h.yaml:1:33: nesting deeper than 32 levels"},
		{"1M deep maps", "x: " + strings.Repeat("{", MaxFileSize-3), "h.yaml:1:36: nesting deeper than 32 levels"},
		{"1M deep block", strings.Repeat("- ", MaxFileSize/2), "h.yaml:1:65: nesting deeper than 32 levels"},
		{"33 deep block", "a:\n" + deepBlock(33), "h.yaml:33:65: nesting deeper than 32 levels"},
		{"2 MiB", strings.Repeat("# x\n", 2<<20/4), fmt.Sprintf("h.yaml:1:1: file is 2097152 bytes; the limit is %d", MaxFileSize)},
		{"invalid utf-8 mid-file", ruleYAML("x")[:40] + "\xc3\x28" + ruleYAML("x")[40:], "h.yaml:4:6: invalid UTF-8 (byte 0xC3)"},
		{"NUL", "id: a\x00b\n", "h.yaml:1:6: control character U+0000 is not allowed"},
		{"utf-16", "\xff\xfei\x00d\x00", "h.yaml:1:1: invalid UTF-8 (byte 0xFF)"},
		{"deep and broken", "a: " + strings.Repeat("{", 40) + "\n- x", "h.yaml:1:36: nesting deeper than 32 levels"},
		{"brackets in quotes are not nesting", "a: '" + strings.Repeat("[", 40) + "\n- x", "h.yaml:2:1: invalid YAML: found unexpected end of stream"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			start := time.Now()
			rules, errs := ParseFile("h.yaml", []byte(tc.data), panicKinds{t})
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("took %v", d)
			}
			if rules != nil || len(errs) == 0 {
				t.Fatalf("want error, got rules=%v", rules)
			}
			if errs[0].Error() != tc.first {
				t.Errorf("first error %q, want %q", errs[0].Error(), tc.first)
			}
		})
	}
}

// deepBlock returns n nested block mappings (indent 2 per level).
func deepBlock(n int) string {
	var b strings.Builder
	for i := 1; i <= n; i++ {
		b.WriteString(strings.Repeat("  ", i) + "k:\n")
	}
	return b.String()
}

func TestHostileErrorCap(t *testing.T) {
	var b strings.Builder
	b.WriteString(ruleYAML("x"))
	for i := 0; b.Len() < MaxFileSize-100; i++ {
		b.WriteString("u")
		b.WriteString(strings.Repeat("x", i%7))
		b.WriteString(itoa(i))
		b.WriteString(": 1\n")
	}
	_, errs := ParseFile("h.yaml", []byte(b.String()), testKinds)
	if len(errs) != maxErrorsPerFile+1 || errs[len(errs)-1].Msg != "too many errors; stopping" {
		t.Errorf("%d errors, last %v", len(errs), errs[len(errs)-1])
	}
}

func itoa(i int) string { return strconv.Itoa(i) }

// TestHostileMemory checks a wide document of MaxFileSize stays within a sane
// allocation budget.
func TestHostileMemory(t *testing.T) {
	if testing.Short() {
		t.Skip()
	}
	data := []byte("params: [" + strings.Repeat("1,", (MaxFileSize-20)/2) + "1]\n")
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	start := time.Now()
	_, errs := ParseFile("h.yaml", data, testKinds)
	d := time.Since(start)
	runtime.ReadMemStats(&after)
	if errs == nil {
		t.Fatal("want errors")
	}
	alloc := after.TotalAlloc - before.TotalAlloc
	t.Logf("wide list at MaxFileSize: %v, %d MiB allocated", d, alloc>>20)
	if alloc > 512<<20 {
		t.Errorf("allocated %d MiB", alloc>>20)
	}
}
