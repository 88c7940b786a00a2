package main

import (
	"github.com/spf13/cobra"

	citadelcli "github.com/meshd/meshd/citadel/cli"
	pilotcli "github.com/meshd/meshd/pilot/cli"
)

// subcommands lists every meshctl command; each subsystem owns its own.
func subcommands() []*cobra.Command {
	var cmds []*cobra.Command
	cmds = append(cmds, pilotcli.Commands()...)
	cmds = append(cmds, galleyCommands()...)
	cmds = append(cmds, citadelcli.NewTokenCommand())
	return cmds
}
