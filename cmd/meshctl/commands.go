package main

import "github.com/spf13/cobra"

// subcommands lists every meshctl command; each subsystem owns its own.
func subcommands() []*cobra.Command {
	return []*cobra.Command{}
}
