package main

import (
	"github.com/spf13/cobra"

	galleycli "github.com/meshd/meshd/galley/cli"
)

// galleyCommands are galley's meshctl commands: validate and analyze. Their
// errors carry their own exit codes (analyze: 79 on findings, as istioctl).
func galleyCommands() []*cobra.Command { return galleycli.Commands() }
