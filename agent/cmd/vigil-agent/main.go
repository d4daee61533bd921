// Command vigil-agent is Vigil's device agent; see agent/cli.
package main

import (
	"os"

	"github.com/vigil-safeguarding/vigil/agent/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
