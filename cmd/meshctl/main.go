// Command meshctl is meshd's command-line tool: the istioctl commands an
// Istio user reaches for first (proxy-status, proxy-config, analyze,
// validate), plus meshd's own (token).
package main

import (
	"fmt"
	"os"

	"github.com/spf13/cobra"
)

func main() {
	root := newRoot()
	if err := root.Execute(); err != nil {
		fmt.Fprintf(os.Stderr, "meshctl: %v\n", err)
		os.Exit(exitCode(err))
	}
}

// exitCoder lets a command choose its exit code (analyze exits 1 when it
// finds an error-level problem, without that being a usage error).
type exitCoder interface{ ExitCode() int }

func exitCode(err error) int {
	if ec, ok := err.(exitCoder); ok {
		return ec.ExitCode()
	}
	return 1
}

func newRoot() *cobra.Command {
	root := &cobra.Command{
		Use:           "meshctl",
		Short:         "Inspect and operate a meshd service mesh",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(subcommands()...)
	return root
}
