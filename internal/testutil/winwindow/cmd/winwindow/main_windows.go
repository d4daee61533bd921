// Command winwindow opens a Win32 window with the title given as its
// arguments and serves winwindow.Serve's commands on stdin (tests drive it).
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/vigil-safeguarding/vigil/internal/testutil/winwindow"
)

func main() {
	if err := winwindow.Serve(os.Stdin, os.Stdout, strings.Join(os.Args[1:], " "), 0x000000FF); err != nil {
		fmt.Fprintln(os.Stderr, "winwindow:", err)
		os.Exit(1)
	}
}
