// Command faultreport prints the RELIABILITY.md table from the JSON lines that the
// fault scenarios of package faulttest write to $VIBERQ_FAULT_REPORT:
//
//	go run ./worker/faulttest/faultreport FILE
//
// With no FILE (or "-") it reads standard input.
package main

import (
	"fmt"
	"io"
	"os"

	"github.com/viberq/viberq/worker/faulttest"
)

func main() {
	var in io.Reader = os.Stdin
	if len(os.Args) > 1 && os.Args[1] != "-" {
		f, err := os.Open(os.Args[1])
		if err != nil {
			fmt.Fprintln(os.Stderr, "faultreport:", err)
			os.Exit(1)
		}
		defer f.Close()
		in = f
	}
	if err := faulttest.RenderTable(in, os.Stdout); err != nil {
		fmt.Fprintln(os.Stderr, "faultreport:", err)
		os.Exit(1)
	}
}
