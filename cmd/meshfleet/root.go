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
	logs := &logFlags{}
	logs.bind(root.PersistentFlags())
	root.AddCommand(newOperatorCommand(logs), newRenderCommand())
	root.AddCommand(newTunnelCommand(logs))
	root.AddCommand(newXDSCommand(logs))
	return root
}
