package inventory

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"testing"

	"golang.org/x/sys/windows/registry"
)

// TestReadUninstallKeys writes Uninstall-style keys into the registry
// (under HKCU, in a key of its own) and reads them back the way the
// agent reads the real Uninstall keys. Runs under Wine (scripts/wine-test.sh).
func TestReadUninstallKeys(t *testing.T) {
	b := make([]byte, 6)
	rand.Read(b)
	base := `Software\VigilTest-` + hex.EncodeToString(b)
	path := base + `\Uninstall`
	t.Cleanup(func() {
		for _, sub := range []string{path + `\Office`, path + `\KB1`, path + `\Sys`, path} {
			registry.DeleteKey(registry.CURRENT_USER, sub)
		}
		registry.DeleteKey(registry.CURRENT_USER, base)
	})
	set := func(sub string, vals map[string]any) {
		k, _, err := registry.CreateKey(registry.CURRENT_USER, path+`\`+sub, registry.ALL_ACCESS)
		if err != nil {
			t.Fatal(err)
		}
		defer k.Close()
		for n, v := range vals {
			switch v := v.(type) {
			case string:
				err = k.SetStringValue(n, v)
			case uint32:
				err = k.SetDWordValue(n, v)
			}
			if err != nil {
				t.Fatal(err)
			}
		}
	}
	set("Office", map[string]any{"DisplayName": "Microsoft Office Professional Plus 2016", "DisplayVersion": "16.0.4266.1001", "Publisher": "Microsoft Corporation", "InstallDate": "20240115"})
	set("KB1", map[string]any{"DisplayName": "Update for X", "ParentKeyName": "OperatingSystem"})
	set("Sys", map[string]any{"DisplayName": "Hidden", "SystemComponent": uint32(1)})
	keys, err := ReadUninstallKeys(registry.CURRENT_USER, path)
	if err != nil {
		t.Fatal(err)
	}
	if len(keys) != 3 {
		t.Fatalf("want 3 keys, got %v", keys)
	}
	sw := UninstallSoftware(keys)
	if len(sw) != 1 || sw[0].Name != "Microsoft Office Professional Plus 2016" || sw[0].InstallDate != "2024-01-15" || sw[0].Publisher != "Microsoft Corporation" {
		t.Fatalf("software %v", sw)
	}
}

// TestCollectWindows runs a whole collection on this Windows (or Wine):
// what cannot be read is in the answer's errors, never a failure.
func TestCollectWindows(t *testing.T) {
	inv, err := (&Collector{}).Collect(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	if inv.Os == nil || inv.Hardware == nil {
		t.Fatalf("inventory %v", inv)
	}
	t.Logf("os %v; %d software; accounts %v; errors %v", inv.Os, len(inv.Software), inv.Accounts, inv.Errors)
	for _, e := range inv.Errors {
		if e.Part == "accounts" {
			t.Errorf("local accounts not read: %s", e.Error)
		}
	}
	if len(inv.Accounts) == 0 {
		t.Error("no local account listed")
	}
}
