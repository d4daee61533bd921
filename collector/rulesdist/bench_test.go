package rulesdist

import (
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"testing"
)

// BenchmarkRefreshSchools: what one refresh of the bundles costs (every
// school's every group composed, validated and hashed, as after an
// approval or a term) for a trust of 1, 10 and 50 schools, each with its
// own generated file. Report the 10- and 50-school figures as ratios of
// the 1-school one (docs/benchmarks.md).
func BenchmarkRefreshSchools(b *testing.B) {
	for _, n := range []int{1, 10, 50} {
		b.Run(fmt.Sprintf("schools=%d", n), func(b *testing.B) {
			schools := make([]string, n)
			for i := range schools {
				schools[i] = fmt.Sprintf("school-%02d", i)
			}
			schools[0] = "default"
			d, err := New(filepath.Join(b.TempDir(), "rules"), slog.New(slog.NewTextHandler(io.Discard, nil)),
				WithSchools(func() ([]string, error) { return schools, nil }, ""))
			if err != nil {
				b.Fatal(err)
			}
			gen := 0
			d.SetExtra(func(school, _ string) map[string][]byte {
				// A different term each refresh, so every bundle is rebuilt.
				return map[string][]byte{"keywords/school-bullying.txt": []byte(fmt.Sprintf(
					"#! rule: keywords-school-bullying\n#! category: bullying\n#! severity: medium\n#! name: t\n%s nick%d ; severity=high # r\n", school, gen))}
			})
			b.ResetTimer()
			for i := 0; i < b.N; i++ {
				gen++
				if !d.Refresh() {
					b.Fatal("no bundle changed")
				}
			}
			b.ReportMetric(float64(b.Elapsed().Microseconds())/float64(b.N)/float64(n), "µs/school")
		})
	}
}

// BenchmarkRefreshUnchanged: the once-a-minute refresh when nothing
// changed, for 50 schools, against BenchmarkRefreshSchools/schools=50.
func BenchmarkRefreshUnchanged(b *testing.B) {
	schools := make([]string, 50)
	for i := range schools {
		schools[i] = fmt.Sprintf("school-%02d", i)
	}
	d, err := New(filepath.Join(b.TempDir(), "rules"), slog.New(slog.NewTextHandler(io.Discard, nil)),
		WithSchools(func() ([]string, error) { return schools, nil }, ""))
	if err != nil {
		b.Fatal(err)
	}
	d.SetExtra(func(school, _ string) map[string][]byte {
		return map[string][]byte{"keywords/school-bullying.txt": []byte("#! rule: keywords-school-bullying\n#! category: bullying\n#! severity: medium\n#! name: t\n" + school + " nick ; severity=high # r\n")}
	})
	d.Refresh()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if d.Refresh() {
			b.Fatal("a bundle changed")
		}
	}
}
