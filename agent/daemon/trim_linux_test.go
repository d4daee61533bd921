package daemon

import (
	"log/slog"
	"os"
	"strconv"
	"strings"
	"testing"
)

func rssFileKB(t *testing.T) int {
	t.Helper()
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		t.Fatal(err)
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "RssFile:"); ok {
			n, _ := strconv.Atoi(strings.TrimSuffix(strings.TrimSpace(v), " kB"))
			return n
		}
	}
	t.Fatal("no RssFile")
	return 0
}

// TestTrimMemoryUnmapsImagePages: after trimMemory the process's
// file-backed RSS (its own image, mapped 64 KiB around every start-up
// fault) has dropped, and the process runs on (the pages fault back).
func TestTrimMemoryUnmapsImagePages(t *testing.T) {
	before := rssFileKB(t)
	trimMemory(slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelDebug})))
	after := rssFileKB(t)
	t.Logf("RssFile %d kB -> %d kB", before, after)
	if after >= before || before-after < 1024 {
		t.Errorf("RssFile %d kB -> %d kB: image pages not released", before, after)
	}
	// Still running: code and read-only data fault back in.
	if s := strings.Repeat("x", 3); s != "xxx" {
		t.Fatal("unreachable")
	}
}
