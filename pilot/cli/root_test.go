package cli_test

import (
	"github.com/spf13/cobra"

	"github.com/meshd/meshd/pilot/cli"
)

func newRoot() *cobra.Command {
	root := &cobra.Command{Use: "meshctl", SilenceUsage: true, SilenceErrors: true}
	root.AddCommand(cli.Commands()...)
	return root
}
