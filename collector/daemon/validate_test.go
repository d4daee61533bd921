package daemon

import (
	"context"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeValidatesBeforeOpening: a mistyped flag is refused before the
// data dir, CA or store are created, with the flag named.
func TestServeValidatesBeforeOpening(t *testing.T) {
	for _, tc := range []struct {
		name string
		cfg  Config
		want string
	}{
		{"severity", Config{NotifySeverity: "urgent"}, "--notify-severity"},
		{"on-call without hours", Config{OutOfHoursUsers: []string{"dsl"}}, "--working-hours"},
		{"timezone", Config{OutOfHoursUsers: []string{"dsl"}, WorkingHours: "mon-fri 08:00-17:00", Timezone: "Mars/Olympus"}, "--timezone"},
		{"hours", Config{OutOfHoursUsers: []string{"dsl"}, WorkingHours: "sometimes"}, "--working-hours"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			cfg := tc.cfg
			cfg.DataDir, cfg.Logger = dir, slog.New(slog.DiscardHandler)
			cfg.GRPCListen, cfg.HTTPListen = "127.0.0.1:0", "127.0.0.1:0"
			err := Serve(context.Background(), cfg)
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("Serve: %v, want an error naming %s", err, tc.want)
			}
			if _, err := os.Stat(dir); !os.IsNotExist(err) {
				t.Errorf("data dir created before the flags were checked: %v", err)
			}
		})
	}
}
