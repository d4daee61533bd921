package e2e

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/json"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestMakeRunHintHolds runs scripts/run.sh (what `make run` runs) with the
// test's binaries and takes its hint at its word: "Watch a screen: <the
// session command> … becomes an alert in the console: sign in as dsl,
// password in <file>". The session helper started exactly as printed, a
// keyword window title under Xvfb, and the console signed in as printed
// must show the alert. Before, the agent was enrolled into group "demo",
// which no screen rule applies to, and there was no account that sees
// alerts, so the hint yielded nothing (issue 10 item 8).
func TestMakeRunHintHolds(t *testing.T) {
	need(t, "bash")
	display, win := xsession(t)
	varDir := filepath.Join(t.TempDir(), "var")
	grpc, web := freePort(t), freePort(t)
	outFile := filepath.Join(t.TempDir(), "run.out")
	out, err := os.Create(outFile)
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	script, _ := filepath.Abs(filepath.Join("..", "scripts", "run.sh"))
	cmd := exec.CommandContext(ctx, "bash", script)
	cmd.Env = append(os.Environ(), "VIGIL_VAR="+varDir, "VIGIL_GRPC="+grpc, "VIGIL_HTTP="+web,
		"VIGIL_BIN="+binDir, "VIGIL_RUN_SETUP_ONLY=1")
	// A file, not a pipe: the collector and agent the script leaves
	// running inherit it, and a pipe would keep Wait waiting for them.
	cmd.Stdout, cmd.Stderr = out, out
	runErr := cmd.Run()
	out.Close()
	b, _ := os.ReadFile(outFile)
	hint := string(b)
	// Stop what the script started, by the PIDs it printed.
	if m := regexp.MustCompile(`collector_pid=(\d+) agent_pid=(\d+)`).FindStringSubmatch(hint); m != nil {
		t.Cleanup(func() {
			for _, s := range []string{m[2], m[1]} {
				pid, _ := strconv.Atoi(s)
				if p, err := os.FindProcess(pid); err == nil {
					p.Signal(syscall.SIGTERM)
					for i := 0; i < 300 && p.Signal(syscall.Signal(0)) == nil; i++ {
						time.Sleep(100 * time.Millisecond)
					}
				}
			}
		})
	}
	if runErr != nil {
		t.Fatalf("scripts/run.sh: %v\n%s\ncollector log:\n%s", runErr, hint, readTail(filepath.Join(varDir, "collector.log")))
	}
	t.Logf("make run printed:\n%s", hint)

	// The hint's command, as printed.
	m := regexp.MustCompile(`Watch a screen:\s+(\S+/vigil-agent) session --session-socket (\S+)`).FindStringSubmatch(hint)
	if m == nil {
		t.Fatalf("no session command in the hint")
	}
	sock := m[2]
	pw := regexp.MustCompile(`sign in as (\S+), password in (\S+?);`).FindStringSubmatch(hint)
	if pw == nil {
		t.Fatalf("the hint does not say whom to sign in as")
	}
	helper := start(t, "vigil-agent", "session", "--session-socket", sock, "--display", display)
	waitFor(t, 60*time.Second, "session helper connected", func() bool {
		return strings.Contains(helper.log.String(), "watching the screen")
	})
	setTitle(t, win, "how to kill myself - Google Search")

	// The console, signed in as the hint says, shows the alert.
	ca, err := os.ReadFile(filepath.Join(varDir, "collector", "pki", "ca.pem"))
	if err != nil {
		t.Fatal(err)
	}
	pool := x509.NewCertPool()
	pool.AppendCertsFromPEM(ca)
	jar, _ := cookiejar.New(nil)
	hc := &http.Client{Jar: jar, Timeout: 60 * time.Second,
		Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: tls.VersionTLS12}}}
	secret, err := os.ReadFile(pw[2])
	if err != nil {
		t.Fatalf("the password file the hint names: %v", err)
	}
	body, _ := json.Marshal(map[string]string{"username": pw[1], "password": strings.TrimSpace(string(secret))})
	resp, err := hc.Post("https://"+web+"/api/v1/session", "application/json", strings.NewReader(string(body)))
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("sign in as %s: %d", pw[1], resp.StatusCode)
	}
	var got []map[string]any
	waitFor(t, 60*time.Second, "the alert in the console", func() bool {
		resp, err := hc.Get("https://" + web + "/api/v1/alerts")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var page struct {
			Alerts []map[string]any `json:"alerts"`
		}
		json.NewDecoder(resp.Body).Decode(&page)
		got = page.Alerts
		for _, a := range page.Alerts {
			if a["term"] == "kill myself" {
				return true
			}
		}
		return false
	})
	for _, a := range got {
		if a["term"] == "kill myself" && a["group"] != "pupils" {
			t.Errorf("alert group %v, want pupils", a["group"])
		}
	}
}

func readTail(path string) string {
	b, _ := os.ReadFile(path)
	return tail(string(b), 40)
}
