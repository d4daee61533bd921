package screen

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"image"
	"image/color"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/windows"

	"github.com/vigil-safeguarding/vigil/internal/testutil/winwindow"
)

// childEnv makes the test binary a window process (see TestMain): the
// source skips its own process's WinEvents, so the window is another one.
const childEnv = "VIGIL_SCREEN_TEST_WINDOW"

func TestMain(m *testing.M) {
	if title := os.Getenv(childEnv); title != "" {
		if err := winwindow.Serve(os.Stdin, os.Stdout, title, 0x000000FF); err != nil { // pure red
			fmt.Fprintln(os.Stderr, "window child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

const liveness = 60 * time.Second

// windowChild is a real window in another process, driven over a pipe.
type windowChild struct {
	cmd *exec.Cmd
	in  io.WriteCloser
	out *bufio.Scanner
}

func startWindow(t *testing.T, title string) *windowChild {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+title)
	cmd.Stderr = os.Stderr
	in, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	c := &windowChild{cmd: cmd, in: in, out: bufio.NewScanner(out)}
	t.Cleanup(func() {
		in.Close()
		done := make(chan error, 1)
		go func() { done <- cmd.Wait() }()
		select {
		case <-done:
		case <-time.After(liveness):
			cmd.Process.Kill()
			<-done
		}
	})
	if l := c.line(t); !strings.HasPrefix(l, "ready ") {
		t.Fatalf("window child said %q", l)
	}
	return c
}

func (c *windowChild) line(t *testing.T) string {
	t.Helper()
	got := make(chan string, 1)
	go func() {
		if c.out.Scan() {
			got <- c.out.Text()
		} else {
			got <- ""
		}
	}()
	select {
	case l := <-got:
		if l == "" {
			t.Fatalf("window child ended: %v", c.out.Err())
		}
		return l
	case <-time.After(liveness):
		t.Fatal("window child silent")
	}
	return ""
}

func (c *windowChild) ask(t *testing.T, cmd string) string {
	t.Helper()
	if _, err := fmt.Fprintln(c.in, cmd); err != nil {
		t.Fatal(err)
	}
	return c.line(t)
}

// TestWindowsSource: a real window in another process (under Wine: an X
// window on the Xvfb that scripts/wine-test.sh starts) is reported by
// Watch with its title, class and process, a retitle is reported too, and
// Screenshot captures the whole screen with the window's red client area
// where the window says it is.
func TestWindowsSource(t *testing.T) {
	src, err := Open("")
	if errors.Is(err, ErrUnavailable) {
		t.Skipf("no interactive desktop: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	defer src.Close()
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	seen := make(chan Window, 64)
	watchErr := make(chan error, 1)
	go func() {
		watchErr <- src.Watch(ctx, func(w Window) {
			select {
			case seen <- w:
			default:
			}
		})
	}()
	const title1, title2 = "Vigil screen test: first title", "Vigil screen test: retitled"
	child := startWindow(t, title1)
	waitTitle := func(want string) Window {
		t.Helper()
		deadline := time.After(liveness)
		for {
			select {
			case w := <-seen:
				t.Logf("watch: %+v", w)
				if w.Title == want {
					return w
				}
			case err := <-watchErr:
				t.Fatalf("Watch ended: %v", err)
			case <-deadline:
				t.Fatalf("no window titled %q reported in %v", want, liveness)
			}
		}
	}
	if got := child.ask(t, "foreground"); got != "foreground true" {
		t.Logf("the test window is not the foreground window (%s); Watch reports only the foreground", got)
	}
	w := waitTitle(title1)
	if w.PID != child.cmd.Process.Pid || !strings.HasPrefix(w.Class, "VigilTestWindow") || !strings.EqualFold(w.Process, filepath.Base(os.Args[0])) {
		t.Errorf("window %+v, want pid %d, class VigilTestWindow*, process %s", w, child.cmd.Process.Pid, filepath.Base(os.Args[0]))
	}
	if got := child.ask(t, "title "+title2); got != "ok" {
		t.Fatalf("retitle: %q", got)
	}
	waitTitle(title2)

	var rc image.Rectangle
	if _, err := fmt.Sscanf(child.ask(t, "rect"), "rect %d %d %d %d", &rc.Min.X, &rc.Min.Y, &rc.Max.X, &rc.Max.Y); err != nil {
		t.Fatal(err)
	}
	want := image.Rect(0, 0, systemMetric(78), systemMetric(79)) // SM_C[XY]VIRTUALSCREEN
	if s := os.Getenv("VIGIL_TEST_SCREEN"); s != "" {            // the Xvfb screen wine-test.sh started
		var x, y int
		if _, err := fmt.Sscanf(s, "%dx%d", &x, &y); err != nil {
			t.Fatalf("VIGIL_TEST_SCREEN=%q: %v", s, err)
		}
		if want != image.Rect(0, 0, x, y) {
			t.Errorf("virtual screen %v, but the X screen is %dx%d", want, x, y)
		}
		want = image.Rect(0, 0, x, y)
	}
	// The window may take a moment to paint; the red must show up.
	deadline := time.Now().Add(liveness)
	for {
		img, err := src.Screenshot(ctx)
		if err != nil {
			t.Fatalf("Screenshot: %v", err)
		}
		if img.Bounds() != want {
			t.Fatalf("screenshot %v, want %v", img.Bounds(), want)
		}
		centre := image.Pt((rc.Min.X+rc.Max.X)/2, (rc.Min.Y+rc.Max.Y)/2)
		c := color.RGBAModel.Convert(img.At(centre.X, centre.Y)).(color.RGBA)
		red := c == color.RGBA{255, 0, 0, 255}
		outside := color.RGBAModel.Convert(img.At(want.Max.X-1, want.Max.Y-1)).(color.RGBA)
		if red && outside != c {
			t.Logf("client area %v red at %v; corner %v", rc, centre, outside)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("window's client area %v not red in the screenshot: centre %v, corner %v", rc, c, outside)
		}
		time.Sleep(100 * time.Millisecond)
	}
}

func systemMetric(i int) int {
	r, _, _ := windows.NewLazySystemDLL("user32.dll").NewProc("GetSystemMetrics").Call(uintptr(i))
	return int(int32(r))
}
