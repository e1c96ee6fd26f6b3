// Command writefixtures writes silt's interop fixture tables, and what silt
// reads from each of their versions, for other engines to check:
//
//	go run ./internal/delta/interop/cmd/writefixtures -out DIR
//
// See package interop for the layout and the row normalisation.
package main

import (
	"context"
	"flag"
	"fmt"
	"os"

	"github.com/silt-dev/silt/internal/delta/interop"
)

func main() {
	out := flag.String("out", "", "directory to write the fixtures into (must not hold them already)")
	flag.Parse()
	if *out == "" || flag.NArg() > 0 {
		fmt.Fprintln(os.Stderr, "usage: writefixtures -out DIR")
		os.Exit(2)
	}
	m, err := interop.WriteFixtures(context.Background(), *out)
	if err != nil {
		fmt.Fprintln(os.Stderr, "writefixtures:", err)
		os.Exit(1)
	}
	for _, t := range m.Tables {
		fmt.Printf("%-18s versions 0..%d\n", t.Name, t.Latest)
	}
}
