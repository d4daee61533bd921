// Package cliexit maps a command's outcome to the exit codes both
// binaries use: 0 success, 1 failure (reported on stderr), 2 usage.
package cliexit

import (
	"errors"
	"flag"
	"fmt"
	"io"
)

// Code reports err for "prog cmd" on stderr and returns the exit code.
func Code(stderr io.Writer, prog, cmd string, err error) int {
	switch {
	case err == nil:
		return 0
	case errors.Is(err, flag.ErrHelp):
		return 2
	default:
		fmt.Fprintf(stderr, "%s %s: %v\n", prog, cmd, err)
		return 1
	}
}
