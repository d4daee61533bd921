package runrecord

import (
	"os"
	"path/filepath"
	"testing"
	"time"

	vigilv1 "github.com/vigil-safeguarding/vigil/proto/vigil/v1"
)

func TestRunRecord(t *testing.T) {
	path := filepath.Join(t.TempDir(), "run.json")
	t0 := time.Date(2026, 12, 2, 9, 0, 0, 0, time.UTC)
	lc, err := Begin(path, t0)
	if err != nil || lc.PreviousExit != vigilv1.ExitKind_EXIT_KIND_FIRST_START || lc.StartsInWindow != 1 {
		t.Fatalf("first start: %v %v", lc, err)
	}
	if err := End(path); err != nil {
		t.Fatal(err)
	}
	lc, _ = Begin(path, t0.Add(time.Minute))
	if lc.PreviousExit != vigilv1.ExitKind_EXIT_KIND_CLEAN || lc.StartsInWindow != 2 || lc.UncleanStartsInWindow != 0 {
		t.Fatalf("after clean exit: %v", lc)
	}
	// Killed twice: never reached End.
	Begin(path, t0.Add(2*time.Minute))
	lc, _ = Begin(path, t0.Add(3*time.Minute))
	if lc.PreviousExit != vigilv1.ExitKind_EXIT_KIND_UNCLEAN || lc.StartsInWindow != 4 || lc.UncleanStartsInWindow != 2 {
		t.Fatalf("after two crashes: %v", lc)
	}
	// Starts older than the window are forgotten.
	End(path)
	lc, _ = Begin(path, t0.Add(3*time.Minute+Window))
	if lc.StartsInWindow != 1 || lc.UncleanStartsInWindow != 0 {
		t.Fatalf("after the window: %v", lc)
	}
	// A damaged record is an unclean exit, and is replaced.
	os.WriteFile(path, []byte("{not json"), 0o600)
	lc, err = Begin(path, t0.Add(2*Window))
	if err != nil || lc.PreviousExit != vigilv1.ExitKind_EXIT_KIND_UNCLEAN || lc.StartsInWindow != 1 {
		t.Fatalf("damaged record: %v %v", lc, err)
	}
}
