package control

import (
	"strings"
	"testing"
)

// TestEndpointPerStateDir: one pipe per state dir, whatever the case of
// the path (Windows paths are case-insensitive), and no two dirs share one.
func TestEndpointPerStateDir(t *testing.T) {
	a := Endpoint(`C:\ProgramData\Vigil\agent\control.sock`)
	if !strings.HasPrefix(a, `\\.\pipe\vigil-agent-control-`) {
		t.Fatalf("endpoint %q", a)
	}
	if b := Endpoint(`c:\programdata\VIGIL\agent\control.sock`); b != a {
		t.Errorf("case changed the endpoint: %q vs %q", a, b)
	}
	if b := Endpoint(`C:\ProgramData\Vigil\agent2\control.sock`); b == a {
		t.Errorf("two state dirs share %q", a)
	}
}
