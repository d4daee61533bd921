package bluetooth

import (
	"context"
	"fmt"
	"os/exec"
	"time"
)

func readAdapters(ctx context.Context) (snapshot, error) {
	ctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, "/usr/sbin/system_profiler", "SPBluetoothDataType", "-json").Output()
	if err != nil {
		return snapshot{}, fmt.Errorf("system_profiler SPBluetoothDataType: %w", err)
	}
	return parseSystemProfiler(out)
}

// watchChanges: no event source without cgo (IOBluetooth); Run re-polls
// on the interval.
func watchChanges(ctx context.Context, notify func()) { <-ctx.Done() }
