package daemon_test

import (
	"net"
	"strings"
	"testing"

	"github.com/vigil-safeguarding/vigil/collector/daemon"
	"github.com/vigil-safeguarding/vigil/collector/tokens"
)

// TestConsoleDeploySharesCLITokens: the daemon wires one token service
// into the admin socket (CLI) and the console, and tells the console the
// address packages should carry (first --server-names entry + gRPC port).
func TestConsoleDeploySharesCLITokens(t *testing.T) {
	c := startCollector(t, daemon.Config{ServerNames: []string{"vigil.school.example"}})
	cfg, err := c.consoleTLS()
	if err != nil {
		t.Fatal(err)
	}
	hc := newJarClient(cfg)
	signInFirstAdmin(t, c, hc)
	var info struct {
		DefaultCollector string `json:"default_collector"`
	}
	resp := c.do(t, hc, "GET", "/api/v1/deploy", "")
	if resp.StatusCode != 200 {
		t.Fatalf("/api/v1/deploy: %d", resp.StatusCode)
	}
	decodeJSON(t, resp, &info)
	_, port, _ := net.SplitHostPort(c.grpcAddr)
	if info.DefaultCollector != "vigil.school.example:"+port {
		t.Errorf("default collector %q, want vigil.school.example:%s", info.DefaultCollector, port)
	}

	tok := c.token(t, "pupils") // minted by the CLI over the admin socket
	id := strings.Split(tok, ".")[1]
	if _, err := c.cli(t, "token", "revoke", "--id", id, "--reason", "pasted in a ticket"); err != nil {
		t.Fatal(err)
	}
	var list []tokens.Info
	resp = c.do(t, hc, "GET", "/api/v1/tokens", "")
	decodeJSON(t, resp, &list)
	var got *tokens.Info
	for i := range list {
		if list[i].ID == id {
			got = &list[i]
		}
	}
	if got == nil || !got.Revoked || got.State != "revoked" || got.Group != "pupils" {
		t.Errorf("console token list after CLI revoke: %+v", list)
	}
	found := false
	for _, e := range c.accessLog(t) {
		if e["action"] == "revoke-token" && e["reason"] == "pasted in a ticket" && strings.Contains(e["detail"].(string), id) {
			found = true
		}
	}
	if !found {
		t.Errorf("CLI token revoke not in the access log: %v", c.accessLog(t))
	}
}
