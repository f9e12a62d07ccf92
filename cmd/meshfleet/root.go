package main

import (
	"github.com/spf13/cobra"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "meshfleet",
		Short:         "meshfleet control-plane components",
		SilenceUsage:  true,
		SilenceErrors: true,
	}
	root.AddCommand(newOperatorCommand(), newRenderCommand())
	root.AddCommand(newTunnelCommand())
	root.AddCommand(newXDSCommand())
	return root
}
