package main

import (
	"github.com/spf13/cobra"

	"github.com/meshfleet/meshfleet/pkg/version"
)

func newRootCommand() *cobra.Command {
	root := &cobra.Command{
		Use:           "meshfleet",
		Short:         "meshfleet control-plane components",
		SilenceUsage:  true,
		SilenceErrors: true,
		Version:       version.String(),
	}
	root.SetVersionTemplate("{{.Version}}\n")
	root.AddCommand(newOperatorCommand(), newRenderCommand())
	root.AddCommand(newTunnelCommand())
	root.AddCommand(newXDSCommand())
	return root
}
