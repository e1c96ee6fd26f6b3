// Command silt streams every PostgreSQL change into a Delta Lake. See
// "silt --help" and README.md.
package main

import (
	"os"

	"github.com/silt-dev/silt/internal/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:], os.Stdout, os.Stderr))
}
