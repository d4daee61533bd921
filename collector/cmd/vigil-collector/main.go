// Command vigil-collector receives findings from Vigil agents and stores
// them; see collector/cli for its commands.
package main

import (
	"os"

	"github.com/vigil-safeguarding/vigil/collector/cli"
)

func main() { os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr)) }
